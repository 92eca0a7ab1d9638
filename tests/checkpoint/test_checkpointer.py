import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from sd_detr.checkpoint import CheckpointMismatchError, DETRCheckpointer

from ..utils import REPO

TINY = f"{REPO}/projects/conditional_detr/configs/conditional_detr_tiny_synthetic.py"


def _model(**overrides):
    cfg = LazyConfig.load(TINY)
    for k, v in overrides.items():
        cfg.model[k] = v
    return instantiate(cfg.model)


def _save(tmp_path, state):
    path = tmp_path / "ckpt.pth"
    torch.save({"model": state}, path)
    return str(path)


def test_strict_load_of_a_matching_checkpoint_restores_every_tensor(tmp_path):
    src, dst = _model(), _model()
    path = _save(tmp_path, src.state_dict())
    DETRCheckpointer(dst, strict=True).load(path)
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k


def test_strict_load_lists_missing_unexpected_and_wrongly_shaped_keys(tmp_path):
    state = _model(num_classes=7).state_dict()  # class head 7 instead of 5
    state["some.unexpected.weight"] = torch.zeros(1)
    del state["bbox_embed.layers.0.bias"]
    with pytest.raises(CheckpointMismatchError) as err:
        DETRCheckpointer(_model(), strict=True).load(_save(tmp_path, state))
    msg = str(err.value)
    assert "class_embed.weight" in msg and "(7, 64)" in msg
    assert "some.unexpected.weight" in msg and "bbox_embed.layers.0.bias" in msg


def test_non_strict_load_accepts_partial_weights_but_not_an_unrelated_checkpoint(tmp_path):
    model = _model()
    backbone_only = {k: v for k, v in _model().state_dict().items() if k.startswith("backbone.")}
    DETRCheckpointer(model).load(_save(tmp_path, backbone_only))  # e.g. ImageNet initialisation
    official_like = {"transformer.decoder.layers.0.sa_qcontent_proj.weight": torch.zeros(3, 3)}
    with pytest.raises(CheckpointMismatchError, match="(?s)no tensor of it matches.*convert_checkpoint.py"):
        DETRCheckpointer(model).load(_save(tmp_path, official_like))
