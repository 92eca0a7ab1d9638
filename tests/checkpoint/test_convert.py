"""Conversion of official checkpoints: a synthetic state dict with the official key names and shapes
(written down from the official code, not derived from this project's names) must convert completely
and load into the matching config with no missing or unexpected key."""
import pytest
import torch
import torchvision
from detectron2.config import LazyConfig, instantiate

from sd_detr.checkpoint import DETRCheckpointer, coco_91_to_80_indices, convert_state_dict

from ..utils import REPO


def official_resnet50(prefix="backbone.0.body."):
    """torchvision ResNet-50 keys as the official repos store them (FrozenBN: no num_batches_tracked)."""
    sd = torchvision.models.resnet50(weights=None).state_dict()
    return {prefix + k: torch.randn(v.shape) for k, v in sd.items()
            if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}


def official_conditional_detr(num_classes=91, d=256, ffn=2048, layers=6, queries=300):
    """Atten4Vis/ConditionalDETR models/{conditional_detr,transformer}.py parameter names."""
    sd = official_resnet50()
    lin = lambda o, i: {"weight": torch.randn(o, i), "bias": torch.randn(o)}  # noqa: E731
    norm = lambda: {"weight": torch.randn(d), "bias": torch.randn(d)}  # noqa: E731

    def put(prefix, params):
        sd.update({f"{prefix}.{k}": v for k, v in params.items()})

    for i in range(layers):
        p = f"transformer.encoder.layers.{i}"
        sd[f"{p}.self_attn.in_proj_weight"] = torch.randn(3 * d, d)
        sd[f"{p}.self_attn.in_proj_bias"] = torch.randn(3 * d)
        put(f"{p}.self_attn.out_proj", lin(d, d))
        put(f"{p}.linear1", lin(ffn, d))
        put(f"{p}.linear2", lin(d, ffn))
        put(f"{p}.norm1", norm())
        put(f"{p}.norm2", norm())
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


@pytest.mark.parametrize("num_classes", [80, 91])
def test_conditional_detr_conversion_covers_every_official_key_and_fits_the_r50_config(tmp_path, num_classes):
    official = official_conditional_detr()
    converted = convert_state_dict("conditional_detr", official, num_classes=num_classes)
    assert len(converted) == len(official)
    cfg = LazyConfig.load(f"{REPO}/projects/conditional_detr/configs/conditional_detr_r50_50ep.py")
    cfg.model.num_classes = num_classes
    model = instantiate(cfg.model)
    path = tmp_path / "converted.pth"
    torch.save({"model": converted}, path)
    DETRCheckpointer(model, strict=True).load(str(path))  # raises on any missing/unexpected/shape mismatch
    sd = model.state_dict()
    assert torch.equal(sd["decoder.layers.0.cross_attn.qpos_proj.weight"], official["transformer.decoder.layers.0.ca_qpos_proj.weight"])
    assert torch.equal(sd["backbone.res5.2.conv3.norm.running_var"], official["backbone.0.body.layer4.2.bn3.running_var"])
    rows = coco_91_to_80_indices() if num_classes == 80 else list(range(91))
    assert torch.equal(sd["class_embed.weight"], official["class_embed.weight"][rows])


def test_class_rows_map_coco_ids_to_detectron2_contiguous_classes():
    rows = coco_91_to_80_indices()
    assert len(rows) == 80 and rows[0] == 1 and rows[-1] == 90 and 12 not in rows  # id 12 is unused in COCO


def test_an_official_key_without_a_rule_is_reported_by_name():
    official = official_conditional_detr()
    official["transformer.decoder.some_new_module.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="some_new_module"):
        convert_state_dict("conditional_detr", official)
