"""The SD-DETR detector: heads read their own branch, losses of every part, the yacs registry path, the
ablation configs' structure and the full-size parameter counts."""
import pytest
import torch
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model

from sd_detr.config import add_sd_detr_config
from sd_detr.layers import inverse_sigmoid
from sd_detr.modeling import SDDETR, FocalLoss, TaskAlignmentLoss

from ..utils import REPO, random_batch, tiny_synthetic_yacs

CONFIGS = f"{REPO}/projects/sd_detr/configs"
TINY = f"{CONFIGS}/sd_detr_tiny_synthetic.py"


def _tiny(path=TINY):
    torch.manual_seed(0)
    return instantiate(LazyConfig.load(path).model)


def test_class_head_reads_the_classification_branch_and_box_head_the_localisation_branch():
    model = _tiny().eval()
    with torch.no_grad():
        outputs, _, dec = model.forward_outputs(random_batch(5, sizes=((96, 128),), with_instances=False))
    assert torch.allclose(outputs["pred_logits"], model.class_embed(dec.hidden[-1]))
    boxes = (model.bbox_embed(dec.box_hidden[-1]) + inverse_sigmoid(dec.references[-1])).sigmoid()
    assert torch.allclose(outputs["pred_boxes"], boxes)
    assert dec.references.shape[-1] == 4  # boxes are relative to the anchor boxes


def test_training_losses_cover_every_decoder_layer_and_the_mini_detector_and_reach_every_part():
    model = _tiny().train()
    losses = model(random_batch(5, sizes=((96, 128), (128, 96))))
    names = ("loss_class", "loss_bbox", "loss_giou")
    expected = set(names) | {f"{k}_{i}" for k in names for i in range(2)} | {f"{k}_mini_detector" for k in names}
    assert set(losses) == expected
    sum(losses.values()).backward()
    taq = model.query_init.task_aware
    for param in (model.query_init.mini_detector.class_head.weight, taq.point_heads["cls"].mlp.layers[-1].weight,
                  taq.point_heads["loc"].mlp.layers[-1].weight, model.decoder.layers[0].cross_attn[0].v_proj.weight,
                  model.decoder.layers[0].cross_attn[1].v_proj.weight, model.backbone.stem.conv1.weight):
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_mini_detector_loss_is_weighted_by_its_extra_stage_weight():
    model = _tiny().train()
    batch = random_batch(5, sizes=((96, 128), (128, 96)))
    torch.manual_seed(1)
    base = model(batch)
    model.criterion.extra_stage_weights["mini_detector"] *= 3
    torch.manual_seed(1)
    tripled = model(batch)
    assert torch.isclose(tripled["loss_giou_mini_detector"], 3 * base["loss_giou_mini_detector"])
    assert torch.isclose(tripled["loss_giou"], base["loss_giou"])


ROWS = {
    # config: (decoder layout, task-aware queries, task-alignment loss)
    "sd_detr_tiny_synthetic.py": ("split_cross_attention", True, True),
    "ablations/table2_taq_tiny_synthetic.py": ("split_cross_attention", True, False),
    "ablations/table2_dfl_tiny_synthetic.py": ("split_cross_attention", False, False),
    "ablations/table2_baseline_tiny_synthetic.py": ("shared", False, False),
    "ablations/table3_split_decoder_tiny_synthetic.py": ("split_decoder", False, False),
}


def _yacs_cfg(decoder, taq, tal, width="model"):
    cfg = get_cfg()
    add_sd_detr_config(cfg)
    tiny_synthetic_yacs(cfg, "SDDETR")
    s = cfg.MODEL.SD_DETR
    s.DECODER, s.TASK_AWARE_QUERIES, s.TASK_ALIGNMENT_LOSS = decoder, taq, tal
    s.NUM_REPEATS = 2 if tal else 1
    s.SELF_ATTN_WIDTH = width
    return cfg


@pytest.mark.parametrize("config", sorted(ROWS), ids=lambda c: c.split("/")[-1])
def test_ablation_configs_have_their_rows_parts_and_the_yacs_path_builds_the_same_model(config):
    decoder, taq, tal = ROWS[config]
    lazy = _tiny(f"{CONFIGS}/{config}")
    assert (lazy.query_init.task_aware is not None) == taq
    assert isinstance(lazy.criterion.class_loss, TaskAlignmentLoss if tal else FocalLoss)
    assert lazy.criterion.assigner.num_repeats == (2 if tal else 1)
    assert lazy.criterion.assigner.repeats_for(2, 3) == 1  # never in the last layer
    branches = ("shared",) if decoder == "shared" else ("cls", "loc")
    assert lazy.decoder.branches == branches and lazy.query_init.branches == branches
    assert lazy.decoder.layers[0].shared_self_attn == (decoder != "split_decoder")
    yacs = build_model(_yacs_cfg(decoder, taq, tal))
    assert isinstance(yacs, SDDETR)
    assert {k: v.shape for k, v in yacs.state_dict().items()} == {k: v.shape for k, v in lazy.state_dict().items()}
    assert type(yacs.criterion.class_loss) is type(lazy.criterion.class_loss)
    assert yacs.criterion.assigner.repeats_for(0, 3) == lazy.criterion.assigner.repeats_for(0, 3)
    assert yacs.criterion.extra_stage_weights == lazy.criterion.extra_stage_weights == {"mini_detector": 0.1}


