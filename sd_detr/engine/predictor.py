"""A predictor for LazyConfig models with the call interface of Detectron2's ``DefaultPredictor``."""
import torch
from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T

from ..checkpoint import DETRCheckpointer


class LazyPredictor:
    """``predictor(bgr_image) -> {"instances": Instances}`` for a LazyConfig, like ``DefaultPredictor``:

    - builds ``cfg.model`` on ``cfg.train.device`` and loads ``checkpoint`` (default
      ``cfg.train.init_checkpoint``) strictly;
    - resizes with the augmentations of ``cfg.dataloader.test.mapper`` and feeds the channel order of
      its ``image_format``;
    - ``metadata``: the metadata of the config's test dataset (class names for drawing).
    """

    def __init__(self, cfg, checkpoint: str = None):
        self.cfg = cfg
        self.model = instantiate(cfg.model).to(cfg.train.device).eval()
        checkpoint = checkpoint if checkpoint is not None else cfg.train.init_checkpoint
        if checkpoint:
            DETRCheckpointer(self.model, strict=True).load(checkpoint)
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
