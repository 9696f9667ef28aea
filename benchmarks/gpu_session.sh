#!/usr/bin/env bash
# One call on a lent GPU machine measures everything the speed issue asks for, eager first, each step under its
# own time limit so that one slow step cannot eat the others. Output: $OUT/*.log and $OUT/*.json (or ./gpu_out).
#   bash benchmarks/gpu_session.sh            (device tool: run with timeout_s 580)
set -u
out=${OUT:-gpu_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.log"
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
  | tee -a "$out/gpu.log"
step() {  # step NAME SECONDS ARGS...: one benchmark call with its own limit and log
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s): python benchmarks/bench_train.py $*"
  timeout "$limit" python benchmarks/bench_train.py "$@" --out "$out/$name.json" > "$out/$name.log" 2>&1
  echo "exit $?"; tail -n 12 "$out/$name.log"
}
step default_eager 150 --settings default --compile off --steps 4 --warmup 2
step bf16_ckpt 70 --dtype bf16 --compile off --checkpointing --batches 32 --steps 3
step end_to_end 150 --settings default --compile off --batches 32 --steps 3 --end-to-end
step default_compile 180 --settings default --compile on --batches 4 32 --steps 4
