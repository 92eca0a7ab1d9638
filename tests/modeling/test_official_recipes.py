"""Training- and inference-time fidelity of the baselines to the official scripts (issue 10, section 4):
batch size and iteration counts of each full-size config, the box head's initialisation per detector, the
official random sampler (no aspect-ratio grouping) and unclipped inference boxes."""
import math
import os

import numpy as np
import pytest
import torch
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model

from sd_detr.checkpoint.convert import CONVERTERS
from sd_detr.config import add_all_configs, add_detr_config
from sd_detr.model_zoo import detector_names
from sd_detr.modeling.meta_arch.detr import rescale_detections

from ..utils import REPO, tiny_synthetic_yacs

COCO_TRAIN_IMAGES = 118_287
# the baselines: the registered detectors that have official checkpoints to convert (all but SD-DETR)
BASELINES = [name for name in detector_names() if name in CONVERTERS]


def _config(project, name):
    return LazyConfig.load(os.path.join(REPO, "projects", project, "configs", f"{name}.py"))


# images per iteration of each official recipe (full-size configs of the three baselines):
# Conditional DETR scripts/conddetr_r50_epoch50.sh (8 GPUs x default 2) and conddetr_r50dc5_epoch50.sh
# (8 x 1); DAB-DETR README (16 = 2 x 8; DC5 on 16 GPUs x 1, paper appendix A); SMCA-DETR README single
# scale (8 x 2); the paper's multi-scale SMCA (8 V100 x 1 image, as the released multi-scale commands).
OFFICIAL_BATCH = {
    ("conditional_detr", "conditional_detr_r50_12ep"): 16,
    ("conditional_detr", "conditional_detr_r50_50ep"): 16,
    ("conditional_detr", "conditional_detr_r50_dc5_12ep"): 8,
    ("conditional_detr", "conditional_detr_r50_dc5_50ep"): 8,
    ("dab_detr", "dab_detr_r50_12ep"): 16,
    ("dab_detr", "dab_detr_r50_50ep"): 16,
    ("dab_detr", "dab_detr_r50_dc5_12ep"): 16,
    ("dab_detr", "dab_detr_r50_dc5_50ep"): 16,
    ("dab_detr", "dab_detr_r50_3patterns_50ep"): 16,
    ("dab_detr", "dab_detr_r50_dc5_3patterns_50ep"): 16,
    ("smca_detr", "smca_detr_r50_12ep"): 16,
    ("smca_detr", "smca_detr_r50_50ep"): 16,
    ("smca_detr", "smca_detr_r50_dc5_12ep"): 16,
    ("smca_detr", "smca_detr_r50_dc5_50ep"): 16,
    ("smca_detr", "smca_detr_r50_multiscale_12ep"): 8,
    ("smca_detr", "smca_detr_r50_multiscale_50ep"): 8,
}


@pytest.mark.parametrize("project,name", sorted(OFFICIAL_BATCH), ids=lambda x: x)
def test_full_size_config_trains_at_the_official_batch_with_its_epochs_counted_at_that_batch(project, name):
    """Catches: the Conditional DETR-DC5 configs at 16 images (the official DC5 script uses 8), the
    iteration counts of 16-image epochs kept after halving the batch (half the official epochs), or a
    learning rate scaled with the batch (the official scripts keep 1e-4 / 1e-5 at any batch)."""
    cfg = _config(project, name)
    batch = OFFICIAL_BATCH[(project, name)]
    assert cfg.dataloader.train.total_batch_size == batch
    epoch = math.ceil(COCO_TRAIN_IMAGES / batch)  # official DistributedSampler: ceil(N / 8) per process
    epochs, drop = (12, 11) if "12ep" in name else (50, 40)
    assert cfg.train.max_iter == epochs * epoch
    assert list(cfg.lr_multiplier.milestones) == [drop * epoch, epochs * epoch]
    assert list(cfg.lr_multiplier["values"]) == [1.0, 0.1]
    assert cfg.optimizer.lr == 1e-4 and cfg.optimizer.params.backbone_lr_factor == 0.1


