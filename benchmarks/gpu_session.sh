#!/usr/bin/env bash
# One call on a lent GPU machine measures everything the speed issue asks for, each step under its own time limit
# so that one slow step cannot eat the others, in the order the decisions need them: vpkit train's defaults eager
# (fused SGD, and torch's default SGD beside it), CUDA graphs (compile reduce-overhead), compile's default mode
# cold then warm, one real epoch, the lean checkpointing modes. A step cut by its limit still leaves each finished
# batch size's table in its log. Output: $OUT/*.log and $OUT/*.json (or ./gpu_out).
#   bash benchmarks/gpu_session.sh            (device tool: run with timeout_s 580; the limits sum to 565 s)
#   DEADLINE=$(( $(date +%s) + 300 )) bash benchmarks/gpu_session.sh   (no step past it; benchmarks/gpu_checks.sh)
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
  if [ -n "${DEADLINE:-}" ]; then  # a caller's end time (epoch seconds): no step runs past it
    local left=$((DEADLINE - $(date +%s)))
    if [ "$left" -lt 20 ]; then echo "== $name: skipped, ${left}s left before DEADLINE"; return; fi
    if [ "$left" -lt "$limit" ]; then limit=$left; fi
  fi
  echo "== $name (limit ${limit}s): python $bench $*"
  timeout "$limit" python "$bench" "$@" --out "$out/$name.json" > "$out/$name.log" 2>&1
  echo "exit $?"; tail -n 16 "$out/$name.log"
}
# fp16 as `vpkit train` runs it, batches 4 16 32: fused SGD (its default on CUDA) first, then torch's default SGD
step default_eager 100 --settings default --compile off --fused both --steps 4 --warmup 2
# CUDA graphs (graph trees): the per-step launch overhead at the paper's batch 4; batch 32 for the limit
step reduce_overhead 170 --settings default --compile reduce-overhead --batches 4 32 --steps 4
step default_compile 120 --settings default --compile on --batches 4 32 --steps 4 --compile-cache-dir "$compile_cache"
BENCH=benchmarks/bench_compile_cache.py step compile_warm 45 --preset 7b --batch 4 --cache-dir "$compile_cache" \
  --runs warm
step end_to_end 90 --settings default --compile off --batches 4 32 --steps 3 --end-to-end
step ckpt_modes 40 --dtype bf16 --compile off --checkpointing selective mixed --batches 32 --steps 3
