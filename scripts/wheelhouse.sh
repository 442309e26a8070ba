#!/usr/bin/env bash
# A folder of wheels for benchmarks/gpu_check.sh on a GPU machine with no package index.
# Run it on a connected machine, copy DIR over with the clone, then there:
#
#   bash scripts/wheelhouse.sh DIR [--python-version 3.12] [--platform manylinux2014_x86_64 ...]
#   bash benchmarks/gpu_check.sh --wheels DIR --out OUT
#
# The target defaults to this machine's `python3` ($PYTHON): its version and platform.
# --python-version and --platform are pip download's (--platform may be repeated).
# Everything is pure Python except PyYAML, the one wheel made per Python and platform.
#
# What a CUDA PyTorch image already has is left out: torch, torchvision, numpy, pandas,
# scipy, seaborn, matplotlib, tqdm, filelock, pillow, tensorboard (and their own
# dependencies). What gpu_check needs beyond that, pinned to versions pyproject.toml
# allows (tests/test_gpu_check_script.py checks both):
#
#   NEEDED: the image lacks them; gpu_check installs exactly these pins
#     hydra-core, omegaconf, antlr4-python3-runtime, PyYAML   composing configs, the CLI
#       (antlr4 4.9.3, what omegaconf 2.3 wants, exists only as an sdist: built here
#       into a pure-Python wheel)
#     hydra-joblib-launcher, joblib                         hydra/launcher=joblib jobs
#     hydra-submitit-launcher, submitit, cloudpickle        hydra/launcher=submitit_*
#       (the launchers: GPU tests may spread a sweep's jobs over GPUs through them)
#     pytest, iniconfig, pluggy, Pygments                   running tests/test_gpu.py
#   FALLBACK: a CUDA PyTorch image has them already (torch, matplotlib and tensorboard
#     depend on them); pip takes these only where the image's are missing or too old
#     packaging                                             hydra-core, pytest
#     typing_extensions                                     submitit
#     setuptools                                            the editable install of the
#                                                           project, without build isolation
#   On a target Python before 3.11 pytest also needs exceptiongroup and tomli (added).
#
# Not included, on purpose: optuna, optuna-dashboard and SQLAlchemy
# (hparams_search=optuna only; gpu_check never imports them) and the project itself
# (gpu_check installs the clone it runs from, editable, with --no-deps --no-index).
#
# DIR also gets requirements.txt (what gpu_check installs) and target.txt (the target).
set -euo pipefail

NEEDED=(
  "hydra-core==1.3.8"
  "omegaconf==2.3.1"
  "antlr4-python3-runtime==4.9.3"
  "PyYAML==6.0.4"
  "hydra-joblib-launcher==1.2.0"
  "joblib==1.6.0"
  "hydra-submitit-launcher==1.2.0"
  "submitit==1.5.4"
  "cloudpickle==3.1.3"
  "pytest==9.2.0"
  "iniconfig==2.3.1"
  "pluggy==1.7.0"
  "Pygments==2.21.0"
)
FALLBACK=(
  "packaging==26.4"
  "typing_extensions==4.16.0"
  "setuptools==84.2.1"
)
OLD_PYTHON=(  # pytest's dependencies on a Python before 3.11
  "exceptiongroup==1.3.2"
  "tomli==2.5.0"
)
SDIST_ONLY="antlr4-python3-runtime"  # built here with pip wheel (pure Python)

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
}

DIR="" PYVER="" PLATFORMS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --python-version) PYVER="${2:?--python-version needs a value}"; shift 2 ;;
    --python-version=*) PYVER="${1#*=}"; shift ;;
    --platform) PLATFORMS+=("${2:?--platform needs a value}"); shift 2 ;;
    --platform=*) PLATFORMS+=("${1#*=}"); shift ;;
    -*) echo "wheelhouse.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *)
      if [[ -n "$DIR" ]]; then echo "wheelhouse.sh: one DIR only" >&2; exit 2; fi
      DIR="$1"; shift ;;
  esac
done
if [[ -z "$DIR" ]]; then usage >&2; exit 2; fi

PY="${PYTHON:-python3}"
if [[ -z "$PYVER" ]]; then
  PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
fi
if [[ ${#PLATFORMS[@]} -eq 0 ]]; then
  plat="$("$PY" -c 'import sysconfig; print(sysconfig.get_platform())')"
  what_platform="this machine's ($plat)"
else
  what_platform="${PLATFORMS[*]}"
fi
minor="${PYVER#*.}"
wheels=("${NEEDED[@]}" "${FALLBACK[@]}")
if [[ "${PYVER%%.*}" == 3 && "${minor%%.*}" -lt 11 ]]; then
  wheels+=("${OLD_PYTHON[@]}")
fi

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
echo "wheelhouse: Python $PYVER, platform $what_platform, into $DIR"

target_args=(--python-version "$PYVER")
for p in "${PLATFORMS[@]}"; do target_args+=(--platform "$p"); done
binaries=()
for req in "${wheels[@]}"; do
  [[ "${req%%==*}" == "$SDIST_ONLY" ]] || binaries+=("$req")
done
"$PY" -m pip download -q --disable-pip-version-check --only-binary=:all: --no-deps \
  "${target_args[@]}" -d "$DIR" "${binaries[@]}"

# The sdist-only package, built into a wheel once (pure Python: py3-none-any, any target).
sdist_req=""
for req in "${wheels[@]}"; do [[ "${req%%==*}" == "$SDIST_ONLY" ]] && sdist_req="$req"; done
if ! ls "$DIR"/antlr4_python3_runtime-"${sdist_req#*==}"-*.whl >/dev/null 2>&1; then
  "$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$DIR" "$sdist_req"
fi
built=("$DIR"/antlr4_python3_runtime-"${sdist_req#*==}"-*.whl)
case "$(basename "${built[0]}")" in
  *-py3-none-any.whl) ;;
  *) echo "wheelhouse.sh: $SDIST_ONLY built as ${built[0]}, not a pure-Python wheel" >&2
     exit 1 ;;
esac

{
  echo "# what benchmarks/gpu_check.sh installs from this folder (pip --no-index)"
  printf '%s\n' "${NEEDED[@]}"
  if [[ "${PYVER%%.*}" == 3 && "${minor%%.*}" -lt 11 ]]; then printf '%s\n' "${OLD_PYTHON[@]}"; fi
  echo "# fallbacks (packaging and typing_extensions come as dependencies): the image's"
  echo "# own copies are kept where they satisfy the pins above"
  echo "setuptools>=70.1  # builds the editable install; older ones also need wheel"
} > "$DIR/requirements.txt"
echo "python $PYVER; platform $what_platform; made $(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  > "$DIR/target.txt"
count=$(find "$DIR" -maxdepth 1 -name '*.whl' | wc -l)
echo "wheelhouse: $count wheels, $(du -sh "$DIR" | cut -f1) in $DIR"
