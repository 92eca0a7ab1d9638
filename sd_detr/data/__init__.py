"""Data: synthetic COCO-format dataset, own COCO-format data (``apply_custom_datasets``), validated
dataset loading, the checks before a run (``check_inputs_before_training``) and DETR's data mapper."""
from .checks import check_inputs_before_training
from .custom import apply_custom_datasets, parse_dataset_spec, register_custom_coco
from .datasets import get_detr_dataset_dicts
from .mapper import DETR_TRAIN_MIN_SIZES, DetrDatasetMapper, RandomChoice, build_detr_augmentations
from .synthetic import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_TRAIN_NAME,
    SYNTHETIC_VAL_NAME,
    default_synthetic_root,
    generate_synthetic_dataset,
    is_generated,
    register_synthetic_dataset,
)

__all__ = [k for k in globals() if not k.startswith("_")]
