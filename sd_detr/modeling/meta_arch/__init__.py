# importing a module registers its meta-architecture in Detectron2's META_ARCH_REGISTRY
from .conditional_detr import ConditionalDETR
from .dab_detr import DABDETR
from .detr import DETRDetector
from .sd_detr import SDDETR
from .smca_detr import SMCADETR

__all__ = ["ConditionalDETR", "DABDETR", "DETRDetector", "SDDETR", "SMCADETR"]
