"""train.model_ema (issue 23 §2): the exponential moving average of the weights, as detrex's option. The
update formula, its checkpointable state (``--resume`` continues the same average, bit for bit; a NaN in it is
refused like one in the model), evaluation with the EMA weights and the live ones back afterwards, and off
in every shipped config."""
import glob
import os
import shutil

import pytest
import torch
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig
from detectron2.data.samplers import TrainingSampler
from torch import nn

import sd_detr.engine.train_loop as train_loop
from sd_detr.checkpoint import DETRCheckpointer
from sd_detr.checkpoint.checkpointer import CheckpointMismatchError
from sd_detr.engine import do_eval_only, do_train
from sd_detr.engine.ema import EMAHook, ModelEMA

from ..utils import REPO
from .test_resume_metrics import _tiny_cfg


class _Toy(nn.Module):
    """Two parameters, a float buffer (like BatchNorm's running mean) and an integer one (its counter)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0]))
        self.b = nn.Parameter(torch.tensor([2.0]))
        self.register_buffer("running", torch.tensor([0.0]))
        self.register_buffer("count", torch.tensor(0, dtype=torch.long))


def _set(model, w, b, running, count):
    with torch.no_grad():
        model.w.fill_(w)
        model.b.fill_(b)
        model.running.fill_(running)
        model.count.fill_(count)


def test_update_formula_by_hand():
    """decay 0.9 from (w, b, running, count) = (1, 2, 0, 0), the live model then at (3, -2, 10, 5):
    ema = 0.9 * ema + 0.1 * live for the floats, the counter copied. Catches decay and 1 - decay swapped
    (w would be 2.8), buffers left out of the average (running stays 0, or KeyError), the counter averaged
    (0 after truncation) and names with DataParallel's ``module.`` prefix."""
    toy = _Toy()
    ema = ModelEMA(nn.DataParallel(toy), decay=0.9)  # a wrapper is unwrapped: names are the bare model's
    ema.reset()
    assert set(ema.state_dict()) == {"w", "b", "running", "count"}
    _set(toy, 3.0, -2.0, 10.0, 5)
    ema.update()
    s = ema.state_dict()
    assert s["w"].item() == pytest.approx(1.2, abs=1e-6)  # 0.9 * 1 + 0.1 * 3
    assert s["b"].item() == pytest.approx(1.6, abs=1e-6)  # 0.9 * 2 + 0.1 * (-2)
    assert s["running"].item() == pytest.approx(1.0, abs=1e-6)  # 0.9 * 0 + 0.1 * 10
    assert s["count"].item() == 5 and s["count"].dtype == torch.long
    ema.update()  # the average compounds: 0.9 * 1.2 + 0.1 * 3
    assert ema.state_dict()["w"].item() == pytest.approx(1.38, abs=1e-6)
    # the average is a copy: the live weights are untouched by the update
    assert toy.w.item() == 3.0 and toy.running.item() == 10.0


def test_swapped_in_evaluates_the_average_and_restores_the_same_live_tensors():
    toy = _Toy()
    ema = ModelEMA(toy, decay=0.5)
    ema.reset()
    _set(toy, 3.0, -2.0, 10.0, 5)
    ema.update()  # (2, 0, 5, 5)
    w_obj, w_ptr = toy.w, toy.w.data_ptr()
    with pytest.raises(RuntimeError, match="inside"):
        with ema.swapped_in() as m:
            assert m is toy
            assert (toy.w.item(), toy.b.item(), toy.running.item()) == (2.0, 0.0, 5.0)
            raise RuntimeError("inside")  # an evaluation that fails still gives the live weights back
    assert (toy.w.item(), toy.b.item(), toy.running.item(), toy.count.item()) == (3.0, -2.0, 10.0, 5)
    assert toy.w is w_obj and toy.w.data_ptr() == w_ptr  # the optimizer's references stay valid


