"""yacs keys of SD-DETR for the registry path (``MODEL.META_ARCHITECTURE = "SDDETR"``)."""
from detectron2.config import CfgNode as CN

from .defaults import add_detr_config


def add_sd_detr_config(cfg):
    """Add ``MODEL.DETR`` (:func:`add_detr_config`) and SD-DETR's own ``MODEL.SD_DETR`` keys. Call it before
    merging a config file. Idempotent. Unset keys (None) take the values of
    ``projects/sd_detr/configs/models/sd_detr_r50.py``, the paper's settings (Sec. 4.1: alpha 0.25, beta
    0.75, gamma 2, positives repeated twice in every decoder layer but the last, the shared
    self-attention attending in C channels).

    - DECODER: "split_cross_attention" (SD-DETR), "shared" (Table 2 baseline), "split_decoder" (Table 3).
    - SELF_ATTN_WIDTH: "model" (C channels) or "full" (2C, DESTR) for the shared self-attention.
    - REFINE_ANCHORS: refine the anchors between decoder layers.
    - MINI_DETECTOR_CONVS, MINI_DETECTOR_NORM_GROUPS, MINI_DETECTOR_WEIGHT, ANCHOR_SIZE, ANCHOR_STRIDE:
      the mini-detector (its towers, GroupNorm, loss weight, prior box side at the anchor stride).
    - TASK_AWARE_QUERIES (False: no TAQ), NUM_POINTS, ROI_SIZE: task-aware query generation.
    - TASK_ALIGNMENT_LOSS (False: the focal loss), TAL_ALPHA, TAL_BETA, TAL_GAMMA: Eq. 6-7.
    - NUM_REPEATS: each ground truth matched this many times; REPEAT_LAST_LAYER: also in the last layer.

    The ablation rows of Tables 2-3: baseline ``DECODER="shared"``, ``TASK_AWARE_QUERIES=False``,
    ``TASK_ALIGNMENT_LOSS=False``, ``NUM_REPEATS=1``; +DFL ``DECODER="split_cross_attention"``; +TAQ
    ``TASK_AWARE_QUERIES=True``; +TAL ``TASK_ALIGNMENT_LOSS=True``, ``NUM_REPEATS=2``; split decoder
    ``DECODER="split_decoder"``."""
    add_detr_config(cfg)
    if hasattr(cfg.MODEL, "SD_DETR"):
        return cfg
    cfg.MODEL.SD_DETR = CN()
    for key in ("DECODER", "SELF_ATTN_WIDTH", "REFINE_ANCHORS", "MINI_DETECTOR_CONVS", "MINI_DETECTOR_NORM_GROUPS",
                "MINI_DETECTOR_WEIGHT", "ANCHOR_SIZE", "ANCHOR_STRIDE", "TASK_AWARE_QUERIES", "NUM_POINTS", "ROI_SIZE",
                "TASK_ALIGNMENT_LOSS", "TAL_ALPHA", "TAL_BETA", "TAL_GAMMA", "NUM_REPEATS", "REPEAT_LAST_LAYER"):
        cfg.MODEL.SD_DETR[key] = None
    return cfg
