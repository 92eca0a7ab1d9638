"""tools/demo.py faults (its library, sd_detr.visualization.demo): a yacs checkpoint that does not fit is refused with the mismatches listed (it
loaded with "Skip loading parameter" warnings and drew from random weights), running without weights is
warned about on stderr, and inputs with the same file name are written to distinct files."""
import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model

from sd_detr.checkpoint import CheckpointMismatchError
from sd_detr.config import add_all_configs

from ..utils import REPO, tiny_synthetic_yacs
from .test_demo import TINY, demo


def _yacs_file(tmp_path, **detr):
    """A yacs config file of the tiny Conditional DETR (keys of the project's yaml files), with
    MODEL.DETR values changed by ``detr``; returns (path, cfg)."""
    cfg = get_cfg()
    add_all_configs(cfg)
    tiny_synthetic_yacs(cfg, "ConditionalDETR")
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 96, 160
    cfg.DATASETS.TEST = ()
    for k, v in detr.items():
        setattr(cfg.MODEL.DETR, k, v)
    path = tmp_path / ("tiny_" + "_".join(f"{k}{v}" for k, v in detr.items()) + ".yaml")
    path.write_text(cfg.dump())
    return str(path), cfg


def _weights(tmp_path, cfg, name):
    torch.manual_seed(0)
    path = tmp_path / name
    torch.save({"model": build_model(cfg).state_dict()}, path)
    return str(path)


def _image(path, h, w, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), (np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8))
    return str(path)


def test_yacs_demo_refuses_a_checkpoint_that_does_not_fit_and_lists_the_mismatches(tmp_path):
    """Catches Detectron2's lenient load (shape mismatches skipped with a warning, exit 0, random boxes)."""
    yaml, _ = _yacs_file(tmp_path)
    _, other = _yacs_file(tmp_path, NUM_CLASSES=7)  # another head size: a checkpoint of another dataset
    weights = _weights(tmp_path, other, "other.pth")
    out = tmp_path / "out"
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch[\s\S]*class_embed\.weight"):
        demo.run_demo(config_file=yaml, inputs=[_image(tmp_path / "x.png", 100, 120)], output=str(out),
                      opts=["MODEL.WEIGHTS", weights])
    assert not out.exists() or not os.listdir(out)


def test_yacs_demo_loads_a_fitting_checkpoint_into_detectron2s_default_predictor(tmp_path):
    """Catches the strict load replacing, rather than following, the weights: every tensor must be the
    checkpoint's, and the predictor stays Detectron2's DefaultPredictor with its cfg.MODEL.WEIGHTS."""
    from detectron2.engine import DefaultPredictor

    yaml, cfg = _yacs_file(tmp_path)
    weights = _weights(tmp_path, cfg, "fit.pth")
    predictor, _ = demo.build_predictor(yaml, ["MODEL.WEIGHTS", weights])
    assert isinstance(predictor, DefaultPredictor) and predictor.cfg.MODEL.WEIGHTS == weights
    expected = torch.load(weights, map_location="cpu", weights_only=False)["model"]
    got = predictor.model.state_dict()
    assert set(got) == set(expected) and all(torch.equal(got[k], expected[k]) for k in expected)
    assert len(predictor(cv2.imread(_image(tmp_path / "x.png", 100, 120)))["instances"]) > 0


@pytest.mark.parametrize("kind", ["yacs", "lazy"])
def test_demo_without_weights_warns_on_stderr_that_the_model_is_random(tmp_path, synthetic_root, capsys, kind,
                                                                       monkeypatch):
    """Catches both demo paths running an untrained model without a word."""
    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", synthetic_root)
    config = _yacs_file(tmp_path)[0] if kind == "yacs" else TINY
    opts = ["MODEL.WEIGHTS", ""] if kind == "yacs" else ["train.init_checkpoint=", "train.device=cpu"]
    status = demo.run_demo(config_file=config, inputs=[_image(tmp_path / "x.png", 100, 120)], opts=opts)
    assert status == 0
    err = capsys.readouterr().err
    assert "no weights" in err and "random" in err, err


def test_demo_keeps_every_output_when_inputs_share_a_file_name_and_prints_where_each_went(tmp_path, synthetic_root,
                                                                                         capsys, monkeypatch):
    """Catches a/x.png and b/x.png both written to out/x.png (the second overwriting the first), and a
    renamed output clobbering another input's own name (c/x_1.png)."""
    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", synthetic_root)
    torch.manual_seed(0)
    weights = tmp_path / "tiny.pth"
    torch.save({"model": instantiate(LazyConfig.load(TINY).model).state_dict()}, weights)
    sizes = {"a/x.png": (100, 120), "b/x.png": (90, 150), "c/x_1.png": (80, 100)}
    inputs = [_image(tmp_path / rel, *hw, seed=i) for i, (rel, hw) in enumerate(sizes.items())]
    out = tmp_path / "out"
    status = demo.run_demo(config_file=TINY, inputs=inputs, output=str(out), checkpoint=str(weights),
                           opts=["train.device=cpu"])
    assert status == 0
    written = {name: cv2.imread(str(out / name)).shape[:2] for name in os.listdir(out)}
    # a/x.png and c/x_1.png keep their names; b/x.png gets the next free one
    assert written == {"x.png": (100, 120), "x_1.png": (80, 100), "x_2.png": (90, 150)}
    printed = capsys.readouterr().out
    assert f"{tmp_path / 'b' / 'x.png'} -> {out / 'x_2.png'}" in printed
