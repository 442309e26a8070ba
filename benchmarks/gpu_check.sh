#!/usr/bin/env bash
# The GPU path checked and measured in one command, on a machine with a CUDA GPU, PyTorch
# installed and no package index; under 8 minutes on one H100/H200, install included.
#
#   bash scripts/wheelhouse.sh W --python-version 3.12 --platform manylinux2014_x86_64
#                                          # beforehand, on a connected machine
#   bash benchmarks/gpu_check.sh --wheels W --out OUT [--device cuda|cpu] [--quick]
#
# From the clone. `python3` (or $PYTHON) is the machine's Python with torch and
# torchvision. A virtual environment under OUT/venv sees that Python's packages (a .pth
# file; nothing outside OUT is changed) and gets, with pip --no-index, the wheels in W
# (W/requirements.txt: Hydra, omegaconf, antlr4, the Hydra launchers, pytest) and this
# clone, editable, with --no-deps. Then, each step with its own time limit (the limits
# add up to under 8 minutes; the compiled resume gets what is left, if enough):
#
#   setup             the environment; versions of Python, torch, torchvision, CUDA, GPU
#   gpu_tests         pytest tests/test_gpu.py, alone
#   epoch_speed       one epoch of 6,149 images at 224 px (the warp path) for ResNet-18
#                     and the baseline CNN: as shipped, with the NaN fill, with
#                     deterministic=false; peak memory; the device pipeline's img/s
#   checkpoint_cost   benchmarks/checkpoint_cost.py: an epoch's share spent in checkpoints
#   compile_gain      benchmarks/compile_gain.py: compile time against steady-state gain
#   concurrent_cases  the four report cases at once on one device, against one by one
#   report_sweep      the full report's projected time (training, evaluation,
#                     checkpoints, start-up)
#   data_pipeline     the report's JPEG pipeline against ours on the device
#   resume_eager      a run killed after epoch 1 and resumed, against its twin, tolerance 0
#   resume_compiled   the same with trainer.compile=true
#
# Each step's log is OUT/STEP.log; every figure goes into OUT/gpu_check.json; a summary
# is printed at the end. --device cpu --quick walks the same steps at toy sizes on a
# CPU (limits doubled), to check the script itself. Exit status: the number of steps
# that failed.
set -uo pipefail

usage() { sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; }

WHEELS="" OUT="" DEVICE="cuda" QUICK=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --wheels) WHEELS="${2:?--wheels needs a folder}"; shift 2 ;;
    --out) OUT="${2:?--out needs a folder}"; shift 2 ;;
    --device) DEVICE="${2:?--device needs cuda or cpu}"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [[ -z "$WHEELS" || -z "$OUT" ]]; then
  echo "gpu_check.sh: --wheels DIR and --out DIR are needed" >&2; usage >&2; exit 2
fi
if [[ ! -f "$WHEELS/requirements.txt" ]]; then
  echo "gpu_check.sh: $WHEELS has no requirements.txt (make it with scripts/wheelhouse.sh)" >&2
  exit 2
fi
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO" || exit 2
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
WHEELS="$(cd "$WHEELS" && pwd)"
BASE_PY="${PYTHON:-python3}"
VENV="$OUT/venv"
PY="$VENV/bin/python"
export PYTHONUNBUFFERED=1  # a step cut off by its limit still leaves its log

if [[ -n "$QUICK" ]]; then  # toy sizes; limits doubled for a slow CPU
  SCALE=2 SIZE=32 TRAIN=64 BATCHES=1 PIPE_N=16 RESUME_N=48 COMPILED_N=96
  COMPILED_CASE=(case=baseline_cnn)  # compiling ResNet-18 takes minutes on a small CPU
else
  SCALE=1 SIZE=224 TRAIN=6149 BATCHES=20 PIPE_N=128 RESUME_N=512 COMPILED_N=512
  COMPILED_CASE=()
fi
DEADLINE=$((470 * SCALE))  # seconds from the start: all steps and their kill grace
MIN_COMPILED=$((60 * SCALE))
GRACE=3  # seconds between the limit's SIGTERM and a SIGKILL
: > "$OUT/steps.tsv"

record() {  # record NAME STATUS EXIT SECONDS LIMIT
  printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$OUT/steps.tsv"
}

step() {  # step NAME LIMIT_S COMMAND...: run it with a limit, log to OUT/NAME.log
  local name=$1 limit=$(($2 * SCALE))
  shift 2
  local left=$((DEADLINE - SECONDS - GRACE))
  if ((left < 10)); then
    echo "== $name: skipped, ${left}s left of the time budget"
    record "$name" skipped "" 0 "$limit"
    return 1
  fi
  ((limit > left)) && limit=$left
  echo "== $name (limit ${limit}s): $*"
  local start=$SECONDS rc status
  # a plain pipeline: bash waits for tee, so the log is complete when this returns
  timeout -k "$GRACE" "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  rc=${PIPESTATUS[0]}
  case $rc in
    0) status=passed ;;
    124 | 137) status="timed out" ;;
    *) status=failed ;;
  esac
  echo "== $name: $status (exit $rc) after $((SECONDS - start))s"
  record "$name" "$status" "$rc" "$((SECONDS - start))" "$limit"
  [[ $rc -eq 0 ]]
}

