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

import torch  # noqa: E402

logger = logging.getLogger("sd_detr.export")
FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.pt"}


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
    if args.format not in FORMATS:
        p.error(f"--format {args.format!r} is not supported; choose one of {', '.join(FORMATS)}")
    if args.batch < 0:
        p.error(f"--batch must be >= 0, got {args.batch}")
    if args.size is not None and min(args.size) < 32:
        p.error(f"--size {args.size[0]} {args.size[1]} is too small (at least 32 x 32)")
    return args


def test_resize_of(cfg):
    """The config's test-time ResizeShortestEdge as a dict (None if it has none)."""
    from detectron2.config import instantiate
    from detectron2.data import transforms as T

    try:
        augs = instantiate(cfg.dataloader.test.mapper.augmentations)
    except Exception:  # noqa: BLE001  (a config without a test mapper: no resize recorded)
        return None
    for aug in augs:
        if isinstance(aug, T.ResizeShortestEdge):
            return {"short_edge_length": [int(s) for s in aug.short_edge_length], "max_size": int(aug.max_size),
                    "sample_style": "choice" if aug.is_range is False else "range"}
    return None


def class_names_of(cfg, num_classes):
    """thing_classes of the config's test dataset, if known without loading it."""
    from detectron2.data import MetadataCatalog

    try:
        names = cfg.dataloader.test.dataset.names
        names = names if isinstance(names, str) else names[0]
        classes = MetadataCatalog.get(names).get("thing_classes", None)
    except Exception:  # noqa: BLE001
        classes = None
    if classes is None or len(classes) != num_classes:
        logger.warning("no class names of %d classes in the config's test dataset: writing class_0..", num_classes)
        return None
    return list(classes)


def default_size(resize):
    """(H, W) of a 4:3 landscape image after the test resize (800 x 1067 for DETR's 800/1333)."""
    if not resize:
        return 800, 1216
    short = resize["short_edge_length"][-1]
    long_ = min(round(short * 4 / 3), resize["max_size"])
    return short, long_


def export(args):
    from detectron2.config import LazyConfig, instantiate

    from sd_detr.checkpoint import DETRCheckpointer, UnsafeCheckpointError
    from sd_detr.config import check_override_keys
    from sd_detr.export import (ExportableDetector, ExportError, build_metadata, export_onnx, export_torchscript,
                                onnx_runner, torchscript_runner, verify)

    if not os.path.isfile(args.config_file):
        raise FileNotFoundError(f"--config-file {args.config_file}: no such file")
    cfg = LazyConfig.load(args.config_file)
    check_override_keys(cfg, args.opts)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    torch.manual_seed(0)  # reproducible weights when there is no checkpoint (sd_detr.export.benchmark does the same)
    model = instantiate(cfg.model).eval()
    checkpoint = args.checkpoint if args.checkpoint is not None else cfg.train.get("init_checkpoint", "")
    if checkpoint and checkpoint.lower() != "none":
        try:
            DETRCheckpointer(model, strict=True).load(checkpoint)
        except UnsafeCheckpointError as e:  # not a misfit: a file that asks to run code (names file and global)
            raise ExportError(str(e)) from None
        except Exception as e:  # noqa: BLE001  (re-raised naming config and checkpoint)
            raise ExportError(f"checkpoint {checkpoint} does not fit {type(model).__name__} of {args.config_file}: "
                              f"{e}") from e
    else:
        checkpoint = None
        logger.warning("no checkpoint: exporting the freshly initialised %s", type(model).__name__)
    resize = test_resize_of(cfg)
    h, w = args.size or default_size(resize)
    shape = (3, h, w) if not args.batch else (args.batch, 3, h, w)
    wrapper = ExportableDetector(model)
    metadata = build_metadata(model, fmt=args.format, input_shape=shape, dynamic=args.dynamic,
                              class_names=class_names_of(cfg, model.num_classes), config_file=args.config_file,
                              checkpoint=checkpoint, test_resize=resize, opset=args.opset)
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, FILE_NAMES[args.format])
    example = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    if args.format == "onnx":
        export_onnx(wrapper, example, path, metadata, dynamic=args.dynamic, opset=args.opset,
                    config_file=args.config_file)
        runner = onnx_runner(path)
    else:
        export_torchscript(wrapper, example, path, metadata, config_file=args.config_file)
        runner = torchscript_runner(path)
    logger.info("wrote %s and %s.json (%s, input %s%s)", path, path, metadata["detector"], list(shape),
                ", dynamic height/width" if args.dynamic else "")
    if not args.no_verify:
        shapes = [shape]
        if args.dynamic:
            stride = int(getattr(model, "feature_stride", 32))
            shapes.append(shape[:-2] + (h + 2 * stride, max(2 * stride, w - stride)))
        for s, (ok, msg) in verify(wrapper, runner, shapes, allow_ties=True).items():
            if not ok:
                for f in (path, path + ".json"):  # leave no file that gives wrong detections
                    if os.path.exists(f):
                        os.remove(f)
                hint = (" at a size other than the traced one: a part of the detector takes a size as a constant; "
                        "export without --dynamic" if s != tuple(shape) else "")
                raise ExportError(f"{args.format} export of {metadata['detector']} ({args.config_file}) differs from "
                                  f"the eager model on input {list(s)}{hint}: {msg}")
            logger.info("input %s: same detections as eager (%s)", list(s), msg)
    return path


def main(argv=None):
    from detectron2.utils.logger import setup_logger

    from sd_detr.export import ExportError

    setup_logger(name="sd_detr")
    args = parse_args(argv)
    try:
        export(args)
    except (ExportError, FileNotFoundError, KeyError, ValueError) as e:
        logger.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
