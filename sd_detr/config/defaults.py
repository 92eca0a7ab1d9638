"""yacs keys for the registry path: ``build_model(cfg)`` with a Detectron2 ``CfgNode``."""
from detectron2.config import CfgNode as CN


def add_detr_config(cfg):
    """Add the keys shared by the project's DETR-style detectors (``MODEL.DETR``) and set Detectron2
    defaults to the official DETR conventions (RGB input with ImageNet mean/std, FrozenBN ResNet with
    the stride in the 3x3 conv, AdamW, gradient clipping 0.1, no aspect-ratio grouping, images without
    annotations kept, unclipped boxes at inference). Idempotent."""
    if hasattr(cfg.MODEL, "DETR"):
        return cfg
    cfg.MODEL.DETR = CN()
    d = cfg.MODEL.DETR
    d.NUM_CLASSES = 80
    d.NUM_QUERIES = 300
    d.HIDDEN_DIM = 256
    d.NHEADS = 8
    d.DIM_FEEDFORWARD = 2048
    d.ENC_LAYERS = 6
    d.DEC_LAYERS = 6
    d.DROPOUT = 0.1
    d.ACTIVATION = "relu"
    d.IN_FEATURE = "res5"
    d.DEEP_SUPERVISION = True
    # matcher costs and loss weights (Conditional DETR main.py:76-89)
    d.COST_CLASS = 2.0
    d.COST_BBOX = 5.0
    d.COST_GIOU = 2.0
    d.CLASS_WEIGHT = 2.0
    d.BBOX_WEIGHT = 5.0
    d.GIOU_WEIGHT = 2.0
    d.FOCAL_ALPHA = 0.25
    d.FOCAL_GAMMA = 2.0
    d.NUM_SELECT = 100  # detections kept per image
    d.SIZE_DIVISIBILITY = 0
    d.REFERENCE_EPS = 1e-5
    # box head's last layer: "" = the detector's official initialisation (zeros for Conditional DETR,
    # DAB-DETR and SD-DETR, PyTorch's default for SMCA-DETR), or "zeros" / "default" for every detector
    d.BOX_HEAD_INIT = ""
    # clip the boxes to the image at inference (Detectron2's detector_postprocess); the official
    # post-processing of the DETR family does not
    d.CLIP_BOXES = False

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

