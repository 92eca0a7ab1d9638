"""configs/common/schedule.py: the constant schedule runs to the last iteration inside Detectron2's
LRMultiplier, and trains the tiny SD-DETR; the step schedules drop where they say."""
import os

import pytest
import torch
from detectron2.config import instantiate
from detectron2.solver import LRMultiplier
from fvcore.common.param_scheduler import ConstantParamScheduler

from sd_detr.config import get_config


def _run_scheduler(multiplier, max_iter, base_lr=0.1):
    """The learning rate of every iteration 0..max_iter-1 as Detectron2's LRScheduler hook sets it
    (one ``step()`` after each iteration, the last one included)."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=base_lr)
    scheduler = LRMultiplier(optimizer, multiplier, max_iter=max_iter)
    lrs = []
    for _ in range(max_iter):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_fvcore_constant_scheduler_crashes_at_the_last_step():
    """The fault the constant schedule avoids (if fvcore/Detectron2 fix it, constant_schedule may go)."""
    with pytest.raises(RuntimeError, match="must be in"):
        _run_scheduler(ConstantParamScheduler(1.0), max_iter=7)


@pytest.mark.parametrize("max_iter", [1, 7, 100])
def test_constant_schedule_runs_through_every_step_at_the_base_lr(max_iter):
    """Catches: a constant schedule that raises at where = 1.0 (ConstantParamScheduler) or drifts."""
    multiplier = instantiate(get_config("common/schedule.py").constant_schedule)
    assert _run_scheduler(multiplier, max_iter) == [0.1] * max_iter


def test_constant_schedule_value_can_be_overridden():
    """Catches: a value ignored (e.g. a hard-coded 1.0)."""
    schedule = get_config("common/schedule.py").constant_schedule
    schedule.values = [0.5]
    assert _run_scheduler(instantiate(schedule), 5) == pytest.approx([0.05] * 5)


def test_step_schedule_drops_by_ten_after_its_milestone():
    """Catches: the drop at the wrong iteration (e.g. milestones read as fractions of the wrong total)."""
    s = get_config("common/schedule.py").schedule_12ep
    max_iter, drop = s.max_iter, s.lr_multiplier.milestones[0]
    assert drop == 11 * max_iter // 12
    multiplier = instantiate(s.lr_multiplier)
    assert multiplier(0.0) == 1.0
    assert multiplier((drop - 1) / max_iter) == 1.0
    assert multiplier(drop / max_iter) == pytest.approx(0.1)
    assert multiplier(1.0) == pytest.approx(0.1)  # the last step() must not raise either


def test_tiny_sd_detr_trains_with_the_constant_schedule(synthetic_root, tmp_path, monkeypatch):
    """Catches: the schedule failing inside a real run (the LRScheduler hook steps after the last
    iteration); the learning rate logged must be the optimizer's base lr throughout."""
    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", synthetic_root)
    from detectron2.config import LazyConfig

    from sd_detr.engine import do_train

    from ..utils import REPO, read_metrics

    cfg = LazyConfig.load(os.path.join(REPO, "projects", "sd_detr", "configs", "sd_detr_tiny_synthetic.py"))
    cfg.lr_multiplier = get_config("common/schedule.py").constant_schedule
    cfg.train.update(output_dir=str(tmp_path), max_iter=3, log_period=1, eval_period=0, device="cpu")
    cfg.train.checkpointer.period = 1000
    cfg.dataloader.train.update(total_batch_size=2, num_workers=0)
    cfg.dataloader.pop("evaluator")  # no evaluation: this test is about the schedule
    trainer = do_train(cfg)
    assert trainer.iter == 3  # Detectron2 leaves iter at max_iter after the loop
    rows = [r for r in read_metrics(tmp_path) if "lr" in r]
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert [r["lr"] for r in rows] == pytest.approx([cfg.optimizer.lr] * 3)
