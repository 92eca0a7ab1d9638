"""SMCA-DETR (Gao et al., "Fast Convergence of DETR with Spatially Modulated Co-Attention", ICCV 2021)
as a Detectron2 meta-architecture: single-scale (the official code) and the paper's multi-scale design."""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import ImageList
from torch import Tensor, nn

from ..structures import EncoderMemory
from .build import apply_detr_keys, apply_keys, instantiate_parts, load_model_file
from .detr import DETRDetector


@META_ARCH_REGISTRY.register()
class SMCADETR(DETRDetector):
    """Learned object queries -> centre + scales -> spatially modulated co-attention decoder
    (:class:`~sd_detr.modeling.decoder.smca.SMCADecoder`); boxes relative to the predicted centre.

    Single-scale (``in_features=None``): exactly :class:`DETRDetector`'s encoding of ``in_feature``.

    Multi-scale (``in_features=["res4", "res5"], num_extra_levels=1``, paper Sec. 3.3): levels of strides
    16, 32, 64 taken from the backbone without FPN: a 1x1 convolution of each of ``in_features`` and, for
    each extra level, a 3x3 stride-2 convolution (the first on the last backbone feature, as the released
    code makes its stride-64 map: Multi_scale_SMCA.zip ``models/detr.py:105,141``), each to
    ``hidden_dim`` channels ("3 convolutions to project features output from ResNet-50 to 256
    dimensions"). Each level's position embedding is the sine embedding of its mask plus a learned level
    embedding (released code ``models/transformer.py:471``; the paper does not say). The encoder receives
    and returns the list of levels (:class:`~sd_detr.modeling.encoder_multiscale.IntraMultiScaleEncoder`);
    the :class:`EncoderMemory` concatenates them along N and lists them in ``extra["level_shapes"]`` and
    ``extra["level_strides"]``; its ``spatial_shape`` / ``stride`` are those of ``in_features[-1]`` (the
    level of the single-scale model, whose cell is the unit of the Gaussian), so ``as_map()`` does not
    apply to it.

    ``box_head_init`` defaults to "default" (the official box head is not zero-initialised, see
    :class:`DETRDetector`).

    Built from LazyConfig (``projects/smca_detr/configs``) or from a yacs config with
    ``MODEL.META_ARCHITECTURE = "SMCADETR"``, the ``MODEL.DETR`` keys and
    :func:`sd_detr.config.add_smca_detr_config`'s ``MODEL.SMCA_DETR`` keys.
    """

    @configurable
    def __init__(self, *, in_features: Optional[Sequence[str]] = None, num_extra_levels: int = 0, **kwargs):
        # the official box head keeps nn.Linear's initialisation (models/detr.py:45, no re-init), unlike
        # the Conditional DETR family's zeroed last layer
        kwargs.setdefault("box_head_init", "default")
        if in_features:
            in_features = list(in_features)
            if kwargs.setdefault("in_feature", in_features[-1]) != in_features[-1]:
                raise ValueError(f"SMCADETR: in_feature {kwargs['in_feature']!r} must be the last of in_features {in_features}")
        elif num_extra_levels:
            raise ValueError("SMCADETR: num_extra_levels needs the multi-scale in_features")
        super().__init__(**kwargs)
        self.in_features = in_features or None
        if not self.in_features:
            return
        shapes = self.backbone.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if missing:
            raise KeyError(f"SMCADETR: in_features {missing} are not backbone outputs; available: {sorted(shapes)}")
        hidden = self.hidden_dim
        projs = [nn.Conv2d(shapes[f].channels, hidden, kernel_size=1) for f in in_features]
        strides = [shapes[f].stride for f in in_features]
        channels = shapes[in_features[-1]].channels
        for _ in range(num_extra_levels):
            projs.append(nn.Conv2d(channels, hidden, kernel_size=3, stride=2, padding=1))
            strides.append(strides[-1] * 2)
            channels = hidden
        self.input_proj = nn.ModuleList(projs)  # replaces the single-level projection of DETRDetector
        self.level_strides = strides
        self.level_embed = nn.Parameter(torch.empty(len(projs), hidden))
        nn.init.normal_(self.level_embed)

    def encode(self, images: ImageList, mask: Tensor) -> EncoderMemory:
        if not self.in_features:
            return super().encode(images, mask)
        features = self.backbone(self.backbone_input(images))
        n_in = len(self.in_features)
        maps = [proj(features[f]) for proj, f in zip(self.input_proj[:n_in], self.in_features)]
        x = features[self.in_features[-1]]
        for conv in self.input_proj[n_in:]:
            x = conv(x)
            maps.append(x)
        srcs, poss, masks, shapes = [], [], [], []
        for level, m in enumerate(maps):
            level_mask = F.interpolate(mask[None].float(), size=m.shape[-2:]).to(torch.bool)[0]
            pos = self.position_embedding(level_mask).to(m.dtype) + self.level_embed[level][:, None, None]
            shapes.append(tuple(m.shape[-2:]))
            srcs.append(m.flatten(2).transpose(1, 2))
            poss.append(pos.flatten(2).transpose(1, 2))
            masks.append(level_mask.flatten(1))
        memory = self.encoder(srcs, poss, masks)
        ref = n_in - 1
        # int(): under tracing (fvcore) ImageList holds the sizes as tensors
        image_sizes = torch.tensor([[int(h), int(w)] for h, w in images.image_sizes], dtype=torch.float32,
                                   device=self.device)
        return EncoderMemory(
            memory=torch.cat(memory, 1), pos=torch.cat(poss, 1), mask=torch.cat(masks, 1),
            spatial_shape=shapes[ref], stride=self.level_strides[ref], image_sizes=image_sizes,
            extra={"level_shapes": shapes, "level_strides": list(self.level_strides)},
        )

    MODEL_FILE = "smca_detr/configs/models/smca_detr_r50.py"
    MULTI_SCALE_MODEL_FILE = "smca_detr/configs/models/smca_detr_r50_multiscale.py"
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
