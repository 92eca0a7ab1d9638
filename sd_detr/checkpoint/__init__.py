# importing a source module registers its converter
from . import conditional_detr, dab_detr, smca_detr  # noqa: F401
from .checkpointer import CheckpointMismatchError, DETRCheckpointer
from .convert import CONVERTERS, coco_91_to_80_indices, convert_state_dict, register_converter

__all__ = ["CONVERTERS", "CheckpointMismatchError", "DETRCheckpointer", "coco_91_to_80_indices",
           "convert_state_dict", "register_converter"]
