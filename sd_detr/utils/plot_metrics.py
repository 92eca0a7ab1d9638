"""Curves of training runs from their ``metrics.json``: loss terms and AP over iterations, runs overlaid,
one PNG (the library side of tools/plot_metrics.py)."""
import math
import os
from typing import Dict, List, Sequence, Tuple

from .metrics import read_metrics_json

DEFAULT_KEYS = ("total_loss", "loss_class", "loss_bbox", "loss_giou", "bbox/AP", "bbox/AP50")


def load_metrics(path: str) -> List[Dict]:
    """Rows of a run's metrics.json (a folder or the file), one per iteration in iteration order; a line
    cut short by a killed run is skipped; a row repeated by a resumed run is taken from the later run
    (rows of the same iteration are merged, the later value winning)."""
    rows = {}
    for row in read_metrics_json(path):
        if "iteration" in row:
            rows.setdefault(row["iteration"], {}).update(row)
    return [rows[k] for k in sorted(rows)]


def series(rows: Sequence[Dict], key: str) -> Tuple[List[int], List[float]]:
    """(iterations, values) of ``key`` over the rows that hold it (a None value is left out)."""
    points = [(r["iteration"], r[key]) for r in rows if key in r and r[key] is not None]
    return [p[0] for p in points], [p[1] for p in points]


def default_labels(runs: Sequence[str]) -> List[str]:
    """A label per run: its folder's name (the folder holding a given metrics.json file)."""
    return [os.path.basename(os.path.dirname(os.path.abspath(r)) if r.endswith(".json") else os.path.abspath(r))
            for r in runs]


def plot(runs: Sequence[List[Dict]], labels: Sequence[str], keys: Sequence[str], output: str) -> List[str]:
    """Draw one panel per key (3 per row, 5 x 3.6 inches at 100 dpi) with every run overlaid, to the PNG
    ``output``. Keys no run holds are left out; returns the keys drawn (ValueError if none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(series(rows, k)[0] for rows in runs)]
    if not keys:
        raise ValueError("none of the requested keys is in the given metrics")
    cols = min(3, len(keys))
    rows_n = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(5 * cols, 3.6 * rows_n), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for rows, label in zip(runs, labels):
            x, y = series(rows, key)
            if x:
                ax.plot(x, y, marker="o" if len(x) < 20 else None, label=label)
        ax.set_title(key)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)  # a library call: no figure left open in the caller's process
    return keys
