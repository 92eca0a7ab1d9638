"""Conversion of official DAB-DETR checkpoints: a synthetic state dict with the official key names and
shapes converts completely and loads strictly into the matching config; the official second copy of
the shared box head is checked and dropped."""
import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from sd_detr.checkpoint import DETRCheckpointer, coco_91_to_80_indices, convert_state_dict

from ..utils import REPO
from .official_state_dicts_dab import official_dab_detr

CONFIGS = f"{REPO}/projects/dab_detr/configs"
NUM_BOX_HEAD_COPY_KEYS = 6  # transformer.decoder.bbox_embed.layers.{0,1,2}.{weight,bias}


def _load_strictly(tmp_path, config, converted, num_classes):
    cfg = LazyConfig.load(f"{CONFIGS}/{config}.py")
    cfg.model.num_classes = num_classes
    model = instantiate(cfg.model)
    path = tmp_path / "converted.pth"
    torch.save({"model": converted}, path)
    DETRCheckpointer(model, strict=True).load(str(path))  # raises on any missing/unexpected/shape mismatch
    return model.state_dict()


@pytest.mark.parametrize("num_classes", [80, 91])
@pytest.mark.slow  # full-size R50 models
def test_dab_detr_conversion_covers_every_official_key_and_fits_the_r50_config(tmp_path, num_classes):
    official = official_dab_detr()
    converted = convert_state_dict("dab_detr", official, num_classes=num_classes)
    assert len(converted) == len(official) - NUM_BOX_HEAD_COPY_KEYS
    sd = _load_strictly(tmp_path, "dab_detr_r50_50ep", converted, num_classes)
    assert len(sd) == len(converted)
    pairs = {
        "query_init.refpoint_embed.weight": "refpoint_embed.weight",
        "encoder.layers.3.ffn.activation.weight": "transformer.encoder.layers.3.activation.weight",
        "decoder.layers.5.ffn.activation.weight": "transformer.decoder.layers.5.activation.weight",
        "encoder.query_scale.layers.1.weight": "transformer.encoder.query_scale.layers.1.weight",
        "decoder.ref_anchor_head.layers.1.bias": "transformer.decoder.ref_anchor_head.layers.1.bias",
        "decoder.ref_point_head.layers.0.weight": "transformer.decoder.ref_point_head.layers.0.weight",
        "decoder.layers.0.cross_attn.qpos_proj.weight": "transformer.decoder.layers.0.ca_qpos_proj.weight",
        "bbox_embed.layers.2.weight": "bbox_embed.layers.2.weight",
        "backbone.res5.2.conv3.norm.running_var": "backbone.0.body.layer4.2.bn3.running_var",
    }
    for ours, theirs in pairs.items():
        assert torch.equal(sd[ours], official[theirs]), ours
    rows = coco_91_to_80_indices() if num_classes == 80 else list(range(91))
    assert torch.equal(sd["class_embed.weight"], official["class_embed.weight"][rows])


@pytest.mark.slow  # a full-size R50 model
def test_dab_detr_3_pattern_checkpoint_fits_the_3_pattern_config(tmp_path):
    official = official_dab_detr(num_patterns=3)
    converted = convert_state_dict("dab_detr", official)
    sd = _load_strictly(tmp_path, "dab_detr_r50_dc5_3patterns_50ep", converted, 80)
    assert torch.equal(sd["query_init.patterns.weight"], official["transformer.patterns.weight"])


def test_an_unknown_official_dab_detr_key_is_reported_by_name():
    official = official_dab_detr()
    official["transformer.decoder.some_new_module.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="some_new_module"):
        convert_state_dict("dab_detr", official)


def test_a_box_head_copy_that_differs_from_the_box_head_is_an_error():
    official = official_dab_detr()
    official["transformer.decoder.bbox_embed.layers.1.bias"] = official["bbox_embed.layers.1.bias"] + 1
    with pytest.raises(ValueError, match=r"transformer\.decoder\.bbox_embed\.layers\.1\.bias"):
        convert_state_dict("dab_detr", official)
