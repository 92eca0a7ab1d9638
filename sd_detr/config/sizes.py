"""Named model sizes, applied to any detector's model config (LazyConfig) or yacs config alike.

One definition per size, two appliers that read it: :func:`apply_size` (a LazyConfig ``model`` node) and
:func:`apply_size_yacs` (a yacs ``CfgNode`` with the project's keys), so that the tiny configs, the tests
and the yacs path shrink a detector the same way (``tests/config/test_sizes.py`` builds both and
compares their weights).
"""
from dataclasses import dataclass
from typing import Optional, Union


@dataclass(frozen=True)
class ModelSize:
    """A detector size. ``None`` fields keep the config's value.

    The backbone is a ResNet of ``depth`` (a DC5 config keeps bottleneck blocks: depth 50, res2 at least
    32 channels) with ``stem_out_channels`` / ``res2_out_channels``; ``out_feature`` (e.g. "res4") is then
    the one backbone output and the encoded feature. The transformer has width ``hidden_dim``, ``nhead``
    heads, FFN ``dim_feedforward``, ``enc_layers`` + ``dec_layers`` layers (SMCA's multi-scale encoder
    keeps at least one intra- and one cross-level layer) and ``num_queries`` queries.
    """

    depth: int
    stem_out_channels: int
    res2_out_channels: int
    hidden_dim: int
    nhead: int
    dim_feedforward: int
    enc_layers: int
    dec_layers: int
    num_queries: int
    freeze_at: int = 0
    out_feature: Optional[str] = None
    norm: Optional[str] = None
    dropout: Optional[float] = None
    num_classes: Optional[int] = None
    num_select: Optional[int] = None
    clip_boxes: Optional[bool] = None


SIZES = {
    # every *_tiny_synthetic.py config: a narrow ResNet-18 up to res4 (stride 16, 16-channel stem,
    # trainable BatchNorm synchronised across processes), a 64-d transformer with 4 heads and no dropout,
    # 2 encoder and 3 decoder layers, 30 queries, the 5 synthetic classes, top 50 detections, boxes
    # clipped to the image (Detectron2's convention; the full-size configs keep the official unclipped boxes)
    "tiny_synthetic": ModelSize(depth=18, stem_out_channels=16, res2_out_channels=16, hidden_dim=64, nhead=4,
                                dim_feedforward=256, enc_layers=2, dec_layers=3, num_queries=30, out_feature="res4",
                                norm="naiveSyncBN", dropout=0.0, num_classes=5, num_select=50, clip_boxes=True),
    # the tests' few-second CPU size, keeping every other setting (and the structure) of the config
    "test": ModelSize(depth=18, stem_out_channels=8, res2_out_channels=8, hidden_dim=32, nhead=2, dim_feedforward=32,
                      enc_layers=1, dec_layers=2, num_queries=10),
}


def _size(size: Union[str, ModelSize]) -> ModelSize:
    if isinstance(size, ModelSize):
        return size
    if size not in SIZES:
        raise KeyError(f"unknown model size {size!r}; known: {sorted(SIZES)}")
    return SIZES[size]


def apply_size(model, size: Union[str, ModelSize]):
    """Set a detector's LazyConfig ``model`` node to ``size`` (a name of :data:`SIZES` or a
    :class:`ModelSize`) in place. The decoder's settings that read the encoder's (``${..encoder.nhead}``)
    keep doing so. Returns ``model``."""
    from omegaconf import OmegaConf

    s = _size(size)
    backbone = dict(depth=s.depth, stem_out_channels=s.stem_out_channels, res2_out_channels=s.res2_out_channels,
                    freeze_at=s.freeze_at)
    if model.backbone.get("dc5"):  # DC5 needs bottleneck blocks
        backbone.update(depth=50, res2_out_channels=max(32, s.res2_out_channels))
    if s.out_feature:
        backbone["out_features"] = [s.out_feature]
        model.in_feature = s.out_feature
    if s.norm:
        backbone["norm"] = s.norm
    model.backbone.update(backbone)
    model.hidden_dim = s.hidden_dim
    transformer = dict(nhead=s.nhead, dim_feedforward=s.dim_feedforward)
    if s.dropout is not None:
        transformer["dropout"] = s.dropout
    model.encoder.update(num_layers=s.enc_layers, **transformer)
    if "multi_scale_layers" in model.encoder:  # SMCA's multi-scale encoder: one intra, one multi layer at least
        model.encoder.update(num_layers=max(2, s.enc_layers), multi_scale_layers=[1])
    model.decoder.num_layers = s.dec_layers
    for k, v in transformer.items():
        if not OmegaConf.is_interpolation(model.decoder, k):
            model.decoder[k] = v
    model.query_init.num_queries = s.num_queries
    for k in ("num_classes", "num_select", "clip_boxes"):
        if getattr(s, k) is not None:
            model[k] = getattr(s, k)
    return model


def apply_size_yacs(cfg, size: Union[str, ModelSize]):
    """The same as :func:`apply_size` through the yacs keys (``MODEL.RESNETS``, ``MODEL.BACKBONE``,
    ``MODEL.DETR``; call the detector's ``add_*_config`` first). A DC5 config (``RES5_DILATION: 2``)
    keeps bottleneck blocks as :func:`apply_size` does. Returns ``cfg``."""
    s = _size(size)
    r, d = cfg.MODEL.RESNETS, cfg.MODEL.DETR
    r.DEPTH, r.STEM_OUT_CHANNELS, r.RES2_OUT_CHANNELS = s.depth, s.stem_out_channels, s.res2_out_channels
    if r.RES5_DILATION == 2:
        r.DEPTH, r.RES2_OUT_CHANNELS = 50, max(32, s.res2_out_channels)
    cfg.MODEL.BACKBONE.FREEZE_AT = s.freeze_at
    if s.out_feature:
        r.OUT_FEATURES = [s.out_feature]
        d.IN_FEATURE = s.out_feature
    if s.norm:
        r.NORM = s.norm
    d.HIDDEN_DIM, d.NHEADS, d.DIM_FEEDFORWARD = s.hidden_dim, s.nhead, s.dim_feedforward
    d.ENC_LAYERS, d.DEC_LAYERS, d.NUM_QUERIES = s.enc_layers, s.dec_layers, s.num_queries
    smca = cfg.MODEL.get("SMCA_DETR")
    if smca is not None and smca.IN_FEATURES:
        d.ENC_LAYERS, smca.ENC_MULTI_SCALE_LAYERS = max(2, s.enc_layers), [1]
    for key, value in (("DROPOUT", s.dropout), ("NUM_CLASSES", s.num_classes), ("NUM_SELECT", s.num_select),
                       ("CLIP_BOXES", s.clip_boxes)):
        if value is not None:
            d[key] = value
    return cfg
