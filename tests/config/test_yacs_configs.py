"""The yacs path (``build_model(cfg)``) builds its model from the same LazyConfig model file as the
LazyConfig path: every .yaml of the projects (``configs/yacs/X.yaml``), and a yaml with the keys of a
variant, build the model of the LazyConfig file they name with the same weights (one seed), the same
modules and the same hyper-parameters; the model file is the one source of the defaults."""
import glob
import os

import pytest
import torch
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model
from omegaconf import OmegaConf

from sd_detr.config import add_all_configs
from sd_detr.model_zoo import detector_names
from sd_detr.modeling import SDDETR

from ..utils import REPO

YAMLS = sorted(glob.glob(os.path.join(REPO, "projects", "*", "configs", "yacs", "*.yaml")))


def _yacs_cfg(yaml_path, opts=()):
    cfg = get_cfg()
    add_all_configs(cfg)
    cfg.merge_from_file(yaml_path)
    cfg.merge_from_list(list(opts))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def _plain(v):
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(_plain(x) for x in v.values())
    return isinstance(v, (bool, int, float, str, type(None)))


def _hyper_parameters(model):
    """Every plain attribute of every module (numbers, strings, lists, dicts: widths, dropout p, eps,
    loss weights, repeat stages, ...), by module name."""
    out = {}
    for name, module in model.named_modules():
        for k, v in vars(module).items():
            if not k.startswith("_") and _plain(v):
                out[f"{name}.{k}"] = v
    return out


def assert_same_model(cfg, lazy_path):
    torch.manual_seed(0)
    from_yacs = build_model(cfg)
    torch.manual_seed(0)
    lazy = instantiate(LazyConfig.load(lazy_path).model)
    assert type(from_yacs) is type(lazy)
    a, b = from_yacs.state_dict(), lazy.state_dict()
    assert a.keys() == b.keys()
    differ = [k for k in a if a[k].shape != b[k].shape or not torch.equal(a[k], b[k])]
    assert not differ, f"weights differ from {os.path.basename(lazy_path)}'s: {differ[:5]}"
    assert repr(from_yacs) == repr(lazy)
    ha, hb = _hyper_parameters(from_yacs), _hyper_parameters(lazy)
    assert {k: v for k, v in ha.items() if ha[k] != hb.get(k)} == {}


def _lazy_twin(yaml_path):
    return os.path.join(os.path.dirname(os.path.dirname(yaml_path)), os.path.basename(yaml_path)[:-5] + ".py")


def test_every_detector_has_an_r50_12_epoch_yacs_config():
    names = {os.path.basename(p) for p in YAMLS}
    for detector in detector_names():
        assert f"{detector}_r50_12ep.yaml" in names


@pytest.mark.parametrize("path", YAMLS, ids=os.path.basename)
def test_yacs_config_builds_the_same_model_as_its_lazy_config(path):
    assert_same_model(_yacs_cfg(path), _lazy_twin(path))


def _project(*parts):
    return os.path.join(REPO, "projects", *parts)


# (yaml, yacs keys, the LazyConfig file of that variant)
VARIANTS = [
    ("conditional_detr/configs/yacs/conditional_detr_r50_12ep.yaml", ["MODEL.RESNETS.RES5_DILATION", 2],
     "conditional_detr/configs/conditional_detr_r50_dc5_12ep.py"),
    ("dab_detr/configs/yacs/dab_detr_r50_50ep.yaml", ["MODEL.DAB_DETR.NUM_PATTERNS", 3],
     "dab_detr/configs/dab_detr_r50_3patterns_50ep.py"),
    ("smca_detr/configs/yacs/smca_detr_r50_12ep.yaml",
     ["MODEL.SMCA_DETR.IN_FEATURES", ["res4", "res5"], "MODEL.RESNETS.OUT_FEATURES", ["res4", "res5"]],
     "smca_detr/configs/smca_detr_r50_multiscale_12ep.py"),
    ("sd_detr/configs/yacs/sd_detr_r50_12ep.yaml",
     ["MODEL.SD_DETR.DECODER", "shared", "MODEL.SD_DETR.TASK_AWARE_QUERIES", False,
      "MODEL.SD_DETR.TASK_ALIGNMENT_LOSS", False, "MODEL.SD_DETR.NUM_REPEATS", 1],
     "sd_detr/configs/ablations/table2_baseline.py"),
    ("sd_detr/configs/yacs/sd_detr_r50_12ep.yaml",
     ["MODEL.SD_DETR.TASK_AWARE_QUERIES", False, "MODEL.SD_DETR.TASK_ALIGNMENT_LOSS", False,
      "MODEL.SD_DETR.NUM_REPEATS", 1], "sd_detr/configs/ablations/table2_dfl.py"),
    ("sd_detr/configs/yacs/sd_detr_r50_12ep.yaml",
     ["MODEL.SD_DETR.DECODER", "split_decoder", "MODEL.SD_DETR.TASK_AWARE_QUERIES", False,
      "MODEL.SD_DETR.TASK_ALIGNMENT_LOSS", False, "MODEL.SD_DETR.NUM_REPEATS", 1],
     "sd_detr/configs/ablations/table3_split_decoder.py"),
]


