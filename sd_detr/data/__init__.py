"""Data: synthetic COCO-format dataset, validated dataset loading and DETR's data mapper.

Names are imported lazily (PEP 562) so that ``sd_detr.data.synthetic`` (numpy + OpenCV only) can
be used without importing torch/detectron2, e.g. by tools/make_synthetic_dataset.py.
"""
import importlib

_EXPORTS = {
    "get_detr_dataset_dicts": "datasets",
    "DETR_TRAIN_MIN_SIZES": "mapper",
    "DetrDatasetMapper": "mapper",
    "RandomChoice": "mapper",
    "build_detr_augmentations": "mapper",
    "SYNTHETIC_CLASSES": "synthetic",
    "SYNTHETIC_TRAIN_NAME": "synthetic",
    "SYNTHETIC_VAL_NAME": "synthetic",
    "default_synthetic_root": "synthetic",
    "generate_synthetic_dataset": "synthetic",
    "is_generated": "synthetic",
    "register_synthetic_dataset": "synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
