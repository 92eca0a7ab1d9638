import pytest
from detectron2.config import LazyConfig

from sd_detr.config import check_override_keys

from ..utils import REPO

CFG = f"{REPO}/projects/conditional_detr/configs/conditional_detr_r50_12ep.py"


def test_unknown_override_key_is_an_error_naming_the_key_and_suggesting_the_right_one():
    cfg = LazyConfig.load(CFG)
    with pytest.raises(KeyError, match=r"train\.max_iters.*did you mean train\.max_iter"):
        check_override_keys(cfg, ["train.max_iters=10"])


def test_existing_keys_and_unspelled_keyword_defaults_are_accepted():
    cfg = LazyConfig.load(CFG)
    # size_divisibility is a keyword of the model class that the config leaves at its default
    check_override_keys(cfg, ["train.max_iter=10", "model.decoder.num_layers=3", "model.size_divisibility=32",
                              "+train.new_key=1"])
    with pytest.raises(KeyError, match="model.decoder.num_layer"):
        check_override_keys(cfg, ["model.decoder.num_layer=3"])


def test_malformed_override_is_an_error():
    with pytest.raises(ValueError, match="key=value"):
        check_override_keys(LazyConfig.load(CFG), ["train.max_iter"])
