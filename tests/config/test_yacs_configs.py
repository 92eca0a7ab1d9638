"""Every yacs .yaml of the projects builds, through Detectron2's registry (``build_model``), the same model
as the LazyConfig file it names (``configs/yacs/X.yaml`` <-> ``configs/X.py``)."""
import glob
import os

import pytest
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model

from sd_detr.config import add_all_configs

from ..utils import REPO

YAMLS = sorted(glob.glob(os.path.join(REPO, "projects", "*", "configs", "yacs", "*.yaml")))


def test_every_detector_has_an_r50_12_epoch_yacs_config():
    names = {os.path.basename(p) for p in YAMLS}
    for detector in ("conditional_detr", "dab_detr", "smca_detr", "sd_detr"):
        assert f"{detector}_r50_12ep.yaml" in names


@pytest.mark.parametrize("path", YAMLS, ids=os.path.basename)
def test_yacs_config_builds_the_same_model_as_its_lazy_config(path):
    cfg = get_cfg()
    add_all_configs(cfg)
    cfg.merge_from_file(path)
    cfg.MODEL.DEVICE = "cpu"
    from_yacs = build_model(cfg)
    lazy_path = os.path.join(os.path.dirname(os.path.dirname(path)), os.path.basename(path)[:-5] + ".py")
    lazy = instantiate(LazyConfig.load(lazy_path).model)
    assert type(from_yacs) is type(lazy)
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(from_yacs) == shapes(lazy)
    assert from_yacs.num_select == lazy.num_select
    c_yacs, c_lazy = from_yacs.criterion, lazy.criterion
    assert c_yacs.weight_dict == c_lazy.weight_dict
    assert type(c_yacs.class_loss) is type(c_lazy.class_loss)
    assert vars(c_yacs.class_loss).keys() == vars(c_lazy.class_loss).keys()
    for k, v in vars(c_lazy.class_loss).items():
        if not k.startswith("_"):
            assert getattr(c_yacs.class_loss, k) == v, k
    assert type(c_yacs.assigner) is type(c_lazy.assigner)
    for k in ("num_repeats", "repeat_stages"):
        assert getattr(c_yacs.assigner, k, None) == getattr(c_lazy.assigner, k, None), k
    assert getattr(c_yacs, "extra_stage_weights", None) == getattr(c_lazy, "extra_stage_weights", None)
