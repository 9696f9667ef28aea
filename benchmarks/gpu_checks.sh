#!/usr/bin/env bash
# Everything a first GPU session must check, in one call and in the order that matters (issue 22, item 4):
#   1. `vpkit doctor --device cuda`: every training path of the GPU's defaults and options on the tiny model
#      (fp16 + GradScaler + fused SGD, fp32, bf16, clipping, the checkpointing modes, torch.compile default and
#      reduce-overhead with the cache, resume), each against the CPU float32 run;
#   2. the whole test suite on the GPU machine, its CUDA-only tests included (tests the image cannot run for a
#      missing extra, e.g. papermill, skip and say so);
#   3. benchmarks/gpu_session.sh's measurements in the time left: none of its steps runs past the deadline, and
#      one that would get under 20 s is skipped with a line saying so (run gpu_session.sh alone for the rest).
# Output, at most 8 files as the device tool brings back: $OUT/summary.txt (the doctor's lines, the suite's
# result, what each benchmark step did), $OUT/doctor.json, $OUT/pytest.log and $OUT/gpu_checks.tar.gz (all logs
# and benchmark JSON). Run from the repository root:
#   bash benchmarks/gpu_checks.sh             (device tool: timeout_s 590; BUDGET=560 s by default)
# DOCTOR_ARGS (default --device cuda) and PYTEST_ARGS (default: the whole suite) exist to smoke-run it on a CPU.
set -u
out=${OUT:-gpu_out}
mkdir -p "$out"
deadline=$(( $(date +%s) + ${BUDGET:-560} ))
work=$(mktemp -d "${TMPDIR:-/tmp}/vpkit-gpu-checks-XXXXXX")
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python=$(command -v python3 || command -v python)
left() { echo $(( deadline - $(date +%s) )); }
limit() { local want=$1 now; now=$(left); echo $(( want < now ? want : now )); }  # at most what is left
finish() {
  cp "$out/summary.txt" "$work/" 2>/dev/null
  tar -czf "$out/gpu_checks.tar.gz" -C "$work" . && echo "everything: $out/gpu_checks.tar.gz"
}
trap finish EXIT
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$python" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
} 2>&1 | tee "$out/summary.txt"

# vpkit as a package (its metadata: the doctor's extras line) on a bare GPU image, offline; an environment that
# already has vpkit installed is left as it is
if ! "$python" -c "import importlib.metadata as m; m.version('vpkit')" 2>/dev/null; then
  "$python" -m pip install -q --no-deps --no-build-isolation --no-index -e . > "$work/pip_install.log" 2>&1 \
    || echo "vpkit not installed by pip (pip_install.log); running it from PYTHONPATH" | tee -a "$out/summary.txt"
fi

doctor_args=${DOCTOR_ARGS:---device cuda}
echo "== 1. vpkit doctor $doctor_args --json (limit $(limit 150)s)" | tee -a "$out/summary.txt"
# shellcheck disable=SC2086  # DOCTOR_ARGS is a list of words
timeout "$(limit 150)" "$python" -m vpkit doctor $doctor_args --json \
  > "$out/doctor.json" 2> "$work/doctor_stderr.log"
echo "exit $?" | tee -a "$out/summary.txt"
"$python" - "$out/doctor.json" >> "$out/summary.txt" 2>&1 <<'EOF'
import json, sys
from vpkit.doctor import PathResult
report = json.load(open(sys.argv[1]))
for path in report["paths"]:
    print(PathResult(**path).line())
EOF
tail -n 3 "$work/doctor_stderr.log" >> "$out/summary.txt"

echo "== 2. the test suite (limit $(limit 240)s): pytest -n 8 ${PYTEST_ARGS:-}" | tee -a "$out/summary.txt"
# shellcheck disable=SC2086  # PYTEST_ARGS is a list of words
timeout "$(limit 240)" "$python" -m pytest -n 8 --dist loadfile -q -ra -p no:cacheprovider ${PYTEST_ARGS:-} \
  > "$out/pytest.log" 2>&1
echo "exit $?" | tee -a "$out/summary.txt"
grep -E "^(FAILED|ERROR|SKIPPED)|passed|failed" "$out/pytest.log" | tail -n 60 >> "$out/summary.txt"

echo "== 3. benchmarks/gpu_session.sh until the deadline ($(left)s left)" | tee -a "$out/summary.txt"
DEADLINE=$deadline OUT="$work/bench" bash benchmarks/gpu_session.sh > "$work/gpu_session.log" 2>&1
grep -E "^(== |exit )" "$work/gpu_session.log" >> "$out/summary.txt"
echo "done with $(left)s to spare" | tee -a "$out/summary.txt"
