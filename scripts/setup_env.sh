#!/usr/bin/env bash
# Idempotent set-up of sd_detr's environment; both README commands (`make demo`, `make test`) call it.
#
#   bash scripts/setup_env.sh            # creates ./.venv (or reuses it) and installs what is missing
#   bash scripts/setup_env.sh demo       # only what training, evaluation and the pictures need (`make demo`):
#                                        # not the test-only packages (pytest, onnx, onnxruntime, stardist)
#   SD_DETR_PYTHON=/path/to/python bash scripts/setup_env.sh
#                                        # installs into an existing environment instead; a detectron2
#                                        # already importable there (e.g. a CUDA build) is kept
#
# Every step checks first and skips what is already there; a second run finishes in seconds (a full set-up
# satisfies a later `demo` one; a `demo` set-up is completed by a later full one).
# Versions are pinned in constraints.txt. detectron2 0.6 comes from the `pb1-detectron2` source release,
# built without compiled ops (see docs/environment.md).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CONSTRAINTS="$ROOT/constraints.txt"
CACHE="$ROOT/.cache/setup"
PROFILE="${1:-full}"
if [[ "$PROFILE" != full && "$PROFILE" != demo ]]; then
  echo "[setup] unknown profile '$PROFILE': use 'demo' or nothing (everything)" >&2
  exit 2
fi
# what each profile must import (the fast path's check)
DEMO_MODULES="torch, torchvision, detectron2, sd_detr, scipy, pycocotools, fvcore, cv2, matplotlib, tensorboard"
FULL_MODULES="$DEMO_MODULES, pytest, onnx, onnxruntime"

if [[ -n "${SD_DETR_PYTHON:-}" ]]; then
  PY="$SD_DETR_PYTHON"
else
  if [[ ! -x .venv/bin/python ]]; then
    echo "[setup] creating .venv with $(command -v python3)"
    python3 -m venv .venv
  fi
  PY="$ROOT/.venv/bin/python"
fi

# Fast path: the stamp records the inputs of the last successful set-up.
STAMP_DIR="$("$PY" -c 'import sys; print(sys.prefix)')"
STAMP="$STAMP_DIR/.sd_detr_setup_stamp"
FINGERPRINT="$(cat "$CONSTRAINTS" setup.py scripts/setup_env.sh scripts/install_detectron2.py | sha256sum | cut -d' ' -f1)"
# The stamp: "<fingerprint> <profile>"; a full set-up serves both profiles.
if [[ -f "$STAMP" ]]; then read -r DONE_PRINT DONE_PROFILE < "$STAMP" || true; fi
if [[ "${DONE_PRINT:-}" == "$FINGERPRINT" && ( "${DONE_PROFILE:-full}" == full || "$PROFILE" == demo ) ]]; then
  if [[ "$PROFILE" == demo ]]; then MODULES="$DEMO_MODULES"; else MODULES="$FULL_MODULES"; fi
  if "$PY" -I -c "import $MODULES" 2>/dev/null; then
    echo "[setup] environment up to date ($PY)"
    exit 0
  fi
fi

# Byte-compiling: pip compiles the .py files it installs one by one, on the core it runs on (10,500 files:
# torch, sympy, scipy, ...). Here pip installs with --no-compile and compileall compiles on the other core in
# the background (each folder once pip is done writing it), then on both cores whatever is left. The .pyc files
# must be written at set-up: a process run with PYTHONDONTWRITEBYTECODE=1 (set on some machines) would
# otherwise compile torch afresh at every import.
PIP=("$PY" -m pip install --disable-pip-version-check -q --no-compile -c "$CONSTRAINTS")
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
COMPILE_PIDS=()
# compile WORKERS [compileall options] [folders]: compileall skips the files whose .pyc is up to date; a file it
# cannot compile (pip ignores those too, e.g. templates or other Pythons' code in a package) is not an error
compile_site() { local j="$1"; shift; "$PY" -m compileall -qq -j "$j" "${@:-$SITE}" >/dev/null 2>&1 || true; }
# the same in the background, after the background compiles started before it (one core: pip has the other)
compile_later() {
  local before=("${COMPILE_PIDS[@]}")
  ( for pid in "${before[@]}"; do while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done; done
    compile_site 1 "$@" ) &
  COMPILE_PIDS+=($!)
}
has() { "$PY" -I -c "import $1" 2>/dev/null; }

if has torch && has torchvision; then
  echo "[setup] keeping torch $("$PY" -c 'import torch; print(torch.__version__)') / torchvision $("$PY" -c 'import torchvision; print(torchvision.__version__)')"
else
  echo "[setup] installing torch + torchvision (about 1 min with cached wheels)"
  "${PIP[@]}" torch torchvision
  # only the folders of torch's install, which no later step writes to
  compile_later "$SITE"/torch "$SITE"/torchvision "$SITE"/sympy "$SITE"/networkx
fi

# one pip call (each call resolves afresh): the pinned pure-python and numeric dependencies and tensorboard
# (training writes TensorBoard events beside metrics.json); the full set-up adds the test-only packages: pytest
# and the export dependencies (tests/export)
DEPS=(numpy Pillow opencv-python-headless scipy pycocotools fvcore iopath omegaconf hydra-core matplotlib
  setuptools termcolor yacs tabulate cloudpickle tqdm pydot wheel tensorboard)
if [[ "$PROFILE" == full ]]; then
  echo "[setup] installing the pinned dependencies, tensorboard, pytest, onnx and onnxruntime"
  "${PIP[@]}" "${DEPS[@]}" pytest onnx onnxruntime protobuf ml_dtypes flatbuffers
  if ! "$PY" -m pip show -q stardist >/dev/null 2>&1; then
    echo "[setup] installing stardist's wheel without its dependencies (its bundled nuclei image: the real-data table)"
    "${PIP[@]}" --no-deps stardist
  fi
else
  echo "[setup] installing the pinned dependencies and tensorboard (demo set-up: no test-only packages)"
  "${PIP[@]}" "${DEPS[@]}"
fi

compile_later -x '/detectron2/' "$SITE"  # all but detectron2's folder, which the next step may write

if has detectron2; then
  echo "[setup] keeping detectron2 at $("$PY" -c 'import detectron2, os; print(os.path.dirname(detectron2.__file__))')"
else
  echo "[setup] building detectron2 0.6 from the pb1-detectron2 source release (no compiled ops)"
  "$PY" scripts/install_detectron2.py --cache "$CACHE" --constraints "$CONSTRAINTS"
fi

# setup.py links the model zoo (sd_detr/model_zoo/configs, git-ignored) at install: a fresh clone reinstalls
if [[ -d "$ROOT/sd_detr/model_zoo/configs" ]] \
   && "$PY" -I -c "import sd_detr, os, sys; sys.exit(0 if os.path.realpath(os.path.dirname(sd_detr.__file__)) == os.path.realpath('$ROOT/sd_detr') else 1)" 2>/dev/null; then
  echo "[setup] sd_detr already installed from $ROOT"
else
  echo "[setup] installing sd_detr in editable mode"
  "${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
fi

if [[ ${#COMPILE_PIDS[@]} -gt 0 ]]; then wait "${COMPILE_PIDS[@]}"; fi
echo "[setup] byte-compiling the installed packages"
compile_site 0
"$PY" -c "import torch, torchvision, detectron2, sd_detr; print('[setup] ok: torch', torch.__version__, '| torchvision', torchvision.__version__, '| detectron2', detectron2.__version__)"
echo "$FINGERPRINT $PROFILE" > "$STAMP"
