"""SMCA-DETR (Gao et al., "Fast Convergence of DETR with Spatially Modulated Co-Attention", ICCV 2021)
as a Detectron2 meta-architecture: single-scale (the official code) and the paper's multi-scale design."""
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from .build import apply_detr_keys, apply_keys, instantiate_parts, load_model_file
from .detr import DETRDetector


@META_ARCH_REGISTRY.register()
class SMCADETR(DETRDetector):
    """Learned object queries -> centre + scales -> spatially modulated co-attention decoder
    (:class:`~sd_detr.modeling.decoder.smca.SMCADecoder`); boxes relative to the predicted centre.

    Single-scale (``in_features=None``): :class:`DETRDetector`'s encoding of ``in_feature``.
    Multi-scale (``in_features=["res4", "res5"], num_extra_levels=1``, paper Sec. 3.3): levels of strides
    16, 32, 64 from the backbone without FPN (:class:`~sd_detr.modeling.input_projection.MultiLevelProjection`:
    "3 convolutions to project features output from ResNet-50 to 256 dimensions"), encoded by
    :class:`DETRDetector` as a list of levels (:meth:`DETRDetector.encode_levels`) for
    :class:`~sd_detr.modeling.encoder_multiscale.IntraMultiScaleEncoder` and the scale-selection
    decoder.

    ``box_head_init`` defaults to "default" (the official box head is not zero-initialised, see
    :class:`DETRDetector`).

    Built from LazyConfig (``projects/smca_detr/configs``) or from a yacs config with
    ``MODEL.META_ARCHITECTURE = "SMCADETR"``, the ``MODEL.DETR`` keys and
    :func:`sd_detr.config.add_smca_detr_config`'s ``MODEL.SMCA_DETR`` keys.
    """

    TITLE = "SMCA-DETR"  # the name tables and reports print (sd_detr.model_zoo.detectors)
    MODEL_FILE = "smca_detr/models/smca_detr_r50.py"
    MULTI_SCALE_MODEL_FILE = "smca_detr/models/smca_detr_r50_multiscale.py"
    # MODEL.SMCA_DETR.<KEY> -> its places in the model config
    YACS_KEYS = {
        "BETA": ("decoder.beta",),
        "HEAD_SPECIFIC": ("decoder.head_specific",),
        "SCALE_MODE": ("decoder.scale_mode",),
        "CENTER_MLP_LAYERS": ("decoder.center_mlp_layers",),
    }
    MULTI_SCALE_KEYS = {
        "NUM_EXTRA_LEVELS": ("num_extra_levels",),
        "ENC_MULTI_SCALE_LAYERS": ("encoder.multi_scale_layers",),
    }

    @configurable
    def __init__(self, **kwargs):
        # the official box head keeps nn.Linear's initialisation (models/detr.py:45, no re-init), unlike
        # the Conditional DETR family's zeroed last layer
        kwargs.setdefault("box_head_init", "default")
        super().__init__(**kwargs)

    @classmethod
    def lazy_model_from_yacs(cls, cfg):
        """The model config the yacs ``cfg`` describes: :attr:`MODEL_FILE` (single scale) or, with
        ``MODEL.SMCA_DETR.IN_FEATURES``, :attr:`MULTI_SCALE_MODEL_FILE`, with the set keys applied."""
        if not hasattr(cfg.MODEL, "SMCA_DETR"):
            raise KeyError("config has no MODEL.SMCA_DETR: call sd_detr.config.add_smca_detr_config(cfg) before merging the file")
        s = cfg.MODEL.SMCA_DETR
        multi_scale = bool(s.IN_FEATURES)
        model = load_model_file(cls.MULTI_SCALE_MODEL_FILE if multi_scale else cls.MODEL_FILE)
        apply_detr_keys(cfg, model)
        apply_keys(model, s, "MODEL.SMCA_DETR", cls.YACS_KEYS)
        if multi_scale:
            apply_keys(model, s, "MODEL.SMCA_DETR", cls.MULTI_SCALE_KEYS)
            model.in_features = list(s.IN_FEATURES)
            model.in_feature = s.IN_FEATURES[-1]
            model.decoder.num_levels = len(s.IN_FEATURES) + model.num_extra_levels
        elif s.NUM_EXTRA_LEVELS:
            raise ValueError("MODEL.SMCA_DETR.NUM_EXTRA_LEVELS needs the multi-scale MODEL.SMCA_DETR.IN_FEATURES")
        return model

    @classmethod
    def from_config(cls, cfg):
        return instantiate_parts(cfg, cls.lazy_model_from_yacs(cfg), cls)
