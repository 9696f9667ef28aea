#!/usr/bin/env bash
# One call on a lent GPU machine measures everything the speed issue asks for, eager first, each step under its
# own time limit so that one slow step cannot eat the others. Output: $OUT/*.log and $OUT/*.json (or ./gpu_out).
#   bash benchmarks/gpu_session.sh            (device tool: run with timeout_s 580; the limits sum to 560 s)
set -u
out=${OUT:-gpu_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
# An empty compile cache for this session, outside $OUT (it is large): default_compile fills it (cold), then
# compile_warm times a fresh process that finds it warm (the second experiment of a reproduce run).
compile_cache=$(mktemp -d "${TMPDIR:-/tmp}/vpkit-compile-cache-XXXXXX")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.log"
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
  | tee -a "$out/gpu.log"
step() {  # step NAME SECONDS ARGS...: one benchmark call (bench_train.py unless BENCH says) with its own limit
  local name=$1 limit=$2 bench=${BENCH:-benchmarks/bench_train.py}; shift 2
  echo "== $name (limit ${limit}s): python $bench $*"
  timeout "$limit" python "$bench" "$@" --out "$out/$name.json" > "$out/$name.log" 2>&1
  echo "exit $?"; tail -n 12 "$out/$name.log"
}
step default_eager 120 --settings default --compile off --steps 4 --warmup 2
step ckpt_modes 70 --dtype bf16 --compile off --checkpointing full selective mixed --batches 8 16 32 --steps 3
step end_to_end 130 --settings default --compile off --batches 32 --steps 3 --end-to-end
step default_compile 180 --settings default --compile on --batches 4 32 --steps 4 --compile-cache-dir "$compile_cache"
BENCH=benchmarks/bench_compile_cache.py step compile_warm 60 --preset 7b --batch 4 --cache-dir "$compile_cache" \
  --runs warm
