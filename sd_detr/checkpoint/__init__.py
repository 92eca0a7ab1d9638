from . import conditional_detr  # noqa: F401  (registers the converter)
from .checkpointer import CheckpointMismatchError, DETRCheckpointer
from .convert import CONVERTERS, coco_91_to_80_indices, convert_state_dict, register_converter

__all__ = ["CONVERTERS", "CheckpointMismatchError", "DETRCheckpointer", "coco_91_to_80_indices",
           "convert_state_dict", "register_converter"]
