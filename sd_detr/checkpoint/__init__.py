from .convert import CONVERTERS, convert_state_dict, coco_91_to_80_indices

__all__ = ["CONVERTERS", "convert_state_dict", "coco_91_to_80_indices"]
