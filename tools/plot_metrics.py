#!/usr/bin/env python
"""Plot loss terms and AP over iterations from one or more runs' metrics.json, runs overlaid, one PNG.

Examples:
  python tools/plot_metrics.py output/demo_conditional_detr --output curves.png
  python tools/plot_metrics.py run_a/metrics.json run_b/metrics.json --labels baseline assigner \\
      --keys total_loss loss_class loss_giou bbox/AP bbox/AP50 --output compare.png
"""
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from sd_detr.utils.metrics import read_metrics_json  # noqa: E402

DEFAULT_KEYS = ("total_loss", "loss_class", "loss_bbox", "loss_giou", "bbox/AP", "bbox/AP50")


def load_metrics(path):
    """Rows of a run's metrics.json (a folder or the file); a line cut short by a killed run is skipped;
    a row repeated by a resumed run is taken from the later run."""
    rows = {}
    for row in read_metrics_json(path):
        if "iteration" in row:
            rows.setdefault(row["iteration"], {}).update(row)
    return [rows[k] for k in sorted(rows)]


def series(rows, key):
    points = [(r["iteration"], r[key]) for r in rows if key in r and r[key] is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot(runs, labels, keys, output):
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
    return keys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders or metrics.json files")
    parser.add_argument("--labels", nargs="+", help="one label per run (default: the folder names)")
    parser.add_argument("--keys", nargs="+", default=list(DEFAULT_KEYS), help="metrics to plot")
    parser.add_argument("--output", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    labels = args.labels or [os.path.basename(os.path.dirname(os.path.abspath(r)) if r.endswith(".json") else os.path.abspath(r)) for r in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"{len(args.runs)} runs but {len(labels)} labels")
    runs = [load_metrics(r) for r in args.runs]
    keys = plot(runs, labels, args.keys, args.output)
    print(f"wrote {args.output}: {', '.join(keys)} for {', '.join(labels)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
