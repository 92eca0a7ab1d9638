"""A synthetic gaopengcuhk/SMCA-DETR single-scale state dict (``--dynamic_scale type3``): key names and
shapes written down from the official code (models/detr.py:43-47, models/transformer.py:146-241),
not derived from this project's names; random values."""
import torch

from .official_state_dicts import official_detr_encoder, official_resnet50


def official_smca_detr(num_classes=91, d=256, ffn=2048, layers=6, queries=300, heads=8):
    """``DETR(backbone, Transformer(...), num_classes=91)`` state dict: its class head has
    ``num_classes + 1`` = 92 outputs."""
    sd = official_resnet50()
    lin = lambda o, i: {"weight": torch.randn(o, i), "bias": torch.randn(o)}  # noqa: E731
    norm = lambda: {"weight": torch.randn(d), "bias": torch.randn(d)}  # noqa: E731

    def put(prefix, params):
        sd.update({f"{prefix}.{k}": v for k, v in params.items()})

    def mha(prefix):  # nn.MultiheadAttention and its subclass GaussianMultiheadAttention
        sd[f"{prefix}.in_proj_weight"] = torch.randn(3 * d, d)
        sd[f"{prefix}.in_proj_bias"] = torch.randn(3 * d)
        put(f"{prefix}.out_proj", lin(d, d))

    sd.update(official_detr_encoder(d, ffn, layers))
    for i in range(layers):
        p = f"transformer.decoder.layers.{i}"
        mha(f"{p}.self_attn")
        mha(f"{p}.multihead_attn")
        put(f"{p}.linear1", lin(ffn, d))
        put(f"{p}.linear2", lin(d, ffn))
        for n in (1, 2, 3, 4):
            put(f"{p}.norm{n}", norm())
        if i == 0:  # point1 = MLP(256, 256, 2, 3), first layer only
            put(f"{p}.point1.layers.0", lin(256, 256))
            put(f"{p}.point1.layers.1", lin(256, 256))
            put(f"{p}.point1.layers.2", lin(2, 256))
        put(f"{p}.point2", lin(2 * heads, d))  # per-head centre offsets
        put(f"{p}.point3", lin(2 * heads, d))  # type3: per-head x / y scales
    put("transformer.decoder.norm", norm())
    put("class_embed", lin(num_classes + 1, d))
    for n, o in enumerate([d, d, 4]):
        put(f"bbox_embed.layers.{n}", lin(o, d))
    sd["query_embed.weight"] = torch.randn(queries, d)
    put("input_proj", {"weight": torch.randn(d, 2048, 1, 1), "bias": torch.randn(d)})
    return sd
