"""yacs keys for the registry path: ``build_model(cfg)`` with a Detectron2 ``CfgNode``."""
from detectron2.config import CfgNode as CN


def add_detr_config(cfg):
    """Add the keys shared by the project's DETR-style detectors (``MODEL.DETR``, all unset: the
    detector's model file decides) and set Detectron2 defaults to the official DETR conventions (RGB
    input with ImageNet mean/std, FrozenBN ResNet with the stride in the 3x3 conv, AdamW, gradient
    clipping 0.1, no aspect-ratio grouping, images without annotations kept). Idempotent."""
    if hasattr(cfg.MODEL, "DETR"):
        return cfg
    # Every key defaults to None: the value of the detector's LazyConfig model file
    # (projects/<detector>/configs/models/*.py), the one place of the defaults; a key a .yaml sets
    # overrides it (sd_detr/modeling/meta_arch/build.py names where each key goes).
    cfg.MODEL.DETR = CN()
    for key in ("NUM_CLASSES", "NUM_QUERIES", "HIDDEN_DIM", "NHEADS", "DIM_FEEDFORWARD", "ENC_LAYERS", "DEC_LAYERS",
                "DROPOUT", "ACTIVATION", "IN_FEATURE", "DEEP_SUPERVISION",
                # matcher costs, loss weights, the focal loss's alpha / gamma
                "COST_CLASS", "COST_BBOX", "COST_GIOU", "CLASS_WEIGHT", "BBOX_WEIGHT", "GIOU_WEIGHT",
                "FOCAL_ALPHA", "FOCAL_GAMMA",
                "NUM_SELECT",  # detections kept per image
                "SIZE_DIVISIBILITY", "REFERENCE_EPS",
                "BOX_HEAD_INIT",  # "zeros" or "default" (nn.Linear's) for the box head's last layer
                "CLIP_BOXES"):  # clip the boxes to the image at inference (the official code does not)
        cfg.MODEL.DETR[key] = None

    cfg.MODEL.BACKBONE.NAME = "build_detr_resnet_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    cfg.MODEL.RESNETS.DEPTH = 50
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res5"]
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.PIXEL_MEAN = [123.675, 116.280, 103.530]
    cfg.MODEL.PIXEL_STD = [58.395, 57.120, 57.375]
    cfg.INPUT.FORMAT = "RGB"
    cfg.INPUT.MIN_SIZE_TEST = 800
    cfg.INPUT.MAX_SIZE_TEST = 1333
    cfg.SOLVER.OPTIMIZER = "ADAMW"
    cfg.SOLVER.BASE_LR = 1e-4
    cfg.SOLVER.BACKBONE_MULTIPLIER = 0.1
    cfg.SOLVER.WEIGHT_DECAY = 1e-4
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.1
    cfg.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
    cfg.TEST.DETECTIONS_PER_IMAGE = 100
    # the official loaders (Conditional DETR main.py:155-163): a plain random sampler over every image
    # of train2017, annotated or not, and no aspect-ratio grouping
    cfg.DATALOADER.ASPECT_RATIO_GROUPING = False
    cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS = False
    return cfg

