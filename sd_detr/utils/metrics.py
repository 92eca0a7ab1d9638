"""Reading Detectron2's ``metrics.json`` (JSONWriter: one JSON object per line)."""
import json
import os
from typing import List


def read_metrics_json(path: str, missing_ok: bool = False) -> List[dict]:
    """The rows of a run's ``metrics.json`` (``path``: the file or the run's output folder), in file
    order; a line cut short by a killed run is skipped. A missing file is an error naming it, or no rows
    with ``missing_ok``."""
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.json")
    if not os.path.isfile(path):
        if missing_ok:
            return []
        raise FileNotFoundError(f"no metrics.json at {path}")
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return rows
