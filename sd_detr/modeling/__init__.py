"""Models: importing this package registers the backbones and meta-architectures with Detectron2."""
from .assigner import CrossStageAssigner, HungarianAssigner
from .structures import Assignment, Queries
from .backbone import build_detr_resnet, build_detr_resnet_backbone
from .criterion import SetCriterion
from .decoder import ConditionalDecoder, DABDecoder, DecoderOutput, DisentangledDecoder, EncoderMemory, SMCADecoder
from .encoder import TransformerEncoder
from .encoder_multiscale import IntraMultiScaleEncoder
from .losses import FocalLoss, TaskAlignmentLoss, box_losses
from .matcher import HungarianMatcher
from .meta_arch import DABDETR, SDDETR, SMCADETR, ConditionalDETR, DETRDetector
from .queries import AnchorQueries, LearnedQueries, MiniDetector, MiniDetectorQueries, TaskAwareQueryGenerator

__all__ = [k for k in globals() if not k.startswith("_")]
