"""yacs keys of SMCA-DETR (``MODEL.META_ARCHITECTURE = "SMCADETR"``)."""
from detectron2.config import CfgNode as CN

from .defaults import add_detr_config


def add_smca_detr_config(cfg):
    """Add ``MODEL.SMCA_DETR`` (and ``MODEL.DETR`` if missing). Unset keys (None) take the values of
    ``projects/smca_detr/configs/models/smca_detr_r50.py`` (the official single-scale settings: beta 8,
    per-head centres and x / y scales, a 3-layer centre MLP, 300 detections kept) or, for the multi-scale
    model, of ``smca_detr_r50_multiscale.py``. Idempotent.

    - BETA: bandwidth of the Gaussian-like map (official ``--smooth``).
    - HEAD_SPECIFIC: per-head centre offsets and scales (multi-head modulation); False = head-shared.
    - SCALE_MODE: "indep" (x / y scales, official type3), "single" (type2), "fixed" (type1).
    - CENTER_MLP_LAYERS: layers of the centre MLP.
    - IN_FEATURES: empty = single scale; e.g. ["res4", "res5"] builds the paper's multi-scale SMCA from
      ``smca_detr_r50_multiscale.py`` (also set ``MODEL.RESNETS.OUT_FEATURES`` to them).
    - NUM_EXTRA_LEVELS: stride-2 levels on top of the last of IN_FEATURES (the file: 1, stride 64).
    - ENC_MULTI_SCALE_LAYERS: encoder layers that attend across levels (the others within each level).
    """
    add_detr_config(cfg)
    if hasattr(cfg.MODEL, "SMCA_DETR"):
        return cfg
    cfg.MODEL.SMCA_DETR = CN()
    s = cfg.MODEL.SMCA_DETR
    for key in ("BETA", "HEAD_SPECIFIC", "SCALE_MODE", "CENTER_MLP_LAYERS", "NUM_EXTRA_LEVELS", "ENC_MULTI_SCALE_LAYERS"):
        s[key] = None
    s.IN_FEATURES = []
    return cfg