def test_every_full_size_baseline_config_is_in_the_batch_table():
    """Catches: a new baseline config added without checking its official batch size."""
    names = set()
    for project in BASELINES:
        for f in os.listdir(os.path.join(REPO, "projects", project, "configs")):
            if f.endswith(".py") and "synthetic" not in f and "stage_assigner" not in f:
                names.add((project, f[:-3]))
    assert names == set(OFFICIAL_BATCH)


# ------------------------------------------------------------------ box head initialisation
TINY = {
    "ConditionalDETR": ("conditional_detr", "conditional_detr_tiny_synthetic"),
    "DABDETR": ("dab_detr", "dab_detr_tiny_synthetic"),
    "SMCADETR": ("smca_detr", "smca_detr_tiny_synthetic"),
    "SDDETR": ("sd_detr", "sd_detr_tiny_synthetic"),
}
# official: Conditional DETR models/conditional_detr.py:58-60 and DAB-DETR models/DAB_DETR/DABDETR.py:133-140
# zero the last layer; SMCA-DETR models/detr.py:45 keeps nn.Linear's initialisation; SD-DETR (no code)
# keeps the Conditional DETR one it is built on
ZERO_BOX_HEAD = {"ConditionalDETR": True, "DABDETR": True, "SMCADETR": False, "SDDETR": True}


def _assert_box_head_init(model, zeros: bool):
    last = model.bbox_embed.layers[-1]
    if zeros:
        assert not last.weight.any() and not last.bias.any()
        return
    # nn.Linear's kaiming-uniform: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
    bound = 1 / math.sqrt(last.in_features)
    assert last.weight.abs().max() <= bound and last.bias.abs().max() <= bound
    assert last.weight.std() > 0.5 * bound / math.sqrt(3) and last.bias.abs().sum() > 0


@pytest.mark.parametrize("arch", sorted(TINY))
def test_box_head_last_layer_is_initialised_as_the_official_code_of_each_detector(arch):
    """Catches: the shared base zeroing the box head of every detector (SMCA-DETR's is not zeroed
    officially), or a detector's config not passing its initialisation on. LazyConfig (the tiny config
    built from the detector's full-size model file) and the yacs registry path."""
    torch.manual_seed(0)
    cfg = _config(*TINY[arch])
    expected = ZERO_BOX_HEAD[arch]
    _assert_box_head_init(instantiate(cfg.model), expected)
    yacs = get_cfg()
    add_all_configs(yacs)
    _assert_box_head_init(build_model(tiny_synthetic_yacs(yacs, arch)), expected)


@pytest.mark.parametrize("project,model_file,value", [("conditional_detr", "conditional_detr_r50", "zeros"),
                                                      ("dab_detr", "dab_detr_r50", "zeros"),
                                                      ("smca_detr", "smca_detr_r50", "default")])
def test_full_size_model_files_spell_the_official_box_head_init(project, model_file, value):
    """Catches: a parity model file relying on the base default (silently changed by a later edit)."""
    cfg = LazyConfig.load(os.path.join(REPO, "projects", project, "configs", "models", f"{model_file}.py"))
    assert cfg.model.box_head_init == value


def test_box_head_init_can_be_overridden_and_a_bad_value_is_an_error_naming_it():
    """Catches: MODEL.DETR.BOX_HEAD_INIT ignored by the yacs path, or a typo silently taken as "default"."""
    torch.manual_seed(0)
    cfg = get_cfg()
    add_all_configs(cfg)
    tiny_synthetic_yacs(cfg, "SMCADETR")
    cfg.MODEL.DETR.BOX_HEAD_INIT = "zeros"
    _assert_box_head_init(build_model(cfg), True)
    cfg.MODEL.META_ARCHITECTURE = "ConditionalDETR"
    cfg.MODEL.DETR.BOX_HEAD_INIT = "default"
    _assert_box_head_init(build_model(cfg), False)
    lazy = _config(*TINY["ConditionalDETR"])
    lazy.model.box_head_init = "zero"
    with pytest.raises(ValueError, match="box_head_init.*'zero'"):
        instantiate(lazy.model)


