"""yacs keys of SD-DETR for the registry path (``MODEL.META_ARCHITECTURE = "SDDETR"``)."""
from detectron2.config import CfgNode as CN

from .defaults import add_detr_config


def add_sd_detr_config(cfg):
    """Add ``MODEL.DETR`` (:func:`add_detr_config`) and SD-DETR's own ``MODEL.SD_DETR`` keys with the
    paper's settings (Sec. 4.1: alpha 0.25, beta 0.75, gamma 2, positives repeated twice). Call it before
    merging a config file. Idempotent. The ablation rows of Tables 2-3 are:
    baseline ``DECODER="shared"``, ``TASK_AWARE_QUERIES=False``, ``TASK_ALIGNMENT_LOSS=False``,
    ``NUM_REPEATS=1``; +DFL ``DECODER="split_cross_attention"``; +TAQ ``TASK_AWARE_QUERIES=True``;
    +TAL ``TASK_ALIGNMENT_LOSS=True``, ``NUM_REPEATS=2``; split decoder ``DECODER="split_decoder"``."""
    add_detr_config(cfg)
    if hasattr(cfg.MODEL, "SD_DETR"):
        return cfg
    cfg.MODEL.SD_DETR = CN()
    s = cfg.MODEL.SD_DETR
    # decoder: "split_cross_attention" (SD-DETR), "shared" (Table 2 baseline), "split_decoder" (Table 3)
    s.DECODER = "split_cross_attention"
    # attention width of the shared self-attention over [q_cls | q_loc] (2C in and out): "model" attends
    # in C channels (paper Sec. 4.1: "the attention channel to 256"), "full" in 2C (DESTR)
    s.SELF_ATTN_WIDTH = "model"
    s.REFINE_ANCHORS = False
    # mini-detector (DESTR models/destr.py: 4 convs per tower, GroupNorm 32, loss weight 0.1)
    s.MINI_DETECTOR_CONVS = 4
    s.MINI_DETECTOR_NORM_GROUPS = 32
    s.MINI_DETECTOR_WEIGHT = 0.1
    s.ANCHOR_SIZE = 0.05  # prior box side at ANCHOR_STRIDE (two-stage Deformable DETR)
    s.ANCHOR_STRIDE = 8
    # task-aware query generation
    s.TASK_AWARE_QUERIES = True
    s.NUM_POINTS = 8
    s.ROI_SIZE = 7
    # task-alignment loss and repeated positives
    s.TASK_ALIGNMENT_LOSS = True
    s.TAL_ALPHA = 0.25
    s.TAL_BETA = 0.75
    s.TAL_GAMMA = 2.0
    s.NUM_REPEATS = 2
    s.REPEAT_LAST_LAYER = False  # repeat in every decoder layer (True) or all but the last (False)
    return cfg
