"""One width per detector: every transformer part of every model config reads ``model.hidden_dim``
(issue 12), so that changing it alone rebuilds the encoder, the position embedding, the queries, the
decoder and the heads at the new width."""
import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from sd_detr.config import apply_tiny_synthetic_size

from ..utils import random_batch, shrink_model_config

MODELS = [
    "projects/conditional_detr/configs/models/conditional_detr_r50.py",
    "projects/dab_detr/configs/models/dab_detr_r50.py",
    "projects/smca_detr/configs/models/smca_detr_r50.py",
    "projects/smca_detr/configs/models/smca_detr_r50_multiscale.py",
    "projects/sd_detr/configs/models/sd_detr_r50.py",
]
TINY_WIDTH = 64  # apply_tiny_synthetic_size's width; res4 of its ResNet-18 also has 64 channels


def _transformer_widths(model):
    """Every dimension of every parameter outside the backbone and the input projection's input side."""
    dims = set()
    for name, p in model.named_parameters():
        if name.startswith("backbone."):
            continue
        shape = p.shape[:1] if name.startswith("input_proj") and p.dim() == 4 else p.shape
        dims.update(int(d) for d in shape)
    return dims


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.rsplit("/", 1)[-1][:-3])
def test_changing_hidden_dim_alone_changes_every_transformer_part(path):
    """Bug caught: a part with its width typed as a number (the encoder's d_model=256, the position
    embedding's num_pos_feats=128) instead of reading ``${..hidden_dim}``: a parameter keeps the old
    width, or the forward fails with a shape error."""
    cfg = LazyConfig.load(path).model
    if "multi_scale_layers" in cfg.encoder:
        # SMCA multi-scale needs res4 and res5: the tests' shrunk size (width 32), its FFNs moved off 32
        shrink_model_config(cfg)
        cfg.encoder.dim_feedforward = cfg.decoder.dim_feedforward = 48
        old_width = 32
    else:
        apply_tiny_synthetic_size(cfg)
        old_width = TINY_WIDTH
    cfg.hidden_dim = 96  # divisible by the heads and by SD-DETR's 32 GroupNorm groups, not 64
    torch.manual_seed(0)
    model = instantiate(cfg).eval()
    assert model.hidden_dim == 96 and model.position_embedding.d_model == 96
    assert old_width not in _transformer_widths(model)
    with torch.no_grad():
        out = model(random_batch(cfg.num_classes, with_instances=False))
    assert len(out) == 2 and len(out[0]["instances"]) > 0


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.rsplit("/", 1)[-1][:-3])
def test_full_size_configs_state_the_width_once(path):
    """Bug caught: a second literal width in a model config (the yacs and LazyConfig paths would then
    disagree after an override of one of them)."""
    cfg = LazyConfig.load(path).model
    assert cfg.hidden_dim == 256
    text = open(path).read()
    assert "num_pos_feats" not in text
    assert "d_model=256" not in text and "d_model=128" not in text


def test_a_position_embedding_of_another_width_is_refused_with_both_widths():
    cfg = LazyConfig.load(MODELS[0]).model
    apply_tiny_synthetic_size(cfg)
    cfg.position_embedding.d_model = 32
    with pytest.raises(ValueError, match="position_embedding.d_model 32 differs from hidden_dim 64"):
        instantiate(cfg)
