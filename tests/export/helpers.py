"""Tiny detectors for the export tests."""
import os

import torch
from detectron2.config import LazyConfig, instantiate

from sd_detr.engine.accel import optimize_for_cpu
from sd_detr.model_zoo import detector_names, detectors  # noqa: F401  (detector_names: for the tests)

from ..utils import REPO, shrink_model_config

def clone_path(zoo_name):
    """The clone path of a project's model-zoo config: ``"sd_detr/x.py"`` -> ``"projects/sd_detr/configs/x.py"``."""
    project, rest = zoo_name.split("/", 1)
    return f"projects/{project}/configs/{rest}"


# every registered detector's tiny config (by its project name), then the other configs the tests export
TINY = {
    **{d.name: clone_path(d.tiny) for d in detectors()},
    # no tiny multi-scale config exists: the R50 one shrunk as tests/test_project_configs.py does
    "smca_multiscale": "projects/smca_detr/configs/smca_detr_r50_multiscale_12ep.py",
    # shrunk (1 encoder, 2 decoder layers, width 32): the torch.compile test
    "conditional_shrunk": "projects/conditional_detr/configs/conditional_detr_r50_12ep.py",
    "table2_baseline": "projects/sd_detr/configs/ablations/table2_baseline_tiny_synthetic.py",
    "table2_dfl": "projects/sd_detr/configs/ablations/table2_dfl_tiny_synthetic.py",
    "table2_taq": "projects/sd_detr/configs/ablations/table2_taq_tiny_synthetic.py",
    "table3_split_decoder": "projects/sd_detr/configs/ablations/table3_split_decoder_tiny_synthetic.py",
}


def config_path(name):
    return os.path.join(REPO, TINY[name])


def load_cfg(name):
    cfg = LazyConfig.load(config_path(name))
    if "synthetic" not in TINY[name]:
        shrink_model_config(cfg.model)
    return cfg


def spread_heads(model, seed=0):
    """Give the class and box heads random weights (in place), so that the top-k scores are well apart.

    The heads' initialisation (class bias at the 0.01 prior, zero box layer) makes an untrained model's
    scores nearly equal, and their top-k order is then decided by float rounding, which differs between
    runtimes; comparisons would test tie-breaking, not the export."""
    g = torch.Generator().manual_seed(seed)
    c = model.class_embed.in_features
    with torch.no_grad():
        # logits of about unit spread: apart, but not saturated (sigmoid 1.0 ties again)
        model.class_embed.weight.normal_(0.0, c ** -0.5, generator=g)
        model.bbox_embed.layers[-1].weight.normal_(0.0, 0.1, generator=g)
    return model


def build(name, seed=0):
    """(cfg, eval model with spread heads) of a tiny config, as users build it (channels-last, oneDNN linear)."""
    cfg = load_cfg(name)
    torch.manual_seed(seed)
    model = spread_heads(instantiate(cfg.model).eval(), seed)
    optimize_for_cpu(model)
    return cfg, model


def image(shape, seed=0):
    return torch.randint(0, 256, tuple(shape), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