# ------------------------------------------------------------------ sampler
def test_coco_train_loader_draws_plain_random_batches_without_aspect_ratio_grouping():
    """Catches: Detectron2's default aspect-ratio grouping (every batch all-landscape or all-portrait),
    which the official RandomSampler + BatchSampler loaders do not do. Runs the config's loader on 16
    in-memory records, alternately landscape and portrait."""
    cfg = LazyConfig.load(os.path.join(REPO, "configs", "common", "data", "coco_detr.py"))
    loader_cfg = cfg.dataloader.train
    assert loader_cfg.aspect_ratio_grouping is False
    records = [{"id": i, "width": 200 if i % 2 else 100, "height": 100 if i % 2 else 200} for i in range(16)]
    loader_cfg.dataset = records
    loader_cfg.mapper = None
    loader_cfg.total_batch_size = 4
    loader_cfg.num_workers = 0
    np.random.seed(0)  # TrainingSampler's seed (comm.shared_random_seed draws it from numpy)
    loader = instantiate(loader_cfg)
    mixed = 0
    for step, batch in enumerate(loader):
        assert len(batch) == 4
        mixed += len({r["width"] > r["height"] for r in batch}) == 2
        if step == 19:
            break
    # a random batch of 4 from 8 + 8 is all one orientation with probability 2 * C(8,4) / C(16,4) = 0.077
    assert mixed >= 10


def test_yacs_defaults_use_the_official_sampler_and_keep_images_without_annotations():
    """Catches: the registry path left at Detectron2's aspect-ratio grouping / empty-image filtering."""
    cfg = add_detr_config(get_cfg())
    assert cfg.DATALOADER.ASPECT_RATIO_GROUPING is False
    assert cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS is False
    assert cfg.DATALOADER.SAMPLER_TRAIN == "TrainingSampler"


# ------------------------------------------------------------------ inference clipping
def _model_with_fixed_predictions(monkeypatch, boxes):
    torch.manual_seed(0)
    model = instantiate(_config(*TINY["ConditionalDETR"]).model).eval()
    q, k = model.query_init.num_queries, model.num_classes
    logits = torch.full((1, q, k), -10.0)
    pred = torch.full((1, q, 4), 0.5)
    for i, box in enumerate(boxes):
        logits[0, i, 0] = 5.0 - i
        pred[0, i] = torch.tensor(box)

    def fake_outputs(batched_inputs, targets=None):
        images, _ = model.preprocess_image(batched_inputs)
        return {"pred_logits": logits, "pred_boxes": pred}, images, None

    monkeypatch.setattr(model, "forward_outputs", fake_outputs)
    model.num_select = len(boxes)
    return model


def test_box_outside_the_image_stays_outside_without_clipping_and_is_clipped_with_it(monkeypatch):
    """Catches: clip_boxes ignored (Detectron2's detector_postprocess always clips and drops the boxes
    left empty; the official PostProcess keeps every top-k box as predicted), or the unclipped rescale
    to the output size done wrong. Input 100 x 200 (h x w), output (original image) 50 x 100."""
    # normalised cxcywh: one box reaching past the right edge, one wholly right of the image
    model = _model_with_fixed_predictions(monkeypatch, [[0.95, 0.5, 0.3, 0.2], [1.3, 0.5, 0.2, 0.2]])
    inputs = [{"image": torch.zeros(3, 100, 200, dtype=torch.uint8), "height": 50, "width": 100}]
    model.clip_boxes = False
    out = model(inputs)[0]["instances"]
    assert len(out) == 2 and out.image_size == (50, 100)
    expected = torch.tensor([[0.80 * 100, 0.4 * 50, 1.10 * 100, 0.6 * 50], [1.2 * 100, 0.4 * 50, 1.4 * 100, 0.6 * 50]])
    assert torch.allclose(out.pred_boxes.tensor, expected, atol=1e-3)
    model.clip_boxes = True
    out = model(inputs)[0]["instances"]
    assert len(out) == 1  # the box wholly outside is empty after clipping: dropped, as Detectron2 does
    assert torch.allclose(out.pred_boxes.tensor[0], torch.tensor([80.0, 20.0, 100.0, 30.0]), atol=1e-3)


