"""Conversion of official SMCA-DETR checkpoints: a synthetic state dict with the official key names and
shapes converts completely and loads strictly into the single-scale R50 config."""
import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from sd_detr.checkpoint import DETRCheckpointer, coco_91_to_80_indices, convert_state_dict

from ..utils import REPO
from .official_state_dicts_smca import official_smca_detr

R50 = f"{REPO}/projects/smca_detr/configs/smca_detr_r50_50ep.py"


@pytest.mark.parametrize("num_classes", [80, 92])
@pytest.mark.slow  # full-size R50 models
def test_smca_detr_conversion_covers_every_official_key_and_fits_the_r50_config(tmp_path, num_classes):
    official = official_smca_detr()
    converted = convert_state_dict("smca_detr", official, num_classes=num_classes)
    assert len(converted) == len(official)
    cfg = LazyConfig.load(R50)
    cfg.model.num_classes = num_classes
    model = instantiate(cfg.model)
    path = tmp_path / "converted.pth"
    torch.save({"model": converted}, path)
    DETRCheckpointer(model, strict=True).load(str(path))  # raises on any missing/unexpected/shape mismatch
    sd = model.state_dict()
    pairs = {
        "decoder.center_head.layers.2.weight": "transformer.decoder.layers.0.point1.layers.2.weight",
        "decoder.layers.3.offset_head.bias": "transformer.decoder.layers.3.point2.bias",
        "decoder.layers.5.scale_head.weight": "transformer.decoder.layers.5.point3.weight",
        "decoder.layers.1.prior_norm.weight": "transformer.decoder.layers.1.norm4.weight",
        "decoder.layers.2.cross_attn.in_proj_weight": "transformer.decoder.layers.2.multihead_attn.in_proj_weight",
        "decoder.layers.4.ffn.norm.bias": "transformer.decoder.layers.4.norm3.bias",
        "backbone.res5.2.conv3.norm.running_var": "backbone.0.body.layer4.2.bn3.running_var",
    }
    for ours, theirs in pairs.items():
        assert torch.equal(sd[ours], official[theirs]), ours
    rows = coco_91_to_80_indices() if num_classes == 80 else list(range(92))
    assert torch.equal(sd["class_embed.weight"], official["class_embed.weight"][rows])


def test_eighty_class_conversion_drops_the_no_object_row():
    official = official_smca_detr()
    converted = convert_state_dict("smca_detr", official, num_classes=80)
    assert converted["class_embed.bias"].shape == (80,)
    assert 91 not in coco_91_to_80_indices()  # the 92nd output (index 91) is "no object"


def test_an_official_smca_key_without_a_rule_is_reported_by_name():
    official = official_smca_detr()
    official["transformer.decoder.layers.0.point4.weight"] = torch.zeros(3, 256)  # a multi-scale-only head
    with pytest.raises(KeyError, match="point4"):
        convert_state_dict("smca_detr", official)
