#!/usr/bin/env python
"""Export a trained detector to ONNX or TorchScript: image tensor in, boxes / scores / labels out.

  python tools/export_model.py --config-file projects/conditional_detr/configs/conditional_detr_r50_50ep.py \\
      --checkpoint output/conditional_detr_r50_50ep/model_final.pth --format onnx --output export/ \\
      --size 800 1216 --dynamic

Writes DIR/model.onnx (or DIR/model.pt for TorchScript) and DIR/model.onnx.json (DIR/model.pt.json): input
size or dynamic axes, pixel mean/std, class names, the config's test resize (also inside the file: ONNX
metadata_props, TorchScript extra file sd_detr.json). The checkpoint is loaded strictly. The export is then
checked against the eager model on a random image at the export size (and, with --dynamic, at a second
size); a mismatch is an error and removes the written files. See docs/export.md.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

import sd_detr  # noqa: E402,F401  (first: registers the models, quiets import-time warnings)

from sd_detr.export.from_config import check_export_options, export_from_config  # noqa: E402

logger = logging.getLogger("sd_detr.export")


def parse_args(argv=None):
    from sd_detr.export import DEFAULT_OPSET, FORMATS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, help="LazyConfig .py of the detector")
    p.add_argument("--checkpoint", default=None,
                   help="weights (.pth), loaded strictly; default: the config's train.init_checkpoint; "
                        "'none' exports the freshly initialised model (for tests)")
    p.add_argument("--format", required=True, help=f"one of {', '.join(FORMATS)}")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="input height and width traced (and, without --dynamic, the only size the file takes); "
                        "default: the config's test resize of a 4:3 image")
    p.add_argument("--batch", type=int, default=0,
                   help="export for a batch [B, 3, H, W] of equal-size images (0: one image [3, H, W])")
    p.add_argument("--dynamic", action="store_true", help="height and width as dynamic axes (checked at a second size)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 17)")
    p.add_argument("--no-verify", action="store_true", help="skip the check of the export against the eager model")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides key=value")
    args = p.parse_args(argv)
    try:
        check_export_options(args.format, args.batch, args.size)
    except ValueError as e:
        p.error(str(e))
    return args


def main(argv=None):
    from detectron2.utils.logger import setup_logger

    from sd_detr.export import ExportError

    setup_logger(name="sd_detr")
    args = parse_args(argv)
    try:
        export_from_config(args.config_file, args.output, args.format, checkpoint=args.checkpoint, size=args.size,
                           batch=args.batch, dynamic=args.dynamic, opset=args.opset,
                           verify_export=not args.no_verify, opts=args.opts)
    except (ExportError, FileNotFoundError, KeyError, ValueError) as e:
        logger.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
