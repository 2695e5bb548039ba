#!/usr/bin/env bash
# The GPU checks of docs/gpu.md, as one script (one call on a lent GPU machine, ~10 minutes on an H200).
#
#   OUT=/tmp/gpu bash scripts/gpu_check.sh            # results under $OUT
#   WHEELS=shared/wheels OUT=... bash scripts/gpu_check.sh   # install bench's extra wheels offline first
#   DEVICE=cpu QUICK=1 OUT=/tmp/x bash scripts/gpu_check.sh  # rehearse the script on a CPU (tiny sizes)
#
# It runs: the GPU tests (pytest -m gpu); the acceptance run (m4oe tiny on synthetic-organs,
# deterministic) timed; bench perf m4oe (data pipeline and data-wait share at paper size in bf16);
# bench cost at paper size in fp32 and bf16 (step time, TFLOP/s, share of the card's peak); bench
# perf i2moe. Each step writes its output to $OUT/<step>.txt (and .json) and goes on if one fails;
# $OUT/summary.txt lists every step's exit status and wall time.
set -u
OUT=${OUT:-gpu-check}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
mkdir -p "$OUT"
PY=${PYTHON:-python}

if [ -n "${WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --find-links "$WHEELS" segmentation-models-pytorch optuna sqlalchemy alembic \
    mako colorlog nibabel monai >"$OUT/install.txt" 2>&1 || echo "wheel install failed (see install.txt)"
  $PY -m pip install -q --no-deps --no-build-isolation -e . >>"$OUT/install.txt" 2>&1 || echo "bench install failed"
fi

step() {  # step NAME COMMAND...: run, keep stdout+stderr, record status and wall time
  local name=$1; shift
  local t0=$(date +%s%N)
  "$@" >"$OUT/$name.txt" 2>&1
  local rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  printf '%-22s rc=%-3s %6d.%01d s   %s\n' "$name" "$rc" $((ms / 1000)) $((ms % 1000 / 100)) "$*" | tee -a "$OUT/summary.txt"
}

$PY - >"$OUT/device.txt" 2>&1 <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0),
          "bf16", torch.cuda.is_bf16_supported())
EOF

if [ "$QUICK" = 1 ]; then
  PAPER=tiny; TESTS="-k attention"; PERF_SIZES=quick; COMPILE=""
else
  PAPER=paper; TESTS=""; PERF_SIZES="quick paper"; COMPILE="--compile"
fi

export BENCH_GPU_TEST_DEVICE=$DEVICE
step gpu-tests $PY -m pytest -m gpu tests/test_gpu.py -q -p no:cacheprovider $TESTS
step m4oe-tiny-run $PY -m bench run --method m4oe --dataset synthetic-organs --preset tiny --device "$DEVICE" \
  --runs-dir "$OUT/runs" --force --json --no-progress
step perf-m4oe-bf16 $PY -m bench perf m4oe --device "$DEVICE" --preset "$PAPER" --precision bf16 --json
step cost-fp32 $PY -m bench cost --method m4oe swinunet-joint unet --dataset synthetic-organs --preset "$PAPER" \
  --device "$DEVICE" --json
step cost-bf16 $PY -m bench cost --method m4oe swinunet-joint unet --dataset synthetic-organs --preset "$PAPER" \
  --device "$DEVICE" --precision bf16 --json
step cost-bf16-fast $PY -m bench cost --method m4oe swinunet-joint unet --dataset synthetic-organs --preset "$PAPER" \
  --device "$DEVICE" --precision bf16 --channels-last --data-workers 8 --json
step perf-i2moe $PY -m bench perf i2moe --device "$DEVICE" --sizes $PERF_SIZES --modalities 3 $COMPILE --json
echo "done: $OUT/summary.txt"
