# importing a source module registers its converter
from . import conditional_detr, dab_detr, smca_detr  # noqa: F401
from .checkpointer import CheckpointMismatchError, DETRCheckpointer
from .convert import CONVERTERS, coco_91_to_80_indices, convert_state_dict, register_converter
from .safe_load import UnsafeCheckpointError, load_pickle_weights, load_torch_weights, load_weights_file

__all__ = ["CONVERTERS", "CheckpointMismatchError", "DETRCheckpointer", "UnsafeCheckpointError",
           "coco_91_to_80_indices", "convert_state_dict", "load_pickle_weights", "load_torch_weights",
           "load_weights_file", "register_converter"]
