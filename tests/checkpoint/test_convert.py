"""Conversion of official checkpoints: a synthetic state dict with the official key names and shapes
(written down from the official code, not derived from this project's names) must convert completely
and load into the matching config with no missing or unexpected key."""
import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from sd_detr.checkpoint import DETRCheckpointer, coco_91_to_80_indices, convert_state_dict

from ..utils import REPO
from .official_state_dicts import official_conditional_detr


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
