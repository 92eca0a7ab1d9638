#!/usr/bin/env python
"""Generate the sd_detr synthetic shapes dataset (COCO format) used by the smoke-test configs."""
import argparse
import importlib.util
import os
import sys

if importlib.util.find_spec("sd_detr") is None:  # source checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sd_detr.data.make_synthetic import make_synthetic_dataset  # noqa: E402
from sd_detr.data.synthetic import default_synthetic_root  # noqa: E402

EPILOG = r"""example:
  python tools/make_synthetic_dataset.py --root datasets/sd_detr_synthetic \
      --num-train 320 --num-val 80 --num-val-shift 80

The default root is $SD_DETR_SYNTHETIC_ROOT if set, else $DETECTRON2_DATASETS/sd_detr_synthetic
(DETECTRON2_DATASETS defaults to ./datasets). Output: ROOT/SPLIT/*.png and
ROOT/annotations/instances_SPLIT.json for SPLIT = train, val, val_shift, val_shift_objects,
val_shift_background. val_shift is the domain-shifted validation split (checkerboard backgrounds,
two-colour striped objects: never seen in training); val_shift_objects has only its striped objects
(on the seen smooth backgrounds), val_shift_background only its checkerboards (behind the seen
flat-coloured objects). Without --force only missing splits are generated, so a dataset made before
a shifted split existed gets it added with its train/val files untouched.

Running this first is optional: loading a config writes nothing, and a run that loads or evaluates a
missing split generates the missing splits then (with the same defaults and progress bar).
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", default=default_synthetic_root(), help="output directory (default: %(default)s)"
    )
    parser.add_argument(
        "--num-train", type=int, default=320, help="training images (default: %(default)s)"
    )
    parser.add_argument(
        "--num-val", type=int, default=80, help="validation images (default: %(default)s)"
    )
    parser.add_argument(
        "--num-val-shift",
        type=int,
        default=None,
        help="images of each domain-shifted validation split (default: --num-val)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--min-size", type=int, default=128, help="smallest image side (default: %(default)s px)"
    )
    parser.add_argument(
        "--max-size", type=int, default=192, help="largest image side (default: %(default)s px)"
    )
    parser.add_argument(
        "--force", action="store_true", help="regenerate even if the dataset already exists"
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    make_synthetic_dataset(args.root, num_train=args.num_train, num_val=args.num_val,
                           num_val_shift=args.num_val_shift, seed=args.seed, min_size=args.min_size,
                           max_size=args.max_size, force=args.force, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