@pytest.mark.parametrize("yaml_path,opts,lazy_path", VARIANTS, ids=[os.path.basename(v[2]) for v in VARIANTS])
def test_yacs_keys_of_a_variant_build_that_variants_lazy_model(yaml_path, opts, lazy_path):
    """Bug caught: a yacs key (DC5, patterns, multi-scale levels, an ablation switch) not reaching its
    part, or reaching it with a value the LazyConfig variant does not have."""
    opts = [str(v) if not isinstance(v, str) else v for v in opts]
    assert_same_model(_yacs_cfg(_project(yaml_path), opts), _project(lazy_path))


def test_an_unset_key_takes_the_model_files_value_and_a_set_key_overrides_only_its_places():
    """The defaults live in the model file only: with MODEL.DETR.DROPOUT unset DAB-DETR gets its file's 0.0
    and Conditional DETR its 0.1; setting it changes the encoder's and decoder's dropout and nothing else."""
    from sd_detr.modeling import ConditionalDETR, DABDETR

    cfg = get_cfg()
    add_all_configs(cfg)
    assert cfg.MODEL.DETR.DROPOUT is None
    dab = DABDETR.lazy_model_from_yacs(cfg)
    cond = ConditionalDETR.lazy_model_from_yacs(cfg)
    assert (dab.encoder.dropout, dab.decoder.dropout) == (0.0, 0.0)
    assert (cond.encoder.dropout, cond.decoder.dropout) == (0.1, 0.1)
    cfg.MODEL.DETR.DROPOUT = 0.3
    changed = OmegaConf.to_container(ConditionalDETR.lazy_model_from_yacs(cfg), resolve=True)
    base = OmegaConf.to_container(cond, resolve=True)
    diff = {(part, k) for part in base if isinstance(base[part], dict)
            for k in base[part] if base[part][k] != changed[part][k]}
    assert diff == {("encoder", "dropout"), ("decoder", "dropout")}


def test_sd_detr_yacs_keys_reach_their_places():
    """Bug caught: TAL_ALPHA / TAL_BETA swapped, TAL_GAMMA dropped, the mini-detector's weight or the repeat
    count ignored, or REPEAT_LAST_LAYER not recomputing the repeated stages for the configured depth."""
    cfg = get_cfg()
    add_all_configs(cfg)
    s = cfg.MODEL.SD_DETR
    s.TAL_ALPHA, s.TAL_BETA, s.TAL_GAMMA, s.MINI_DETECTOR_WEIGHT, s.NUM_REPEATS = 0.3, 0.6, 1.5, 0.2, 3
    cfg.MODEL.DETR.DEC_LAYERS = 4
    m = SDDETR.lazy_model_from_yacs(cfg)
    loss = m.criterion.class_loss
    assert (loss.alpha, loss.beta, loss.gamma) == (0.3, 0.6, 1.5)
    assert m.criterion.extra_stage_weights.mini_detector == 0.2
    assert m.criterion.assigner.num_repeats == 3
    assert list(m.criterion.assigner.repeat_stages) == [0, 1, 2]  # all but the last of 4 layers
    s.REPEAT_LAST_LAYER = True
    assert SDDETR.lazy_model_from_yacs(cfg).criterion.assigner.repeat_stages is None


@pytest.mark.parametrize("key,value,match", [
    ("MODEL.SD_DETR.DECODER", "split", "MODEL.SD_DETR.DECODER"),
    ("MODEL.SD_DETR.SELF_ATTN_WIDTH", "wide", "MODEL.SD_DETR.SELF_ATTN_WIDTH"),
])
def test_a_wrong_sd_detr_layout_value_names_its_key(key, value, match):
    cfg = get_cfg()
    add_all_configs(cfg)
    cfg.merge_from_list([key, value])
    with pytest.raises(ValueError, match=match):
        SDDETR.lazy_model_from_yacs(cfg)


def test_a_key_for_a_part_the_model_lacks_names_the_key():
    from sd_detr.modeling.meta_arch.build import set_given

    model = SDDETR.lazy_model_from_yacs(_yacs_cfg(_project("sd_detr/configs/yacs/sd_detr_r50_12ep.yaml")))
    model.query_init.task_aware = None
    with pytest.raises(KeyError, match="MODEL.SD_DETR.NUM_POINTS"):
        set_given(model, "MODEL.SD_DETR.NUM_POINTS", 4, ["query_init.task_aware.num_points"])
