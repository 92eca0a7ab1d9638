"""Export a detector given by its LazyConfig and checkpoint to a checked ONNX or TorchScript file (the
library side of tools/export_model.py; see docs/export.md).

Writes DIR/model.onnx (or DIR/model.pt) and its side JSON; the export is then checked against the eager
model on a random image at the export size (and, dynamic, at a second size); a mismatch is an
:class:`~sd_detr.export.ExportError` and removes the written files."""
import logging
import os
from typing import Optional, Sequence, Tuple

import torch

logger = logging.getLogger("sd_detr.export")

FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.pt"}


def check_export_options(fmt: str, batch: int = 0, size: Optional[Sequence[int]] = None):
    """ValueError (the message a command line shows) for an unsupported format, a negative batch or a size
    under 32 x 32."""
    from .exporter import FORMATS

    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r} is not supported; choose one of {', '.join(FORMATS)}")
    if batch < 0:
        raise ValueError(f"--batch must be >= 0, got {batch}")
    if size is not None and min(size) < 32:
        raise ValueError(f"--size {size[0]} {size[1]} is too small (at least 32 x 32)")


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


test_resize_of.__test__ = False  # a library function, not a pytest test


def class_names_of(cfg, num_classes: int):
    """thing_classes of the config's test dataset, if known without loading it (None, warned, otherwise)."""
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


def default_size(resize) -> Tuple[int, int]:
    """(H, W) of a 4:3 landscape image after the test resize (800 x 1067 for DETR's 800/1333)."""
    if not resize:
        return 800, 1216
    short = resize["short_edge_length"][-1]
    long_ = min(round(short * 4 / 3), resize["max_size"])
    return short, long_


def export_from_config(config_file: str, output: str, fmt: str, checkpoint: Optional[str] = None,
                       size: Optional[Sequence[int]] = None, batch: int = 0, dynamic: bool = False,
                       opset: Optional[int] = None, verify_export: bool = True, opts: Sequence[str] = ()) -> str:
    """Export the config's model (``opts``: checked key=value overrides) with the weights of ``checkpoint``
    (loaded strictly; None: the config's train.init_checkpoint; ``"none"``: the fresh model, seed 0) to
    ``output``/model.onnx or model.pt, traced at ``size`` (H, W; default :func:`default_size`), one image
    [3, H, W] or with ``batch`` > 0 a batch [B, 3, H, W]; ``dynamic``: height and width as dynamic axes.
    Returns the written file's path."""
    from detectron2.config import LazyConfig, instantiate

    from ..checkpoint import DETRCheckpointer, UnsafeCheckpointError
    from ..config import check_override_keys
    from .exporter import (DEFAULT_OPSET, ExportError, build_metadata, export_onnx, export_torchscript, onnx_runner,
                           torchscript_runner, verify)
    from .wrapper import ExportableDetector

    opset = DEFAULT_OPSET if opset is None else opset
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"--config-file {config_file}: no such file")
    cfg = LazyConfig.load(config_file)
    check_override_keys(cfg, list(opts))
    cfg = LazyConfig.apply_overrides(cfg, list(opts))
    torch.manual_seed(0)  # reproducible weights when there is no checkpoint (sd_detr.export.benchmark does the same)
    model = instantiate(cfg.model).eval()
    checkpoint = checkpoint if checkpoint is not None else cfg.train.get("init_checkpoint", "")
    if checkpoint and checkpoint.lower() != "none":
        try:
            DETRCheckpointer(model, strict=True).load(checkpoint)
        except UnsafeCheckpointError as e:  # not a misfit: a file that asks to run code (names file and global)
            raise ExportError(str(e)) from None
        except Exception as e:  # noqa: BLE001  (re-raised naming config and checkpoint)
            raise ExportError(f"checkpoint {checkpoint} does not fit {type(model).__name__} of {config_file}: "
                              f"{e}") from e
    else:
        checkpoint = None
        logger.warning("no checkpoint: exporting the freshly initialised %s", type(model).__name__)
    resize = test_resize_of(cfg)
    h, w = size or default_size(resize)
    shape = (3, h, w) if not batch else (batch, 3, h, w)
    wrapper = ExportableDetector(model)
    metadata = build_metadata(model, fmt=fmt, input_shape=shape, dynamic=dynamic,
                              class_names=class_names_of(cfg, model.num_classes), config_file=config_file,
                              checkpoint=checkpoint, test_resize=resize, opset=opset)
    os.makedirs(output, exist_ok=True)
    path = os.path.join(output, FILE_NAMES[fmt])
    example = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    if fmt == "onnx":
        export_onnx(wrapper, example, path, metadata, dynamic=dynamic, opset=opset, config_file=config_file)
        runner = onnx_runner(path)
    else:
        export_torchscript(wrapper, example, path, metadata, config_file=config_file)
        runner = torchscript_runner(path)
    logger.info("wrote %s and %s.json (%s, input %s%s)", path, path, metadata["detector"], list(shape),
                ", dynamic height/width" if dynamic else "")
    if verify_export:
        shapes = [shape]
        if dynamic:
            stride = int(getattr(model, "feature_stride", 32))
            shapes.append(shape[:-2] + (h + 2 * stride, max(2 * stride, w - stride)))
        for s, (ok, msg) in verify(wrapper, runner, shapes, allow_ties=True).items():
            if not ok:
                for f in (path, path + ".json"):  # leave no file that gives wrong detections
                    if os.path.exists(f):
                        os.remove(f)
                hint = (" at a size other than the traced one: a part of the detector takes a size as a constant; "
                        "export without --dynamic" if s != tuple(shape) else "")
                raise ExportError(f"{fmt} export of {metadata['detector']} ({config_file}) differs from "
                                  f"the eager model on input {list(s)}{hint}: {msg}")
            logger.info("input %s: same detections as eager (%s)", list(s), msg)
    return path
