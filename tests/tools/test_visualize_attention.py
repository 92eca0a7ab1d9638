"""tools/visualize_attention.py's library, sd_detr.visualization.attention."""
import os

import cv2
import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from sd_detr.visualization import attention as visualize_attention

from ..utils import REPO

TINY = f"{REPO}/projects/conditional_detr/configs/conditional_detr_tiny_synthetic.py"


def test_attention_maps_are_per_head_distributions_over_the_unpadded_feature_map():
    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(TINY).model).eval()
    image = torch.randint(0, 256, (3, 96, 130), dtype=torch.uint8)
    maps, box, label, score = visualize_attention.attention_for_detection(model, image, layer=-1, detection=0)
    parts = maps["cross_attn"]
    assert set(parts) == {"combined", "content", "spatial"}
    heads = model.decoder.layers[-1].cross_attn.nhead
    # stride 16: 96 x 130 -> 6 x 9 cells, no padding in a batch of one
    for w in parts.values():
        assert w.shape == (heads, 6, 9)
        assert torch.allclose(w.sum((1, 2)), torch.ones(heads), atol=1e-5)
    assert 0 <= label < model.num_classes and 0 < score < 1 and box.shape == (4,)
    assert not model.decoder.layers[-1].cross_attn.record_attention  # switched off again


def test_a_png_is_written_for_a_saved_checkpoint_and_an_unreadable_image_is_named(synthetic_root, tmp_path):
    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(TINY).model)
    ckpt = tmp_path / "m.pth"
    torch.save({"model": model.state_dict()}, ckpt)
    image = os.path.join(synthetic_root, "val", "000000.png")
    out = tmp_path / "att.png"
    os.environ["SD_DETR_SYNTHETIC_ROOT"] = synthetic_root
    try:
        maps = visualize_attention.save_attention_picture(TINY, str(ckpt), image, str(out),
                                                          parts=["spatial", "content", "combined"],
                                                          opts=["train.device=cpu"])
        assert list(maps) == ["cross_attn"]
        with pytest.raises(visualize_attention.ImageReadError, match="cannot read image .*missing.png"):
            visualize_attention.save_attention_picture(TINY, str(ckpt), str(tmp_path / "missing.png"),
                                                       str(tmp_path / "no.png"), opts=["train.device=cpu"])
    finally:
        del os.environ["SD_DETR_SYNTHETIC_ROOT"]
    png = cv2.imread(str(out))
    assert png is not None and png.shape[0] > png.shape[1] / 5 * 2  # three rows of panels


def test_sd_detr_gives_one_map_per_branch_and_the_branches_differ():
    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(f"{REPO}/projects/sd_detr/configs/sd_detr_tiny_synthetic.py").model).eval()
    image = torch.randint(0, 256, (3, 96, 130), dtype=torch.uint8)
    maps, _, _, _ = visualize_attention.attention_for_detection(model, image, layer=-1, detection=0)
    assert len(maps) == 2  # classification and localization cross-attention, drawn side by side
    assert list(maps) == ["cls branch", "loc branch"]
    cls_maps, loc_maps = maps.values()
    heads = model.decoder.layers[-1].cross_attn[0].nhead
    for w in (cls_maps["combined"], loc_maps["combined"]):
        assert w.shape == (heads, 6, 9) and torch.allclose(w.sum((1, 2)), torch.ones(heads), atol=1e-5)
    # separate queries and projections: the two branches do not attend alike
    assert not torch.allclose(cls_maps["combined"], loc_maps["combined"], atol=1e-3)
