#!/usr/bin/env bash
# The GPU path in one command, on a machine with a CUDA GPU (about 6 minutes on one
# current GPU; each step has its own time limit, 590 s in all):
#
#   bash benchmarks/gpu_check.sh              # from the clone, with the venv active
#   PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh
#
# 1. the `gpu` tests: a training pass under torch.cuda.set_sync_debug_mode("error"),
#    a checkpoint round trip on CUDA, the NaN watch, bf16 choice, rotation on the GPU;
# 2. benchmarks/train_step.py on CUDA (ours against a bare loop, 224 px);
# 3. benchmarks/report_sweep.py (the report's four cases timed, extrapolated);
# 4. benchmarks/data_pipeline.py with ours on the device (img/s of the augmentation
#    beside the training step's), and benchmarks/augment_fidelity.py's device path;
# 5. benchmarks/resume_check.py: a report-scale run (Flowers102 layout at 224 px from
#    generated images, 2 epochs) killed after epoch 1 and resumed, against its twin.
#
# Ends with one summary line per figure. DEVICE=cpu QUICK=1 walks the same steps on a
# CPU at toy sizes, to check the script itself. Logs stay in $OUT_DIR (default: a
# temporary folder). Exit status: the number of steps that failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
DEVICE="${DEVICE:-cuda}"
OUT="${OUT_DIR:-$(mktemp -d -t gpu_check-XXXX)}"
mkdir -p "$OUT"
if [[ -n "${QUICK:-}" ]]; then
  SIZE=32 PER_SPLIT=200 STEP_BATCHES=2 SWEEP_BATCHES=1 PIPE_N=32
else
  SIZE=224 PER_SPLIT=1024 STEP_BATCHES=30 SWEEP_BATCHES=20 PIPE_N=256
fi
summary=()
failed=0

step() {  # step NAME LIMIT_S COMMAND...: run it, keep its log, note a failure
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s): $*"
  local start=$SECONDS
  timeout "$limit" "$@" > >(tee "$OUT/$name.log") 2>&1
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - start))s"
  if [[ $rc -ne 0 ]]; then
    failed=$((failed + 1))
    summary+=("$name: FAILED (exit $rc, log $OUT/$name.log)")
    return 1
  fi
}

"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
  torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"

if step gpu_tests 90 "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs; then
  summary+=("gpu tests: $(grep -E '(passed|skipped|failed)' "$OUT/gpu_tests.log" | tail -1)")
fi
if step train_step 90 "$PY" benchmarks/train_step.py --device "$DEVICE" \
    --image-size "$SIZE" --batch-size 64 --batches "$STEP_BATCHES"; then
  ours=$(grep -E ': ours ' "$OUT/train_step.log" | tail -1)
  summary+=("train_step $SIZE px batch 64: ${ours#*: } $(grep '^ratio:' "$OUT/train_step.log")")
fi
if step data_pipeline 75 "$PY" benchmarks/data_pipeline.py --root "$OUT/pipeline" \
    --generate "$PIPE_N" --limit "$PIPE_N" --size "$SIZE" --device "$DEVICE"; then
  summary+=("data_pipeline: $(grep '^ours, cached' "$OUT/data_pipeline.log") $(grep '^ratio:' \
    "$OUT/data_pipeline.log")")
fi
if step augment_fidelity 45 "$PY" benchmarks/augment_fidelity.py --root "$OUT/pipeline" \
    --limit 40 --device "$DEVICE"; then
  summary+=("augment_fidelity: $(grep '^device path' "$OUT/augment_fidelity.log")")
fi
if step report_sweep 90 "$PY" benchmarks/report_sweep.py --batches "$SWEEP_BATCHES" \
    "trainer.device=$DEVICE" "dataset.image_size=$SIZE"; then
  summary+=("report_sweep: $(grep '^estimated' "$OUT/report_sweep.log")")
fi
if step resume_check 200 "$PY" benchmarks/resume_check.py --device "$DEVICE" \
    --image-size "$SIZE" --per-split "$PER_SPLIT" --epochs 2 --workdir "$OUT/resume"; then
  summary+=("$(grep '^summary:' "$OUT/resume_check.log" | sed 's/^summary: //')")
fi

echo
echo "== summary ($DEVICE; logs in $OUT)"
printf '%s\n' "${summary[@]}"
exit "$failed"
