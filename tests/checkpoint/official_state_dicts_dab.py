"""A synthetic state dict with IDEA-Research/DAB-DETR's key names and shapes (``-m dab_detr``), written
down from the official code (``models/DAB_DETR/{DABDETR,transformer}.py``, not derived from this
project's names), random values."""
import torch

from .official_state_dicts import official_detr_encoder, official_resnet50


def official_dab_detr(num_classes=91, d=256, ffn=2048, layers=6, queries=300, num_patterns=0):
    sd = official_resnet50()
    lin = lambda o, i: {"weight": torch.randn(o, i), "bias": torch.randn(o)}  # noqa: E731
    norm = lambda: {"weight": torch.randn(d), "bias": torch.randn(d)}  # noqa: E731

    def put(prefix, params):
        sd.update({f"{prefix}.{k}": v for k, v in params.items()})

    sd.update(official_detr_encoder(d, ffn, layers))
    for i in range(layers):
        sd[f"transformer.encoder.layers.{i}.activation.weight"] = torch.rand(1)  # nn.PReLU(): one slope per layer
    put("transformer.encoder.query_scale.layers.0", lin(d, d))
    put("transformer.encoder.query_scale.layers.1", lin(d, d))
    for i in range(layers):
        p = f"transformer.decoder.layers.{i}"
        for name in ("sa_qcontent_proj", "sa_qpos_proj", "sa_kcontent_proj", "sa_kpos_proj", "sa_v_proj",
                     "ca_qcontent_proj", "ca_kcontent_proj", "ca_kpos_proj", "ca_v_proj", "ca_qpos_sine_proj"):
            put(f"{p}.{name}", lin(d, d))
        if i == 0:  # keep_query_pos=False: ca_qpos_proj = None in layers >= 1
            put(f"{p}.ca_qpos_proj", lin(d, d))
        put(f"{p}.self_attn.out_proj", lin(d, d))
        put(f"{p}.cross_attn.out_proj", lin(d, d))
        put(f"{p}.linear1", lin(ffn, d))
        put(f"{p}.linear2", lin(d, ffn))
        for n in (1, 2, 3):
            put(f"{p}.norm{n}", norm())
        sd[f"{p}.activation.weight"] = torch.rand(1)
    put("transformer.decoder.norm", norm())
    put("transformer.decoder.query_scale.layers.0", lin(d, d))
    put("transformer.decoder.query_scale.layers.1", lin(d, d))
    put("transformer.decoder.ref_point_head.layers.0", lin(d, 2 * d))  # MLP(query_dim // 2 * d, d, d, 2)
    put("transformer.decoder.ref_point_head.layers.1", lin(d, d))
    put("transformer.decoder.ref_anchor_head.layers.0", lin(d, d))
    put("transformer.decoder.ref_anchor_head.layers.1", lin(2, d))
    if num_patterns:
        sd["transformer.patterns.weight"] = torch.randn(num_patterns, d)
    put("class_embed", lin(num_classes, d))
    for n, o in enumerate([d, d, 4]):
        put(f"bbox_embed.layers.{n}", lin(o, d))
        # the same module is also registered as transformer.decoder.bbox_embed (iter_update=True)
        for k in ("weight", "bias"):
            sd[f"transformer.decoder.bbox_embed.layers.{n}.{k}"] = sd[f"bbox_embed.layers.{n}.{k}"]
    sd["refpoint_embed.weight"] = torch.randn(queries, 4)
    put("input_proj", {"weight": torch.randn(d, 2048, 1, 1), "bias": torch.randn(d)})
    return sd
