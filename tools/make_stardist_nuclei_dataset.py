#!/usr/bin/env python
"""Convert the annotated nuclei image that ships inside the `stardist` wheel into a small COCO dataset.

The `stardist` package (PyPI, BSD-3) bundles one real 2-D fluorescence microscopy image with its instance
labels (``stardist/data/images/img2d.tif``: 512x512 uint16, values 0-235; ``mask2d.tif``: 125 labelled
nuclei, 0 = background), from the DSB 2018 nuclei data it was trained on. This tool cuts it into
non-overlapping ``--tile`` x ``--tile`` tiles, held-out = the right-most ``--heldout-cols`` column(s) of
tiles (a spatially separate region, so held-out nuclei are never seen in training, only the few crossing
the column border are split between both), train = the others. Each tile is written as an RGB PNG
(grey replicated) and each nucleus in it as a COCO box, one category "nucleus".

Boxes: the tight box of the nucleus' pixels inside the tile, absolute XYWH in tile pixels (continuous
coordinates, as the synthetic data: pixel column j covers [j, j + 1)); ``area`` = those pixels. A nucleus
cut by the tile border keeps ``iscrowd = 0`` when at least ``--min-visible`` (default 0.5) of its pixels
lie in the tile, else it is marked ``iscrowd = 1``: Detectron2 drops crowd boxes from training and COCOeval
neither rewards nor penalises detections on them, so a sliver of a nucleus is neither a target nor a
false positive.

Nothing is downloaded: the files are read from the installed package (found without importing it, so its
dependencies need not be installed: ``pip install --no-deps stardist==0.9.2`` is enough) or, with
``--source``, from a folder holding the two TIFFs or from the wheel file itself.

Examples:
  python tools/make_stardist_nuclei_dataset.py                                   # installed stardist
  python tools/make_stardist_nuclei_dataset.py --source stardist-0.9.2-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl
  python tools/make_stardist_nuclei_dataset.py --output datasets/stardist_nuclei --tile 128 --heldout-cols 1

Output (default ``$DETECTRON2_DATASETS/stardist_nuclei``, DETECTRON2_DATASETS defaulting to ./datasets):
  OUT/train/r0_c0.png ...  OUT/heldout/r0_c3.png ...
  OUT/annotations/instances_train.json  OUT/annotations/instances_heldout.json
Train on it with the train tool's ``--dataset-train OUT/annotations/instances_train.json:OUT/train
--dataset-val OUT/annotations/instances_heldout.json:OUT/heldout`` (or ``tools/run_ablations.py
--table stardist_nuclei``).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from sd_detr.data.stardist_nuclei import default_output, make_stardist_nuclei_dataset  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=None,
                        help="folder with img2d.tif and mask2d.tif, or stardist's wheel (default: the installed package)")
    parser.add_argument("--output", default=default_output(), help="output folder (default: %(default)s)")
    parser.add_argument("--tile", type=int, default=128, help="tile side in pixels (default: %(default)s)")
    parser.add_argument("--heldout-cols", type=int, default=1,
                        help="right-most tile columns held out (default: %(default)s)")
    parser.add_argument("--min-visible", type=float, default=0.5,
                        help="a cut nucleus with less of its pixels in the tile is iscrowd (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    summary = make_stardist_nuclei_dataset(args.source, args.output, args.tile, args.heldout_cols,
                                           args.min_visible)
    for split, s in summary.items():
        print(f"{split}: {s['images']} tiles, {s['annotations']} nuclei ({s['crowd']} cut ones marked iscrowd)")
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
