"""projects/sd_detr/configs/sd_detr_tiny_synthetic_demo.py, `make demo`'s recipe (issue 23 §3): the tiny SD-DETR
of sd_detr_tiny_synthetic.py evaluated on the same synthetic val split, with the ablation budget's step schedule
cut to 1300 iterations; the Makefile trains, evaluates and draws that config as it is."""
import os
import re
import shlex

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.solver import LRMultiplier
from omegaconf import OmegaConf

from sd_detr.data.synthetic import SYNTHETIC_VAL_NAME

from ..utils import REPO

DEMO = os.path.join(REPO, "projects", "sd_detr", "configs", "sd_detr_tiny_synthetic_demo.py")
TINY = os.path.join(REPO, "projects", "sd_detr", "configs", "sd_detr_tiny_synthetic.py")


def _lrs(cfg):
    """The learning rate of every iteration 0..max_iter-1 as Detectron2's LRScheduler hook sets it."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=cfg.optimizer.lr)
    scheduler = LRMultiplier(optimizer, instantiate(cfg.lr_multiplier), max_iter=cfg.train.max_iter)
    lrs = []
    for _ in range(cfg.train.max_iter):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def _makefile_vars():
    with open(os.path.join(REPO, "Makefile")) as f:
        return dict(re.findall(r"^(\w+) := (.*)$", f.read(), flags=re.M))


def test_demo_trains_the_tiny_sd_detr_and_evaluates_on_the_shared_val_split():
    """Catches: a demo model that is not the tiny SD-DETR of the docs (a changed width, depth or query count
    would make its numbers incomparable with docs/ablations.md), or an evaluation on another split than the
    synthetic val split every other document reports (e.g. on training images)."""
    demo, tiny = LazyConfig.load(DEMO), LazyConfig.load(TINY)
    assert OmegaConf.to_container(demo.model) == OmegaConf.to_container(tiny.model)
    assert demo.dataloader.test.dataset.names == SYNTHETIC_VAL_NAME
    train_names = demo.dataloader.train.dataset.names
    assert SYNTHETIC_VAL_NAME not in ([train_names] if isinstance(train_names, str) else list(train_names))


def test_demo_schedule_drops_by_ten_for_the_last_hundred_iterations():
    """Catches: a schedule whose drop falls outside the shortened run (the ablation budget's milestone 2700 left
    in place, so the demo never decays), or a drop at the wrong place."""
    cfg = LazyConfig.load(DEMO)
    lrs, peak = _lrs(cfg), cfg.optimizer.lr
    assert len(lrs) == 1300
    assert lrs[:1200] == pytest.approx([peak] * 1200)
    assert lrs[1200:] == pytest.approx([0.1 * peak] * 100)


def test_make_demo_trains_evaluates_and_draws_the_demo_config_as_it_is():
    """Catches: the Makefile training another config than the one it draws, or DEMO_OPTS that change the
    recipe's length (the schedule's drop is written for its 1300 iterations), or a run whose only evaluation is not at its last iteration."""
    v = _makefile_vars()
    assert os.path.join(REPO, v["DEMO_CONFIG"]) == DEMO
    opts = shlex.split(v.get("DEMO_OPTS", ""))
    cfg = LazyConfig.load(DEMO)
    before = OmegaConf.to_container(cfg.lr_multiplier), cfg.train.max_iter, cfg.optimizer.lr
    cfg = LazyConfig.apply_overrides(cfg, opts)
    assert (OmegaConf.to_container(cfg.lr_multiplier), cfg.train.max_iter, cfg.optimizer.lr) == before
    assert cfg.train.eval_period == cfg.train.max_iter
