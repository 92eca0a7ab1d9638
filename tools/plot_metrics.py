#!/usr/bin/env python
"""Plot loss terms and AP over iterations from one or more runs' metrics.json, runs overlaid, one PNG.

Examples:
  python tools/plot_metrics.py output/demo_conditional_detr --output curves.png
  python tools/plot_metrics.py run_a/metrics.json run_b/metrics.json --labels baseline assigner \\
      --keys total_loss loss_class loss_giou bbox/AP bbox/AP50 --output compare.png
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from sd_detr.utils.plot_metrics import DEFAULT_KEYS, default_labels, load_metrics, plot  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders or metrics.json files")
    parser.add_argument("--labels", nargs="+", help="one label per run (default: the folder names)")
    parser.add_argument("--keys", nargs="+", default=list(DEFAULT_KEYS), help="metrics to plot")
    parser.add_argument("--output", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    labels = args.labels or default_labels(args.runs)
    if len(labels) != len(args.runs):
        parser.error(f"{len(args.runs)} runs but {len(labels)} labels")
    runs = [load_metrics(r) for r in args.runs]
    keys = plot(runs, labels, args.keys, args.output)
    print(f"wrote {args.output}: {', '.join(keys)} for {', '.join(labels)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
