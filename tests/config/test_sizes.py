"""One definition of each model size (``sd_detr.config.SIZES``), read by the LazyConfig applier (the tiny
configs, the tests) and by the yacs applier alike: both give the same model."""
import pytest
import torch
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model

from sd_detr.config import SIZES, ModelSize, add_all_configs, apply_size, apply_size_yacs
from sd_detr.model_zoo import detectors, get_config_file

from ..utils import REPO

# every registered detector's tiny config, by meta-architecture
TINY = {d.meta_arch: get_config_file(d.tiny) for d in detectors()}


def _weights(model):
    return {k: v for k, v in model.state_dict().items()}


@pytest.mark.parametrize("meta_arch", sorted(TINY))
def test_the_yacs_applier_gives_the_tiny_synthetic_configs_model(meta_arch):
    """Bug caught: the two appliers of one size drifting apart (a field set by one only, e.g. the
    decoder's layers, the classes or the normalisation), so that a yacs "tiny" model is not the tiny config's."""
    cfg = get_cfg()
    add_all_configs(cfg)
    cfg.MODEL.META_ARCHITECTURE, cfg.MODEL.DEVICE = meta_arch, "cpu"
    apply_size_yacs(cfg, "tiny_synthetic")
    torch.manual_seed(0)
    from_yacs = build_model(cfg)
    torch.manual_seed(0)
    lazy = instantiate(LazyConfig.load(TINY[meta_arch]).model)
    a, b = _weights(from_yacs), _weights(lazy)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert repr(from_yacs) == repr(lazy)
    assert (from_yacs.num_select, from_yacs.clip_boxes, from_yacs.num_classes) == (50, True, 5)


def test_a_size_sets_what_it_names_and_keeps_the_rest():
    """Bug caught: a size field ignored (the decoder's depth, the heads) or a None field overwriting the
    config (the test size must keep the config's classes, dropout and encoded feature)."""
    model = LazyConfig.load(f"{REPO}/projects/conditional_detr/configs/models/conditional_detr_r50.py").model
    apply_size(model, ModelSize(depth=18, stem_out_channels=8, res2_out_channels=8, hidden_dim=48, nhead=3,
                                dim_feedforward=40, enc_layers=2, dec_layers=4, num_queries=7))
    m = instantiate(model)
    assert m.hidden_dim == 48 and m.query_init.num_queries == 7 and m.num_classes == 80 and m.in_feature == "res5"
    assert len(m.encoder.layers) == 2 and len(m.decoder.layers) == 4
    assert m.decoder.layers[0].ffn.linear1.out_features == 40 and m.encoder.layers[0].ffn.dropout.p == 0.1
    assert m.decoder.layers[0].cross_attn.nhead == 3
    # the decoder keeps reading the encoder's settings
    model.encoder.dropout = 0.2
    assert model.decoder.dropout == 0.2 and model.decoder.nhead == 3


def test_an_unknown_size_names_the_known_ones():
    with pytest.raises(KeyError, match="tiny_synthetic"):
        apply_size(LazyConfig.load(f"{REPO}/projects/dab_detr/configs/models/dab_detr_r50.py").model, "huge")
    assert {"tiny_synthetic", "test"} <= set(SIZES)
