"""Conditional DETR (Meng et al., ICCV 2021) as a Detectron2 meta-architecture."""
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from ..decoder import ConditionalDecoder
from ..queries import LearnedQueries
from .build import detr_common_from_config
from .detr import DETRDetector


@META_ARCH_REGISTRY.register()
class ConditionalDETR(DETRDetector):
    """Learned object queries -> reference points -> conditional cross-attention decoder.

    Built from LazyConfig with explicit parts (``projects/conditional_detr/configs``) or from a yacs
    config with ``MODEL.META_ARCHITECTURE = "ConditionalDETR"`` and the ``MODEL.DETR`` keys.
    """

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    @classmethod
    def from_config(cls, cfg):
        args = detr_common_from_config(cfg)
        d = cfg.MODEL.DETR
        args["query_init"] = LearnedQueries(d.NUM_QUERIES, d.HIDDEN_DIM)
        args["decoder"] = ConditionalDecoder(d.DEC_LAYERS, d.HIDDEN_DIM, d.NHEADS, d.DIM_FEEDFORWARD, d.DROPOUT, d.ACTIVATION)
        return args
