"""Conditional DETR (Meng et al., ICCV 2021) as a Detectron2 meta-architecture."""
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from .build import apply_detr_keys, instantiate_parts, load_model_file
from .detr import DETRDetector


@META_ARCH_REGISTRY.register()
class ConditionalDETR(DETRDetector):
    """Learned object queries -> reference points -> conditional cross-attention decoder.

    Built from LazyConfig with explicit parts (``projects/conditional_detr/configs``) or from a yacs
    config with ``MODEL.META_ARCHITECTURE = "ConditionalDETR"`` and the ``MODEL.DETR`` keys.
    """

    TITLE = "Conditional DETR"  # the name tables and reports print (sd_detr.model_zoo.detectors)
    MODEL_FILE = "conditional_detr/models/conditional_detr_r50.py"

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    @classmethod
    def lazy_model_from_yacs(cls, cfg):
        """The model config the yacs ``cfg`` describes: :attr:`MODEL_FILE` with the set keys applied."""
        model = load_model_file(cls.MODEL_FILE)
        apply_detr_keys(cfg, model)
        return model

    @classmethod
    def from_config(cls, cfg):
        return instantiate_parts(cfg, cls.lazy_model_from_yacs(cfg), cls)
