"""yacs keys of SMCA-DETR (``MODEL.META_ARCHITECTURE = "SMCADETR"``)."""
from detectron2.config import CfgNode as CN

from .defaults import add_detr_config


def add_smca_detr_config(cfg):
    """Add ``MODEL.SMCA_DETR`` (and ``MODEL.DETR`` if missing) with the official single-scale settings
    (gaopengcuhk/SMCA-DETR, 50-epoch README command: ``--dynamic_scale type3``, smooth 8, 300 queries).
    Idempotent.

    - BETA: bandwidth of the Gaussian-like map (official ``--smooth`` 8).
    - HEAD_SPECIFIC: per-head centre offsets and scales (multi-head modulation); False = head-shared.
    - SCALE_MODE: "indep" (x / y scales, official type3), "single" (type2), "fixed" (type1).
    - CENTER_MLP_LAYERS: layers of the centre MLP (official 3).
    - IN_FEATURES: empty = single scale on ``MODEL.DETR.IN_FEATURE``; ["res4", "res5"] with
      NUM_EXTRA_LEVELS 1 = the paper's multi-scale SMCA (strides 16 / 32 / 64; also set
      ``MODEL.RESNETS.OUT_FEATURES``, ``MODEL.DETR.ENC_LAYERS`` 5 and ``DIM_FEEDFORWARD`` 1024).
    - ENC_MULTI_SCALE_LAYERS: encoder layers that attend across levels (the others within each level).

    It also sets ``MODEL.DETR.NUM_SELECT`` to 300: the official post-processing keeps the top
    ``num_queries`` = 300 detections per image (``models/detr.py:312``)."""
    add_detr_config(cfg)
    if hasattr(cfg.MODEL, "SMCA_DETR"):
        return cfg
    cfg.MODEL.SMCA_DETR = CN()
    s = cfg.MODEL.SMCA_DETR
    s.BETA = 8.0
    s.HEAD_SPECIFIC = True
    s.SCALE_MODE = "indep"
    s.CENTER_MLP_LAYERS = 3
    s.IN_FEATURES = []
    s.NUM_EXTRA_LEVELS = 0
    s.ENC_MULTI_SCALE_LAYERS = [2]
    cfg.MODEL.DETR.NUM_SELECT = 300
    return cfg
