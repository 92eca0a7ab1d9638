"""yacs keys of DAB-DETR for the registry path (``MODEL.META_ARCHITECTURE = "DABDETR"``)."""
from detectron2.config import CfgNode as CN

from .defaults import add_detr_config


def add_dab_detr_config(cfg):
    """Add ``MODEL.DETR`` (:func:`add_detr_config`) and DAB-DETR's own ``MODEL.DAB_DETR`` keys, all unset
    (None): the values of ``projects/dab_detr/configs/models/dab_detr_r50.py`` (dropout 0, PReLU, class
    weight 1, 300 detections, eps 1e-3, temperatures 20 / 10000, ...) apply unless a .yaml sets them.
    Idempotent.

    - NUM_PATTERNS: 3 = the paper's DAB-DETR* (Anchor DETR patterns).
    - RANDOM_REFPOINTS_XY: README "fixxy", uniform random anchor centres; FREEZE_RANDOM_XY keeps them
      fixed (see :class:`~sd_detr.modeling.queries.AnchorQueries`: the official code learns them).
    - MODULATE_HW_ATTN, UPDATE_ANCHORS: the width/height-modulated attention and the anchor update.
    - PE_TEMPERATURE_H / _W: the image position embedding's temperatures (paper Sec. 4.5: 20);
      QUERY_TEMPERATURE: the anchors' sine embedding (official gen_sineembed_for_position: 10000).
    """
    add_detr_config(cfg)
    if hasattr(cfg.MODEL, "DAB_DETR"):
        return cfg
    cfg.MODEL.DAB_DETR = CN()
    for key in ("NUM_PATTERNS", "RANDOM_REFPOINTS_XY", "FREEZE_RANDOM_XY", "MODULATE_HW_ATTN", "UPDATE_ANCHORS",
                "PE_TEMPERATURE_H", "PE_TEMPERATURE_W", "QUERY_TEMPERATURE"):
        cfg.MODEL.DAB_DETR[key] = None
    return cfg