setup_env() {  # the virtual environment under OUT, the wheels, this clone, the versions
  set -euo pipefail
  rm -rf "$VENV"
  "$BASE_PY" -m venv --without-pip "$VENV"
  local purelib
  purelib="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  # The base Python's packages (the image's torch), behind the venv's own: a .pth line
  # that adds each of its site folders (a venv's --system-site-packages would miss a
  # base Python that is itself a virtual environment).
  "$BASE_PY" - "$purelib/_gpu_check_base.pth" <<'EOF'
import os
import sys

dirs = [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")
        and os.path.isdir(p)]
with open(sys.argv[1], "w") as f:
    f.write("import site; " + "; ".join(f"site.addsitedir({d!r})" for d in dirs) + "\n")
EOF
  if ! "$PY" -m pip --version >/dev/null 2>&1; then
    "$PY" -m ensurepip --default-pip >/dev/null 2>&1 || {
      echo "no pip for $BASE_PY, and no ensurepip: install pip, or set PYTHON" >&2
      return 1
    }
  fi
  local pip=("$PY" -m pip --isolated --disable-pip-version-check)
  echo "installing from $WHEELS (no index): $(grep -v '^#' "$WHEELS/requirements.txt" \
    | cut -d' ' -f1 | tr '\n' ' ')"
  "${pip[@]}" install -q --no-index --find-links "$WHEELS" -r "$WHEELS/requirements.txt"
  echo "installing $REPO (editable, no dependencies, no index)"
  "${pip[@]}" install -q --no-index --no-deps --no-build-isolation -e "$REPO"
  "$PY" benchmarks/gpu_check_report.py versions "$OUT/versions.json"
}
export -f setup_env
export BASE_PY VENV PY WHEELS REPO OUT

optional() {  # optional NAME LIMIT SCRIPT: another benchmark, run when this clone has it
  local name=$1 limit=$2 script="benchmarks/$1.py"
  if [[ ! -f "$script" ]]; then
    echo "== $name: missing ($script is not in this clone)"
    record "$name" missing "" 0 0
    return
  fi
  step "$name" "$limit" "$PY" "$script" --device "$DEVICE" ${QUICK:+--quick} \
    --json "$OUT/$name.json"
}

echo "gpu_check: device $DEVICE${QUICK:+, quick}; Python $BASE_PY; wheels $WHEELS; out $OUT"
if step setup 45 bash -c setup_env; then
  step gpu_tests 55 "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_gpu.py \
    --junitxml="$OUT/gpu_tests.xml"
  step epoch_speed 55 "$PY" benchmarks/epoch_speed.py --device "$DEVICE" \
    --train-size "$TRAIN" --image-size "$SIZE" --json "$OUT/epoch_speed.json"
  optional checkpoint_cost 40
  optional compile_gain 90  # ResNet-18's two graphs (the baseline CNN's with --quick)
  step concurrent_cases 45 "$PY" benchmarks/concurrent_cases.py --device "$DEVICE" \
    --train-size "$TRAIN" --image-size "$SIZE" --json "$OUT/concurrent_cases.json"
  step report_sweep 40 "$PY" benchmarks/report_sweep.py --batches "$BATCHES" \
    --json "$OUT/report_sweep.json" "trainer.device=$DEVICE" "dataset.image_size=$SIZE"
  rm -rf "$OUT/pipeline"
  step data_pipeline 25 "$PY" benchmarks/data_pipeline.py --root "$OUT/pipeline" \
    --generate "$PIPE_N" --limit "$PIPE_N" --size "$SIZE" --device "$DEVICE" \
    --json "$OUT/data_pipeline.json"
  rm -rf "$OUT/resume_eager_work" "$OUT/resume_compiled_work"
  step resume_eager 45 "$PY" benchmarks/resume_check.py --device "$DEVICE" \
    --image-size "$SIZE" --per-split "$RESUME_N" --epochs 2 \
    --workdir "$OUT/resume_eager_work" --json "$OUT/resume_eager.json"
  left=$((DEADLINE - SECONDS - GRACE))
  if ((left >= MIN_COMPILED)); then
    step resume_compiled $((left / SCALE)) "$PY" benchmarks/resume_check.py --compile \
      --device "$DEVICE" --image-size "$SIZE" --per-split "$COMPILED_N" --epochs 2 \
      --workdir "$OUT/resume_compiled_work" --json "$OUT/resume_compiled.json" \
      "${COMPILED_CASE[@]}"
  else
    echo "== resume_compiled: skipped, ${left}s left of the time budget (needs $MIN_COMPILED)"
    record resume_compiled skipped "" 0 0
  fi
fi

REPORT_PY="$PY"
[[ -x "$REPORT_PY" ]] || REPORT_PY="$BASE_PY"
"$REPORT_PY" benchmarks/gpu_check_report.py merge "$OUT" --device "$DEVICE" \
  ${QUICK:+--quick} --seconds "$SECONDS"
