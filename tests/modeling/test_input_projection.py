"""The multi-level input projection (SMCA-DETR's multi-scale levels) as a part of DETRDetector: which
backbone map each level convolves, the strides, the learned level embedding in each level's position
embedding, the state dict keys of the full-size model, and the errors naming a wrong setting."""
import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.layers import ShapeSpec

from sd_detr.modeling.input_projection import MultiLevelProjection

from ..utils import REPO, random_batch, shrink_model_config

MULTISCALE = f"{REPO}/projects/smca_detr/configs/smca_detr_r50_multiscale_12ep.py"
SHAPES = {"res4": ShapeSpec(channels=6, stride=16), "res5": ShapeSpec(channels=10, stride=32)}


def test_levels_are_the_projected_backbone_maps_then_stride_2_convolutions_chained_from_the_last_feature():
    """Bug caught: the first extra level convolving the projected map (or res4) instead of the raw last
    backbone feature, the second one not chained on the first, or the projections swapped."""
    torch.manual_seed(0)
    proj = MultiLevelProjection(SHAPES, ["res4", "res5"], 8, num_extra_levels=2)
    feats = {"res4": torch.randn(2, 6, 8, 12), "res5": torch.randn(2, 10, 4, 6)}
    maps = proj(feats)
    assert proj.strides == [16, 32, 64, 128]
    assert [tuple(m.shape) for m in maps] == [(2, 8, 8, 12), (2, 8, 4, 6), (2, 8, 2, 3), (2, 8, 1, 2)]
    assert torch.allclose(maps[0], proj[0](feats["res4"])) and torch.allclose(maps[1], proj[1](feats["res5"]))
    assert torch.allclose(maps[2], proj[2](feats["res5"]))
    assert torch.allclose(maps[3], proj[3](maps[2]))


def test_a_feature_the_backbone_lacks_is_an_error_naming_it():
    with pytest.raises(KeyError, match="res3"):
        MultiLevelProjection(SHAPES, ["res3", "res5"], 8)


def test_full_size_multiscale_state_dict_keeps_the_input_proj_and_level_embed_keys():
    model = instantiate(LazyConfig.load(MULTISCALE).model)
    keys = [k for k in model.state_dict() if k.startswith("input_proj") or k == "level_embed"]
    assert sorted(keys) == ["input_proj.0.bias", "input_proj.0.weight", "input_proj.1.bias", "input_proj.1.weight",
                            "input_proj.2.bias", "input_proj.2.weight", "level_embed"]
    assert tuple(model.input_proj[0].weight.shape) == (256, 1024, 1, 1)  # res4
    assert tuple(model.input_proj[2].weight.shape) == (256, 2048, 3, 3)  # stride 64 from res5
    assert tuple(model.level_embed.shape) == (3, 256)


def test_each_levels_position_embedding_is_its_sine_embedding_plus_its_level_embedding():
    """Bug caught: the level embedding dropped, or one level's added to another."""
    torch.manual_seed(0)
    model = instantiate(shrink_model_config(LazyConfig.load(MULTISCALE).model)).eval()
    seen = {}
    model.encoder.register_forward_pre_hook(lambda mod, args: seen.update(srcs=args[0], poss=args[1], masks=args[2]))
    images, mask = model.preprocess_image(random_batch(80, sizes=((128, 192), (96, 160)), with_instances=False))
    with torch.no_grad():
        shapes = model.encode(images, mask).extra["level_shapes"]
        for level, pos in enumerate(seen["poss"]):
            h, w = shapes[level]
            level_mask = seen["masks"][level].view(-1, h, w)
            sine = model.position_embedding(level_mask).flatten(2).transpose(1, 2)
            assert torch.allclose(pos - sine, model.level_embed[level].expand_as(pos), atol=1e-6)
    assert not torch.allclose(model.level_embed[0], model.level_embed[1])


@pytest.mark.parametrize("change,match", [
    (dict(in_feature="res4"), "in_feature 'res4' must be the last of in_features"),
    (dict(in_features=None, in_feature="res5"), "num_extra_levels needs the multi-level in_features"),
    (dict(num_extra_levels=0), "decoder.num_levels 3 differs from the 2 levels"),
])
def test_inconsistent_level_settings_are_errors_naming_them(change, match):
    cfg = shrink_model_config(LazyConfig.load(MULTISCALE).model)
    cfg.update(change)
    with pytest.raises(ValueError, match=match):
        instantiate(cfg)
