from .conditional_detr import ConditionalDETR
from .detr import DETRDetector

__all__ = ["ConditionalDETR", "DETRDetector"]