def test_rescale_without_clipping_scales_x_and_y_separately_and_keeps_the_other_fields():
    """Catches: x and y scale factors swapped (only visible with a non-uniform resize) or scores and
    classes lost in the rescale."""
    from detectron2.structures import Boxes, Instances

    res = Instances((100, 200))
    res.pred_boxes = Boxes(torch.tensor([[-10.0, 20.0, 220.0, 110.0]]))
    res.scores = torch.tensor([0.75])
    res.pred_classes = torch.tensor([3])
    out = rescale_detections(res, 300, 100)
    assert out.image_size == (300, 100)
    assert torch.allclose(out.pred_boxes.tensor, torch.tensor([[-5.0, 60.0, 110.0, 330.0]]))
    assert out.scores.tolist() == [0.75] and out.pred_classes.tolist() == [3]
    assert res.pred_boxes.tensor[0, 0] == -10.0  # the input is not scaled in place


PARITY_CONFIGS = [(p, n) for p, n in OFFICIAL_BATCH]


@pytest.mark.parametrize("project,name", PARITY_CONFIGS, ids=lambda x: x)
def test_parity_configs_do_not_clip_and_tiny_configs_do(project, name):
    """Catches: a full-size baseline config clipping (the official post-processing does not) or a tiny
    config losing the clipping its recorded results were measured with."""
    assert _config(project, name).model.clip_boxes is False
    tiny = _config(project, f"{project}_tiny_synthetic")
    assert tiny.model.clip_boxes is True


def test_sd_detr_keeps_the_baselines_unclipped_boxes_and_its_tiny_config_clips():
    """Catches: SD-DETR's full-size configs evaluated with a post-processing other than the baselines'
    it is compared with (projects/*/README.md "training recipe vs official")."""
    assert instantiate(_config("sd_detr", "sd_detr_tiny_synthetic").model).clip_boxes is True
    cfg = LazyConfig.load(os.path.join(REPO, "projects", "sd_detr", "configs", "sd_detr_r50_12ep.py"))
    assert cfg.model.get("clip_boxes", False) is False


def test_yacs_clip_boxes_key_reaches_the_model():
    """Catches: MODEL.DETR.CLIP_BOXES not passed on by the registry path (default: official, unclipped)."""
    cfg = get_cfg()
    add_detr_config(cfg)
    assert cfg.MODEL.DETR.CLIP_BOXES is None  # unset: the model file's official False
    tiny_synthetic_yacs(cfg, "ConditionalDETR")  # sets CLIP_BOXES like the tiny LazyConfig models
    assert build_model(cfg).clip_boxes is True
    cfg.MODEL.DETR.CLIP_BOXES = None
    assert build_model(cfg).clip_boxes is False
    cfg.MODEL.DETR.CLIP_BOXES = True
    assert build_model(cfg).clip_boxes is True


@pytest.mark.parametrize("project,yaml,init", [("conditional_detr", "conditional_detr_r50_12ep", "zeros"),
                                               ("dab_detr", "dab_detr_r50_12ep", "zeros"),
                                               ("dab_detr", "dab_detr_r50_50ep", "zeros"),
                                               ("smca_detr", "smca_detr_r50_12ep", "default")])
def test_baseline_yacs_configs_get_the_official_box_head_init_and_no_clipping(project, yaml, init):
    """Catches: a yacs .yaml of a baseline that drifts from its LazyConfig twin on these two keys."""
    from detectron2.modeling import META_ARCH_REGISTRY

    cfg = get_cfg()
    add_all_configs(cfg)
    cfg.merge_from_file(os.path.join(REPO, "projects", project, "configs", "yacs", f"{yaml}.yaml"))
    model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE).lazy_model_from_yacs(cfg)
    assert model.box_head_init == init and model.clip_boxes is False