@pytest.mark.parametrize("width", ["model", "full"])
def test_yacs_self_attention_width_key_builds_the_lazyconfig_models_self_attention(width):
    """Catches MODEL.SD_DETR.SELF_ATTN_WIDTH not reaching the decoder (the yacs model would keep the
    default width while the LazyConfig one changes)."""
    cfg = LazyConfig.load(TINY)
    cfg.model.decoder.self_attn_width = width
    torch.manual_seed(0)
    lazy = instantiate(cfg.model)
    yacs = build_model(_yacs_cfg("split_cross_attention", True, True, width))
    c = lazy.decoder.d_model
    assert lazy.decoder.layers[0].self_attn[0].attn_dim == yacs.decoder.layers[0].self_attn[0].attn_dim
    assert yacs.decoder.layers[0].self_attn[0].attn_dim == (c if width == "model" else 2 * c)
    assert {k: v.shape for k, v in yacs.state_dict().items()} == {k: v.shape for k, v in lazy.state_dict().items()}


def test_yacs_rejects_an_unknown_self_attention_width_naming_the_key():
    with pytest.raises(ValueError, match="MODEL.SD_DETR.SELF_ATTN_WIDTH"):
        build_model(_yacs_cfg("split_cross_attention", True, True, "half"))


def _num_params(module):
    return sum(p.numel() for p in module.parameters())


def _linear(i, o):
    return i * o + o


def _decoder_layer_params(c, f, branches, shared_self_attn, width="model"):
    """Parameters of one decoder layer from the paper's description (Conditional DETR attention: 6 linear
    maps per attention; LayerNorm: 2 per channel; FFN: 2 linear maps and its norm). The shared
    self-attention reads and writes branches x C channels and attends in C ("model": 5 projections
    in -> C, output C -> in) or in all of them ("full")."""
    attn = lambda w: 6 * _linear(w, w)  # noqa: E731
    ffn = _linear(c, f) + _linear(f, c) + 2 * c
    per_branch = attn(c) + 2 * c + ffn  # cross-attention, its norm, FFN
    if shared_self_attn:
        w = branches * c
        self_attn = (attn(w) if width == "full" else 5 * _linear(w, c) + _linear(c, w)) + 2 * w
    else:
        self_attn = branches * (attn(c) + 2 * c)
    return self_attn + branches * per_branch


@pytest.fixture(scope="module")
def conditional_r50():
    return instantiate(LazyConfig.load(f"{REPO}/projects/conditional_detr/configs/conditional_detr_r50_50ep.py").model)


@pytest.mark.parametrize("config,branches,shared,width", [
    ("sd_detr_r50_50ep.py", 2, True, "model"), ("sd_detr_r50_50ep.py", 2, True, "full"),
    ("ablations/table2_baseline.py", 1, True, "model"), ("ablations/table3_split_decoder.py", 2, False, "model"),
    ("sd_detr_r50_dc5_12ep.py", 2, True, "model"),
])
@pytest.mark.slow  # full-size models built and counted
def test_full_size_parameter_counts(config, branches, shared, width, conditional_r50):
    """Catches a decoder whose widths differ from the description, e.g. the shared self-attention not
    at the configured width, or the LayerNorm after it not at 2C."""
    cfg = LazyConfig.load(f"{CONFIGS}/{config}")
    assert cfg.model.decoder.self_attn_width == "model"  # the default of every full-size row
    cfg.model.decoder.self_attn_width = width
    model = instantiate(cfg.model)
    c, f, layers = 256, 2048, 6
    decoder = layers * _decoder_layer_params(c, f, branches, shared, width) + branches * (2 * _linear(c, c) + 2 * c)
    assert _num_params(model.decoder) == decoder
    assert model.query_init.num_queries == 300 and len(model.encoder.layers) == 6
    # everything but the query initialiser and the decoder is Conditional DETR-R50's
    conditional = conditional_r50
    shared_parts = _num_params(model) - _num_params(model.query_init) - _num_params(model.decoder)
    assert shared_parts == _num_params(conditional) - _num_params(conditional.query_init) - _num_params(conditional.decoder)
    # the mini-detector: 2 towers of 4 bias-free 3x3 convs + GroupNorm, a class head, a 3-layer box MLP
    mini = 2 * 4 * (9 * c * c + 2 * c) + _linear(c, 80) + 2 * _linear(c, c) + _linear(c, 4)
    assert _num_params(model.query_init.mini_detector) == mini


@pytest.mark.slow  # full-size models built and counted
def test_full_size_task_aware_query_generator_parameter_count():
    model = instantiate(LazyConfig.load(f"{CONFIGS}/sd_detr_r50_50ep.py").model)
    c, m, roi = 256, 8, 7
    per_branch = (_linear(c, c // 4) + _linear(c // 4 * roi * roi, c) + _linear(c, c) + _linear(c, 2 * m)
                  + _linear(c, c) + 2 * c)  # 1x1 conv, 3-layer point MLP, content projection, its norm
    assert model.query_init.task_aware.num_points == m
    assert _num_params(model.query_init.task_aware) == 2 * per_branch


@pytest.mark.slow  # full-size models built and counted
def test_fvcore_counts_every_learned_op_of_the_eval_forward():
    from sd_detr.utils.flops import flop_count_analysis

    from ..utils import shrink_model_config

    torch.manual_seed(0)
    model = instantiate(shrink_model_config(LazyConfig.load(f"{CONFIGS}/sd_detr_r50_50ep.py").model)).eval()
    image = torch.randint(0, 256, (3, 128, 192), dtype=torch.uint8)
    with torch.no_grad():
        analysis = flop_count_analysis(model, image)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        by_module = analysis.by_module()
        unsupported = set(analysis.unsupported_ops())
    for part in ("detector.query_init.mini_detector", "detector.query_init.task_aware", "detector.decoder"):
        assert by_module[part] > 0
    learned = {"aten::linear", "aten::matmul", "aten::bmm", "aten::addmm", "aten::_convolution", "aten::einsum",
               "aten::scaled_dot_product_attention", "aten::group_norm", "aten::layer_norm"}
    assert not unsupported & learned, unsupported
