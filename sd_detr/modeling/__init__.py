"""Models: importing this package registers the backbones and meta-architectures with Detectron2."""
from .assigner import HungarianAssigner
from .assignment import Assignment
from .backbone import build_detr_resnet, build_detr_resnet_backbone
from .criterion import SetCriterion
from .decoder import ConditionalDecoder, DecoderOutput, EncoderMemory
from .encoder import TransformerEncoder
from .losses import FocalLoss, box_losses
from .matcher import HungarianMatcher
from .meta_arch import ConditionalDETR, DETRDetector
from .queries import LearnedQueries

__all__ = [k for k in globals() if not k.startswith("_")]