def test_a_saved_average_must_fit_the_model():
    ema = ModelEMA(_Toy())
    with pytest.raises(CheckpointMismatchError, match="missing \\['running'\\]"):
        ema.load_state_dict({"w": torch.ones(1), "b": torch.ones(1), "count": torch.tensor(0)})
    with pytest.raises(CheckpointMismatchError, match="wrong shape \\['w'\\]"):
        ema.load_state_dict({"w": torch.ones(2), "b": torch.ones(1), "running": torch.ones(1),
                             "count": torch.tensor(0)})


def test_a_nan_in_the_average_is_refused_and_the_previous_checkpoint_kept(tmp_path):
    """The checkpointer's NaN refusal and atomic write cover the ``model_ema`` checkpointable."""
    toy = _Toy()
    ema = ModelEMA(toy)
    ema.reset()
    ckpt = DETRCheckpointer(toy, str(tmp_path), model_ema=ema)
    ckpt.save("model_0000000")
    saved = torch.load(tmp_path / "model_0000000.pth", weights_only=True)
    assert torch.equal(saved["model_ema"]["w"], torch.tensor([1.0]))
    ema.state["running"].fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="model_ema.running"):
        ckpt.save("model_0000001")
    assert not os.path.exists(tmp_path / "model_0000001.pth")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000000.pth"


# ---------------------------------------------------------------- through the training loop

def _first_images(dicts, n):
    return dicts[:n]


def _ema_cfg(output_dir, max_iter=6, checkpoint_period=3, evaluate=False):
    """The tiny Conditional DETR with EMA (decay 0.9: the average moves visibly in a few steps), on a data
    stream that does not depend on where a run starts: the same 2 training images, unshuffled and without
    random augmentation, every iteration (Detectron2's sampler restarts at a resume, and the resume test
    compares a resumed run with an uninterrupted one)."""
    cfg = _tiny_cfg(output_dir, max_iter=max_iter, checkpoint_period=checkpoint_period, evaluate=evaluate)
    cfg.train.model_ema.update(enabled=True, decay=0.9)
    train = cfg.dataloader.train
    train.dataset = L(_first_images)(dicts=train.dataset, n=2)
    train.sampler = L(TrainingSampler)(size=2, shuffle=False)
    train.aspect_ratio_grouping = False
    train.mapper.augmentations.update(is_train=False, test_min_size=128, test_max_size=192)
    return cfg


def _ema_of(trainer):
    return next(h.ema for h in trainer._hooks if isinstance(h, EMAHook))


def _assert_states_equal(a, b, what):
    assert a.keys() == b.keys(), what
    for k in a:
        assert torch.equal(a[k], b[k]), f"{what}: {k} differs (max {(a[k].double() - b[k].double()).abs().max()})"


def test_resume_continues_the_same_average(synthetic_root, tmp_path, monkeypatch):
    """6 iterations with checkpoints after iterations 2 and 5, against a resume to 6 from the checkpoint of
    iteration 2: the model and the EMA at the end are equal, bit for bit. Catches the EMA left out of the checkpoint (the
    resumed average restarts at iteration 3's weights), a resume that re-initialises a loaded average, and an
    average checkpointed before its step's update."""
    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", synthetic_root)
    straight = do_train(_ema_cfg(tmp_path / "straight"))
    # the folder a run stopped after iteration 3 leaves: its checkpoint of iteration 2, tagged. (A run with
    # max_iter=3 would not do: the LR schedule is relative to max_iter.)
    (tmp_path / "resumed").mkdir()
    shutil.copy(tmp_path / "straight" / "model_0000002.pth", tmp_path / "resumed" / "model_0000002.pth")
    (tmp_path / "resumed" / "last_checkpoint").write_text("model_0000002.pth")
    resumed = do_train(_ema_cfg(tmp_path / "resumed"), resume=True)
    assert resumed.start_iter == 3

    ema_a, ema_b = _ema_of(straight).state_dict(), _ema_of(resumed).state_dict()
    _assert_states_equal(straight.model.state_dict(), resumed.model.state_dict(), "live weights")
    _assert_states_equal(ema_a, ema_b, "EMA weights")
    # what was compared is an average, not the live weights under another name
    live = straight.model.state_dict()
    assert any(not torch.equal(ema_a[k], live[k]) for k in live if live[k].is_floating_point())
    # and it is what the final checkpoint holds
    saved = torch.load(tmp_path / "resumed" / "model_final.pth", weights_only=True)["model_ema"]
    _assert_states_equal(saved, ema_b, "model_final.pth's model_ema")


