"""Building the shared parts of a DETR detector from a yacs ``CfgNode`` (keys of
:func:`sd_detr.config.add_detr_config`)."""
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

from ...layers import PositionEmbeddingSine
from ..criterion import SetCriterion
from ..encoder import TransformerEncoder
from ..losses import FocalLoss
from ..matcher import HungarianMatcher


def detr_common_from_config(cfg) -> dict:
    """Backbone, position embedding, encoder, criterion and head settings shared by all detectors."""
    if not hasattr(cfg.MODEL, "DETR"):
        raise KeyError("config has no MODEL.DETR: call sd_detr.config.add_detr_config(cfg) before merging the file")
    d = cfg.MODEL.DETR
    backbone = build_backbone(cfg, ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN)))
    matcher = HungarianMatcher(d.COST_CLASS, d.COST_BBOX, d.COST_GIOU, d.FOCAL_ALPHA, d.FOCAL_GAMMA)
    criterion = SetCriterion(
        num_classes=d.NUM_CLASSES,
        matcher=matcher,
        class_loss=FocalLoss(d.FOCAL_ALPHA, d.FOCAL_GAMMA),
        weight_dict={"loss_class": d.CLASS_WEIGHT, "loss_bbox": d.BBOX_WEIGHT, "loss_giou": d.GIOU_WEIGHT},
        aux_loss=d.DEEP_SUPERVISION,
    )
    args = dict(
        backbone=backbone,
        in_feature=d.IN_FEATURE,
        position_embedding=PositionEmbeddingSine(d.HIDDEN_DIM, normalize=True),
        encoder=TransformerEncoder(d.ENC_LAYERS, d.HIDDEN_DIM, d.NHEADS, d.DIM_FEEDFORWARD, d.DROPOUT, d.ACTIVATION),
        criterion=criterion,
        num_classes=d.NUM_CLASSES,
        hidden_dim=d.HIDDEN_DIM,
        pixel_mean=cfg.MODEL.PIXEL_MEAN,
        pixel_std=cfg.MODEL.PIXEL_STD,
        input_format=cfg.INPUT.FORMAT,
        num_select=d.NUM_SELECT,
        reference_eps=d.REFERENCE_EPS,
        size_divisibility=d.SIZE_DIVISIBILITY,
        aux_loss=d.DEEP_SUPERVISION,
        clip_boxes=d.CLIP_BOXES,
    )
    # empty: the detector's own default, its official initialisation ("zeros"; SMCA-DETR "default")
    if d.BOX_HEAD_INIT:
        args["box_head_init"] = d.BOX_HEAD_INIT
    return args
