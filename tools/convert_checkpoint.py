#!/usr/bin/env python
"""Convert a checkpoint released by an official implementation to this project's parameter names.

The official COCO class heads (index = COCO category id) are mapped to Detectron2's 80 contiguous
classes; every official key must be covered by a rule (unknown keys are listed, never dropped, with the
--source the checkpoint looks like when it is another family's).

Example:
  python tools/convert_checkpoint.py --source conditional_detr \\
      --input ConditionalDETR_r50_epoch50.pth --output conditional_detr_r50_50ep_converted.pth
  python tools/lazyconfig_train_net.py --eval-only \\
      --config-file projects/conditional_detr/configs/conditional_detr_r50_50ep.py \\
      train.init_checkpoint=conditional_detr_r50_50ep_converted.pth
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from sd_detr.checkpoint import CONVERTERS  # noqa: E402
from sd_detr.checkpoint.convert_file import ConversionError, convert_checkpoint_file  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, choices=sorted(CONVERTERS), help="official implementation")
    parser.add_argument("--input", required=True, help="official checkpoint (.pth with a 'model' entry)")
    parser.add_argument("--output", required=True, help="converted checkpoint to write")
    parser.add_argument("--num-classes", type=int, default=80,
                        help="80: map the COCO-id head to Detectron2's classes; else keep the official head")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.input):
        parser.error(f"--input {args.input} does not exist")
    try:
        n = convert_checkpoint_file(args.source, args.input, args.output, num_classes=args.num_classes)
    except ConversionError as e:  # the file and why, not a traceback
        sys.exit(str(e))
    print(f"converted {n} tensors of {args.input} ({args.source}) -> {args.output}")


if __name__ == "__main__":
    main()
