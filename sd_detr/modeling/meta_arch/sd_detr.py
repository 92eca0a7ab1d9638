"""SD-DETR (Zhang et al., "Decoupled DETR: Spatially Disentangling Localization and Classification for
Improved End-to-End Object Detection", ICCV 2023) as a Detectron2 meta-architecture.

The detector is :class:`DETRDetector` with SD-DETR's parts: a mini-detector on the encoder memory
gives the anchor boxes and initial queries (:class:`~sd_detr.modeling.queries.MiniDetectorQueries`),
task-aware query generation gives each branch its content query and reference
(:class:`~sd_detr.modeling.queries.TaskAwareQueryGenerator`), the disentangled decoder has a shared
self-attention on the 2C concatenation of the branches (attending in C channels by default,
``MODEL.SD_DETR.SELF_ATTN_WIDTH``) and per-branch cross-attention
(:class:`~sd_detr.modeling.decoder.DisentangledDecoder`), the class head reads the classification
branch and the box head the localisation branch, and the criterion uses the task-alignment loss with
repeated positives (:class:`~sd_detr.modeling.losses.TaskAlignmentLoss`, ``HungarianAssigner(num_repeats=2)``).
"""
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from ..assigner import HungarianAssigner
from ..criterion import SetCriterion
from ..decoder.disentangled import SELF_ATTN_WIDTHS, DisentangledDecoder
from ..losses import FocalLoss, TaskAlignmentLoss
from ..matcher import HungarianMatcher
from ..queries.mini_detector import MiniDetector, MiniDetectorQueries
from ..queries.task_aware import TaskAwareQueryGenerator
from .build import detr_common_from_config
from .detr import DETRDetector

# decoder layout name -> (branches, shared self-attention)
DECODER_LAYOUTS = {
    "split_cross_attention": (("cls", "loc"), True),
    "shared": (("shared",), True),
    "split_decoder": (("cls", "loc"), False),
}


@META_ARCH_REGISTRY.register()
class SDDETR(DETRDetector):
    """SD-DETR: mini-detector anchors -> task-aware queries -> disentangled decoder.

    Built from LazyConfig with explicit parts (``projects/sd_detr/configs``) or from a yacs config with
    ``MODEL.META_ARCHITECTURE = "SDDETR"``, the ``MODEL.DETR`` keys and the ``MODEL.SD_DETR`` keys of
    :func:`sd_detr.config.add_sd_detr_config`.
    """

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    @classmethod
    def from_config(cls, cfg):
        if not hasattr(cfg.MODEL, "SD_DETR"):
            raise KeyError("config has no MODEL.SD_DETR: call sd_detr.config.add_sd_detr_config(cfg) before merging the file")
        args = detr_common_from_config(cfg)
        d, s = cfg.MODEL.DETR, cfg.MODEL.SD_DETR
        if s.DECODER not in DECODER_LAYOUTS:
            raise ValueError(f"MODEL.SD_DETR.DECODER must be one of {sorted(DECODER_LAYOUTS)}, got {s.DECODER!r}")
        branches, shared_self_attn = DECODER_LAYOUTS[s.DECODER]
        if s.SELF_ATTN_WIDTH not in SELF_ATTN_WIDTHS:
            raise ValueError(f"MODEL.SD_DETR.SELF_ATTN_WIDTH must be one of {SELF_ATTN_WIDTHS}, got {s.SELF_ATTN_WIDTH!r}")
        mini = MiniDetector(d.HIDDEN_DIM, d.NUM_CLASSES, num_convs=s.MINI_DETECTOR_CONVS,
                            norm_groups=s.MINI_DETECTOR_NORM_GROUPS, anchor_size=s.ANCHOR_SIZE,
                            anchor_stride=s.ANCHOR_STRIDE, reference_eps=d.REFERENCE_EPS)
        taq = (TaskAwareQueryGenerator(d.HIDDEN_DIM, branches, num_points=s.NUM_POINTS, roi_size=s.ROI_SIZE)
               if s.TASK_AWARE_QUERIES else None)
        args["query_init"] = MiniDetectorQueries(mini, d.NUM_QUERIES, branches, task_aware=taq)
        args["decoder"] = DisentangledDecoder(d.DEC_LAYERS, d.HIDDEN_DIM, d.NHEADS, d.DIM_FEEDFORWARD, d.DROPOUT,
                                              d.ACTIVATION, branches=branches, shared_self_attn=shared_self_attn,
                                              self_attn_width=s.SELF_ATTN_WIDTH,
                                              refine_anchors=s.REFINE_ANCHORS, reference_eps=d.REFERENCE_EPS)
        class_loss = (TaskAlignmentLoss(s.TAL_ALPHA, s.TAL_BETA, s.TAL_GAMMA) if s.TASK_ALIGNMENT_LOSS
                      else FocalLoss(d.FOCAL_ALPHA, d.FOCAL_GAMMA))
        repeat_stages = None if s.REPEAT_LAST_LAYER else list(range(d.DEC_LAYERS - 1))
        args["criterion"] = SetCriterion(
            num_classes=d.NUM_CLASSES,
            matcher=HungarianMatcher(d.COST_CLASS, d.COST_BBOX, d.COST_GIOU, d.FOCAL_ALPHA, d.FOCAL_GAMMA),
            assigner=HungarianAssigner(num_repeats=s.NUM_REPEATS, repeat_stages=repeat_stages),
            class_loss=class_loss,
            weight_dict={"loss_class": d.CLASS_WEIGHT, "loss_bbox": d.BBOX_WEIGHT, "loss_giou": d.GIOU_WEIGHT},
            aux_loss=d.DEEP_SUPERVISION,
            extra_stage_weights={"mini_detector": s.MINI_DETECTOR_WEIGHT},
        )
        return args
