#!/usr/bin/env bash
# The project's checks and benchmarks on a CUDA machine, in one run (about 8 minutes on one datacenter GPU):
# CUDA tests, tiny-detector training with and without AMP, R50 benchmarks in fp32 and AMP.
# Results: output/gpu_check/gpu_check.md (a table ready for docs/benchmarks.md) and gpu_check.json.
#   bash tools/gpu_check.sh [tools/gpu_check.py options]      e.g. --skip benchmark, --dry-run
# Uses the project's environment (make setup) or SD_DETR_PYTHON.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${SD_DETR_PYTHON:-.venv/bin/python}"
if [[ ! -x "$PY" ]]; then
  bash scripts/setup_env.sh
fi
exec "$PY" tools/gpu_check.py "$@"
