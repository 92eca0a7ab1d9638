"""Synthetic state dicts with the official implementations' key names and shapes, written down from the
official code (not derived from this project's names), random values."""
import torch
import torchvision


def official_resnet50(prefix="backbone.0.body."):
    """torchvision ResNet-50 keys as the official repos store them (FrozenBN: no num_batches_tracked)."""
    sd = torchvision.models.resnet50(weights=None).state_dict()
    return {prefix + k: torch.randn(v.shape) for k, v in sd.items()
            if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}


def official_detr_encoder(d=256, ffn=2048, layers=6):
    """DETR's post-norm encoder layers (``transformer.encoder.layers.{i}``: packed q/k/v self-attention,
    two linear maps, two norms), as Conditional DETR, DAB-DETR and SMCA-DETR all store them."""
    sd = {}
    for i in range(layers):
        p = f"transformer.encoder.layers.{i}"
        sd[f"{p}.self_attn.in_proj_weight"] = torch.randn(3 * d, d)
        sd[f"{p}.self_attn.in_proj_bias"] = torch.randn(3 * d)
        for name, shape in (("self_attn.out_proj", (d, d)), ("linear1", (ffn, d)), ("linear2", (d, ffn))):
            sd[f"{p}.{name}.weight"] = torch.randn(shape)
            sd[f"{p}.{name}.bias"] = torch.randn(shape[0])
        for name in ("norm1", "norm2"):
            sd[f"{p}.{name}.weight"] = torch.randn(d)
            sd[f"{p}.{name}.bias"] = torch.randn(d)
    return sd


def official_conditional_detr(num_classes=91, d=256, ffn=2048, layers=6, queries=300):
    """Atten4Vis/ConditionalDETR models/{conditional_detr,transformer}.py parameter names."""
    sd = official_resnet50()
    lin = lambda o, i: {"weight": torch.randn(o, i), "bias": torch.randn(o)}  # noqa: E731
    norm = lambda: {"weight": torch.randn(d), "bias": torch.randn(d)}  # noqa: E731

    def put(prefix, params):
        sd.update({f"{prefix}.{k}": v for k, v in params.items()})

    sd.update(official_detr_encoder(d, ffn, layers))
    for i in range(layers):
        p = f"transformer.decoder.layers.{i}"
        for name in ("sa_qcontent_proj", "sa_qpos_proj", "sa_kcontent_proj", "sa_kpos_proj", "sa_v_proj",
                     "ca_qcontent_proj", "ca_kcontent_proj", "ca_kpos_proj", "ca_v_proj", "ca_qpos_sine_proj"):
            put(f"{p}.{name}", lin(d, d))
        if i == 0:
            put(f"{p}.ca_qpos_proj", lin(d, d))
        put(f"{p}.self_attn.out_proj", lin(d, d))
        put(f"{p}.cross_attn.out_proj", lin(d, d))
        put(f"{p}.linear1", lin(ffn, d))
        put(f"{p}.linear2", lin(d, ffn))
        for n in (1, 2, 3):
            put(f"{p}.norm{n}", norm())
    put("transformer.decoder.norm", norm())
    for n, (o, i) in enumerate([(d, d), (d, d)]):
        put(f"transformer.decoder.query_scale.layers.{n}", lin(o, i))
    put("transformer.decoder.ref_point_head.layers.0", lin(d, d))
    put("transformer.decoder.ref_point_head.layers.1", lin(2, d))
    put("class_embed", lin(num_classes, d))
    for n, o in enumerate([d, d, 4]):
        put(f"bbox_embed.layers.{n}", lin(o, d))
    sd["query_embed.weight"] = torch.randn(queries, d)
    put("input_proj", {"weight": torch.randn(d, 2048, 1, 1), "bias": torch.randn(d)})
    return sd
