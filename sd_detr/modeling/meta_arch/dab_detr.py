"""DAB-DETR (Liu et al., ICLR 2022) as a Detectron2 meta-architecture."""
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from ...layers import PositionEmbeddingSine
from ..decoder.dab import DABDecoder
from ..encoder import TransformerEncoder
from ..queries.anchors import AnchorQueries
from .build import detr_common_from_config
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

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    @classmethod
    def from_config(cls, cfg):
        if not hasattr(cfg.MODEL, "DAB_DETR"):
            raise KeyError("config has no MODEL.DAB_DETR: call sd_detr.config.add_dab_detr_config(cfg) "
                           "before merging the file")
        args = detr_common_from_config(cfg)
        d, dab = cfg.MODEL.DETR, cfg.MODEL.DAB_DETR
        args["position_embedding"] = PositionEmbeddingSine(
            d.HIDDEN_DIM, normalize=True, temperature_h=dab.PE_TEMPERATURE_H, temperature_w=dab.PE_TEMPERATURE_W
        )
        args["encoder"] = TransformerEncoder(d.ENC_LAYERS, d.HIDDEN_DIM, d.NHEADS, d.DIM_FEEDFORWARD, d.DROPOUT,
                                             d.ACTIVATION, scale_pos_by_content=True)
        args["query_init"] = AnchorQueries(d.NUM_QUERIES, d.HIDDEN_DIM, num_patterns=dab.NUM_PATTERNS,
                                           random_xy=dab.RANDOM_REFPOINTS_XY, freeze_xy=dab.FREEZE_RANDOM_XY)
        args["decoder"] = DABDecoder(
            d.DEC_LAYERS, d.HIDDEN_DIM, d.NHEADS, d.DIM_FEEDFORWARD, d.DROPOUT, d.ACTIVATION,
            query_temperature=dab.QUERY_TEMPERATURE, modulate_hw_attn=dab.MODULATE_HW_ATTN,
            update_anchors=dab.UPDATE_ANCHORS, anchor_eps=d.REFERENCE_EPS,
        )
        return args
