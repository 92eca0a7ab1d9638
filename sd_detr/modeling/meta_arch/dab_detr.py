"""DAB-DETR (Liu et al., ICLR 2022) as a Detectron2 meta-architecture."""
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from .build import apply_detr_keys, apply_keys, instantiate_parts, load_model_file
from .detr import DETRDetector


@META_ARCH_REGISTRY.register()
class DABDETR(DETRDetector):
    """Learned anchor boxes (+ optional patterns) -> anchor-driven conditional decoder whose anchors the
    shared box head refines after every layer; the encoder scales its position embedding by an MLP of
    the features.

    Built from LazyConfig with explicit parts (``projects/dab_detr/configs``) or from a yacs config with
    ``MODEL.META_ARCHITECTURE = "DABDETR"``, the ``MODEL.DETR`` keys and the ``MODEL.DAB_DETR`` keys of
    :func:`sd_detr.config.add_dab_detr_config`.
    """

    TITLE = "DAB-DETR"  # the name tables and reports print (sd_detr.model_zoo.detectors)
    MODEL_FILE = "dab_detr/models/dab_detr_r50.py"
    # MODEL.DAB_DETR.<KEY> -> its places in the model config
    YACS_KEYS = {
        "NUM_PATTERNS": ("query_init.num_patterns",),
        "RANDOM_REFPOINTS_XY": ("query_init.random_xy",),
        "FREEZE_RANDOM_XY": ("query_init.freeze_xy",),
        "MODULATE_HW_ATTN": ("decoder.modulate_hw_attn",),
        "UPDATE_ANCHORS": ("decoder.update_anchors",),
        "PE_TEMPERATURE_H": ("position_embedding.temperature_h",),
        "PE_TEMPERATURE_W": ("position_embedding.temperature_w",),
        "QUERY_TEMPERATURE": ("decoder.query_temperature",),
    }

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    @classmethod
    def lazy_model_from_yacs(cls, cfg):
        """The model config the yacs ``cfg`` describes: :attr:`MODEL_FILE` with the set keys applied."""
        if not hasattr(cfg.MODEL, "DAB_DETR"):
            raise KeyError("config has no MODEL.DAB_DETR: call sd_detr.config.add_dab_detr_config(cfg) "
                           "before merging the file")
        model = load_model_file(cls.MODEL_FILE)
        apply_detr_keys(cfg, model)
        apply_keys(model, cfg.MODEL.DAB_DETR, "MODEL.DAB_DETR", cls.YACS_KEYS)
        return model

    @classmethod
    def from_config(cls, cfg):
        return instantiate_parts(cfg, cls.lazy_model_from_yacs(cfg), cls)
