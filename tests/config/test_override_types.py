"""Wrong-typed ``key=value`` overrides are refused by ``check_override_keys`` before anything is built,
with an error naming the key, the value and the type the config holds there; valid overrides pass."""
import argparse

import pytest
from detectron2.config import LazyConfig
from omegaconf import OmegaConf

from sd_detr.config import check_override_keys

from ..utils import REPO

TINY = f"{REPO}/projects/conditional_detr/configs/conditional_detr_tiny_synthetic.py"
R50 = f"{REPO}/projects/conditional_detr/configs/conditional_detr_r50_12ep.py"


@pytest.mark.parametrize("override, expected", [
    ("train.max_iter=abc", r"train\.max_iter.*'abc'.*int"),
    ("train.max_iter=5.5", r"train\.max_iter.*5\.5.*int"),
    ("train.max_iter=true", r"train\.max_iter.*True.*int"),  # bool is an int subclass in Python
    ("optimizer.lr=fast", r"optimizer\.lr.*'fast'.*float"),
    ("train.amp.enabled=1", r"train\.amp\.enabled.*1.*bool"),
    ("train.device=3", r"train\.device.*3.*str"),
    ("lr_multiplier.milestones=5", r"lr_multiplier\.milestones.*5.*list"),
    ("train.clip_grad=0.1", r"train\.clip_grad.*0\.1.*dict"),
])
def test_wrong_typed_override_is_an_error_naming_key_value_and_expected_type(override, expected):
    """Catches a check that only looks at keys (OmegaConf stores any value; the TypeError came later,
    inside the model or the scheduler, without the key), and bool/int/float confusions."""
    with pytest.raises(TypeError, match=expected):
        check_override_keys(LazyConfig.load(R50), [override])


def test_valid_overrides_of_every_kind_still_pass():
    """Catches a check so strict that it refuses the documented overrides: int for a float key, an empty
    string, a list, null, an interpolation, keys whose value is None or an interpolation, new keys."""
    cfg = LazyConfig.load(R50)
    assert OmegaConf.is_interpolation(cfg.model.decoder, "d_model")  # so any value may replace it
    check_override_keys(cfg, [
        "train.max_iter=10", "optimizer.lr=1e-4", "optimizer.lr=1", "optimizer.weight_decay=0",
        "lr_multiplier.milestones=[1,2]", 'train.init_checkpoint=""', "train.amp.enabled=true",
        "train.device=cpu", "train.output_dir='2024'", "model.decoder.d_model=32", "train.max_iter=${train.eval_period}",
        "train.seed=null", "model.size_divisibility=32", "+train.new_key=abc", "train.clip_grad={enabled:false}",
    ])


def test_comma_separated_sweep_is_an_error_suggesting_a_list():
    """``a=1,2`` is a Hydra sweep, which LazyConfig cannot apply (it stored a ChoiceSweep object)."""
    with pytest.raises(ValueError, match=r"lr_multiplier\.milestones=1,2.*\[1,2\]"):
        check_override_keys(LazyConfig.load(R50), ["lr_multiplier.milestones=1,2"])


def test_train_tool_refuses_a_wrong_typed_override_before_building_anything(tmp_path):
    """Through the tool's main (sd_detr.engine.train_net.main, with the namespace its parser gives): the error
    comes before default_setup (no output folder is created), i.e. before the model and the data loader are
    built."""
    from sd_detr.engine.train_net import main

    out = tmp_path / "out"
    args = argparse.Namespace(config_file=TINY, opts=[f"train.output_dir={out}", "train.max_iter=abc"],
                              eval_only=False, resume=False, overwrite=False, dataset_train=None, dataset_val=None)
    with pytest.raises(TypeError, match=r"train\.max_iter=abc.*int"):
        main(args)
    assert not out.exists()