def _capture_evaluated_weights(monkeypatch):
    """Replace the COCO evaluation by a record of the weights the evaluated model holds."""
    seen = []

    def fake_inference(model, data_loader, evaluator):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return {}

    monkeypatch.setattr(train_loop, "inference_on_dataset", fake_inference)
    return seen


def test_evaluation_uses_the_average_and_gives_the_live_weights_back(synthetic_root, tmp_path, monkeypatch):
    """The periodic and the final evaluation see the EMA weights; after them the model holds its live weights
    (model_final.pth's ``model``, saved before the final evaluation). ``--eval-only`` evaluates the
    checkpoint's EMA weights with use_ema_weights_for_eval_only, its live ones without, and refuses the option
    on a checkpoint without EMA. Catches evaluating the live weights, and EMA weights left in the model."""
    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", synthetic_root)
    seen = _capture_evaluated_weights(monkeypatch)
    cfg = _ema_cfg(tmp_path / "run", max_iter=3, checkpoint_period=100, evaluate=True)
    cfg.train.eval_period = 2  # one periodic evaluation (after iteration 1) and the final one
    trainer = do_train(cfg)
    final = torch.load(tmp_path / "run" / "model_final.pth", weights_only=True)
    assert len(seen) == 2
    _assert_states_equal(seen[-1], final["model_ema"], "final evaluation")
    assert any(not torch.equal(seen[-1][k], final["model"][k]) for k in final["model"])
    assert any(not torch.equal(seen[0][k], seen[1][k]) for k in seen[0])  # the periodic one: an earlier average
    _assert_states_equal(trainer.model.state_dict(), final["model"], "live weights after the evaluations")

    cfg = _ema_cfg(tmp_path / "eval", evaluate=True)
    cfg.train.init_checkpoint = str(tmp_path / "run" / "model_final.pth")
    cfg.train.model_ema.use_ema_weights_for_eval_only = True
    do_eval_only(cfg)
    _assert_states_equal(seen[-1], final["model_ema"], "--eval-only with use_ema_weights_for_eval_only")
    cfg.train.model_ema.use_ema_weights_for_eval_only = False
    do_eval_only(cfg)
    _assert_states_equal(seen[-1], final["model"], "--eval-only without it")

    torch.save({"model": final["model"]}, tmp_path / "no_ema.pth")
    cfg.train.init_checkpoint = str(tmp_path / "no_ema.pth")
    cfg.train.model_ema.use_ema_weights_for_eval_only = True
    with pytest.raises(ValueError, match="holds no EMA weights"):
        do_eval_only(cfg)


def test_off_in_the_common_defaults_and_every_shipped_config():
    """Every project config (ablations included; models/ and yacs/ hold no train section) and the common
    defaults keep train.model_ema off: the paper recipes train without it."""
    configs = [p for p in glob.glob(os.path.join(REPO, "projects", "*", "configs", "**", "*.py"), recursive=True)
               if f"{os.sep}models{os.sep}" not in p and f"{os.sep}yacs{os.sep}" not in p]
    configs.append(os.path.join(REPO, "configs", "common", "train.py"))
    assert len(configs) > 30, configs
    for path in configs:
        cfg = LazyConfig.load(path)
        assert "model_ema" in cfg.train, path
        assert cfg.train.model_ema.enabled is False, path
        assert cfg.train.model_ema.decay == 0.999, path  # detrex's default, should a user turn it on
