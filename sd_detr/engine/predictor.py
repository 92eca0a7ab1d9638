"""Predictors with the call interface of Detectron2's ``DefaultPredictor``: one for LazyConfig models, and
Detectron2's own for yacs configs with the checkpoint loaded strictly. Both warn when given no weights."""
import logging
import sys

import torch
from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T

from ..checkpoint import DETRCheckpointer
from .accel import optimize_for_cpu

logger = logging.getLogger(__name__)


def warn_untrained(setting: str) -> None:
    """Say loudly (the log and stderr) that a predictor runs with the random initial weights.

    ``setting``: the config key or option that would give the weights, named in the message."""
    message = (f"no weights given ({setting} is empty): the model has random initial weights and its "
               f"detections are meaningless")
    logger.warning(message)
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def strict_default_predictor(cfg):
    """Detectron2's ``DefaultPredictor`` for a yacs ``cfg``, with ``cfg.MODEL.WEIGHTS`` loaded strictly.

    ``DefaultPredictor`` loads with Detectron2's lenient checkpointer: a checkpoint that does not fit (another
    detector, another number of classes) loads with "Skip loading parameter" warnings and the predictor
    draws from random weights. Here it is built without weights, then :class:`DETRCheckpointer` with
    ``strict=True`` loads them and raises :class:`~sd_detr.checkpoint.CheckpointMismatchError` listing every
    missing, unexpected and wrongly shaped key. The returned object is the plain ``DefaultPredictor``
    (``predictor(bgr_image) -> {"instances": Instances}``), its ``cfg.MODEL.WEIGHTS`` the given weights.
    Empty ``MODEL.WEIGHTS``: the model stays random and :func:`warn_untrained` says so."""
    from detectron2.engine import DefaultPredictor

    weights = cfg.MODEL.WEIGHTS
    no_weights = cfg.clone()
    no_weights.defrost()
    no_weights.MODEL.WEIGHTS = ""
    no_weights.freeze()
    predictor = DefaultPredictor(no_weights)
    optimize_for_cpu(predictor.model)
    if weights:
        DETRCheckpointer(predictor.model, strict=True).load(weights)
    else:
        warn_untrained("MODEL.WEIGHTS")
    predictor.cfg = cfg.clone()
    return predictor


class LazyPredictor:
    """``predictor(bgr_image) -> {"instances": Instances}`` for a LazyConfig, like ``DefaultPredictor``:

    - builds ``cfg.model`` on ``cfg.train.device`` and loads ``checkpoint`` (default
      ``cfg.train.init_checkpoint``) strictly; none (empty) is warned about (:func:`warn_untrained`);
    - resizes with the augmentations of ``cfg.dataloader.test.mapper`` and feeds the channel order of
      its ``image_format``;
    - ``metadata``: the metadata of the config's test dataset (class names for drawing).
    """

    def __init__(self, cfg, checkpoint: str = None):
        self.cfg = cfg
        self.model = instantiate(cfg.model).to(cfg.train.device).eval()
        optimize_for_cpu(self.model)
        checkpoint = checkpoint if checkpoint is not None else cfg.train.init_checkpoint
        if checkpoint:
            DETRCheckpointer(self.model, strict=True).load(checkpoint)
        else:
            warn_untrained("train.init_checkpoint")
        mapper = cfg.dataloader.test.mapper
        self.aug = T.AugmentationList(instantiate(mapper.augmentations))
        self.input_format = mapper.image_format
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"LazyPredictor: image_format must be RGB or BGR, got {self.input_format!r}")
        names = cfg.dataloader.test.dataset.names
        self.metadata = MetadataCatalog.get(names if isinstance(names, str) else names[0])

    def __call__(self, original_image):
        """original_image: HxWx3 uint8 numpy array in BGR order (as cv2.imread gives)."""
        if self.input_format == "RGB":
            original_image = original_image[:, :, ::-1]
        height, width = original_image.shape[:2]
        aug_input = T.AugInput(original_image)
        self.aug(aug_input)
        image = torch.as_tensor(aug_input.image.astype("float32").transpose(2, 0, 1))
        with torch.no_grad():
            return self.model([{"image": image, "height": height, "width": width}])[0]
