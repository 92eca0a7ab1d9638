"""yacs keys of DAB-DETR for the registry path (``MODEL.META_ARCHITECTURE = "DABDETR"``)."""
from detectron2.config import CfgNode as CN

from .defaults import add_detr_config


def add_dab_detr_config(cfg):
    """Add ``MODEL.DETR`` (:func:`add_detr_config`) and DAB-DETR's own ``MODEL.DAB_DETR`` keys. Idempotent.

    The shared ``MODEL.DETR`` defaults are left as they are (Conditional DETR's); DAB-DETR's official
    recipe differs in a few of them, which its .yaml sets (``projects/dab_detr/configs/yacs/``):
    ``DROPOUT: 0.0`` (official ``main.py:79``), ``ACTIVATION: "prelu"`` (l. 89), ``CLASS_WEIGHT: 1.0``
    (l. 121), ``NUM_SELECT: 300`` (l. 87) and ``REFERENCE_EPS: 0.001`` (``util/misc.py:575``; also the
    eps of the anchor update).
    """
    add_detr_config(cfg)
    if hasattr(cfg.MODEL, "DAB_DETR"):
        return cfg
    cfg.MODEL.DAB_DETR = CN()
    dab = cfg.MODEL.DAB_DETR
    dab.NUM_PATTERNS = 0  # 3 = the paper's DAB-DETR* (Anchor DETR patterns)
    dab.RANDOM_REFPOINTS_XY = False  # README "fixxy": uniform random anchor centres
    dab.FREEZE_RANDOM_XY = True  # keep those centres fixed (see AnchorQueries: the official code learns them)
    dab.MODULATE_HW_ATTN = True
    dab.UPDATE_ANCHORS = True
    # sine-embedding temperatures: the image position embedding uses T = 20 (paper Sec. 4.5, official
    # --pe_temperatureH/W), the anchors' embedding 10000 (official gen_sineembed_for_position)
    dab.PE_TEMPERATURE_H = 20.0
    dab.PE_TEMPERATURE_W = 20.0
    dab.QUERY_TEMPERATURE = 10000.0
    return cfg
