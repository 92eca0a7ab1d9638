#!/usr/bin/env bash
# The project's checks and benchmarks on a CUDA machine, in one command (meant to take under 10 minutes on one
# datacenter GPU; not yet run on one): the CUDA tests (tests/gpu), then one table, a row per registered
# detector at R50 with 2 images of 800x1216 per step: training images/s with AMP off and on, inference
# images/s off and on, peak memory of the training step (GB).
# Results: output/gpu_check/gpu_check.md (the table, ready for docs/benchmarks.md) and gpu_check.json.
#   bash tools/gpu_check.sh [tools/gpu_check.py options]      e.g. --dry-run, --skip tests, --train
# Uses the project's environment (make setup) or SD_DETR_PYTHON.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${SD_DETR_PYTHON:-.venv/bin/python}"
if [[ ! -x "$PY" ]]; then
  bash scripts/setup_env.sh
fi
exec "$PY" tools/gpu_check.py "$@"
