"""DAB-DETR as a whole: the full-size configs have the official parameter counts, the yacs registry path
builds the same model, the encoder scales the position embedding in every layer, and the reported
boxes are relative to the anchor each layer received."""
import pytest
import torch
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model

from sd_detr.config import add_dab_detr_config, add_detr_config
from sd_detr.layers import inverse_sigmoid
from sd_detr.modeling import DABDETR, TransformerEncoder

from ..utils import REPO, random_batch, shrink_model_config

CONFIGS = f"{REPO}/projects/dab_detr/configs"
# The official DAB-DETR-R50 has 43,671,517 parameters with its 91-way COCO head
# (../shared/OFFICIAL_NOTES.md; detrex's 80-class port has 43,668,690). DC5 only changes dilation;
# 3 patterns add a 3 x 256 embedding.
DAB_DETR_PARAMS = {80: 43_668_690, 91: 43_671_517}


def _num_params(model):
    return sum(p.numel() for p in model.parameters())


def _build(name, num_classes=80):
    cfg = LazyConfig.load(f"{CONFIGS}/{name}.py")
    cfg.model.num_classes = num_classes
    return instantiate(cfg.model)


@pytest.mark.parametrize("name,stride", [("dab_detr_r50_12ep", 32), ("dab_detr_r50_dc5_50ep", 16)])
@pytest.mark.parametrize("num_classes", [80, 91])
def test_full_size_dab_detr_parameter_count_equals_official(name, stride, num_classes):
    model = _build(name, num_classes)
    assert _num_params(model) == DAB_DETR_PARAMS[num_classes]
    assert model.feature_stride == stride
    assert model.query_init.num_queries == 300 and len(model.decoder.layers) == 6 and len(model.encoder.layers) == 6


@pytest.mark.parametrize("name", ["dab_detr_r50_3patterns_50ep", "dab_detr_r50_dc5_3patterns_50ep"])
def test_3_pattern_variants_add_only_the_pattern_embedding(name):
    model = _build(name)
    assert _num_params(model) == DAB_DETR_PARAMS[80] + 3 * 256
    assert model.query_init.patterns.weight.shape == (3, 256)


def test_yacs_config_builds_the_lazyconfig_model_through_the_registry():
    cfg = get_cfg()
    add_dab_detr_config(cfg)
    cfg.merge_from_file(f"{CONFIGS}/yacs/dab_detr_r50_50ep.yaml")
    cfg.MODEL.DEVICE = "cpu"
    from_yacs = build_model(cfg)
    lazy = _build("dab_detr_r50_50ep")
    assert type(from_yacs) is type(lazy)
    assert {k: v.shape for k, v in from_yacs.state_dict().items()} == {k: v.shape for k, v in lazy.state_dict().items()}
    assert from_yacs.num_select == lazy.num_select == 300 and from_yacs.reference_eps == lazy.reference_eps == 1e-3
    assert from_yacs.decoder.anchor_eps == lazy.decoder.anchor_eps == 1e-3
    assert from_yacs.criterion.weight_dict == lazy.criterion.weight_dict
    assert from_yacs.position_embedding.temperature_h == lazy.position_embedding.temperature_h == 20
    assert from_yacs.position_embedding.temperature_w == lazy.position_embedding.temperature_w == 20
    assert from_yacs.decoder.query_temperature == lazy.decoder.query_temperature == 10000
    assert isinstance(from_yacs.decoder.layers[0].ffn.activation, torch.nn.PReLU)
    assert from_yacs.encoder.layers[0].ffn.dropout.p == lazy.encoder.layers[0].ffn.dropout.p == 0.0


def test_yacs_dab_keys_leave_the_shared_detr_defaults_alone():
    cfg = get_cfg()
    add_dab_detr_config(cfg)
    reference = get_cfg()
    add_detr_config(reference)
    assert cfg.MODEL.DETR == reference.MODEL.DETR  # other detectors' yaml files keep their defaults
    # unset DAB keys take the model file's values
    assert cfg.MODEL.DAB_DETR.NUM_PATTERNS is None and cfg.MODEL.DAB_DETR.PE_TEMPERATURE_H is None
    model = DABDETR.lazy_model_from_yacs(cfg)
    assert model.query_init.num_patterns == 0 and model.position_embedding.temperature_h == 20


def test_encoder_scales_the_position_embedding_by_content_in_every_layer_including_the_first():
    # official TransformerEncoder (transformer.py:150-156): pos * query_scale(output) before each layer
    torch.manual_seed(0)
    enc = TransformerEncoder(num_layers=2, d_model=8, nhead=2, dim_feedforward=16, dropout=0.0,
                             activation="prelu", scale_pos_by_content=True).eval()
    seen = []
    for layer in enc.layers:
        layer.register_forward_pre_hook(lambda mod, args: seen.append((args[0], args[1])))
    src, pos = torch.randn(1, 5, 8), torch.randn(1, 5, 8)
    enc(src, pos)
    for x, layer_pos in seen:
        assert torch.allclose(layer_pos, pos * enc.query_scale(x))
    assert isinstance(enc.layers[0].ffn.activation, torch.nn.PReLU)
    assert enc.layers[0].ffn.activation is not enc.layers[1].ffn.activation  # one slope per layer


def test_reported_boxes_are_the_box_head_on_the_normed_output_plus_the_received_anchor():
    torch.manual_seed(0)
    cfg = LazyConfig.load(f"{CONFIGS}/dab_detr_r50_12ep.py")
    model = instantiate(shrink_model_config(cfg.model)).eval()
    with torch.no_grad():
        for p in model.bbox_embed.parameters():
            p.normal_(0, 0.1)  # the last layer starts at zero: make the offsets non-trivial
        # post-norm layers end with a LayerNorm, so the final norm is ~identity at its initialisation
        model.decoder.norm.weight.normal_(1, 0.5)
        model.decoder.norm.bias.normal_(0, 0.5)
        raw = []  # each decoder layer's output before the final norm
        for layer in model.decoder.layers:
            layer.register_forward_hook(lambda mod, args, out: raw.append(out))
        outputs, _, dec = model.forward_outputs(random_batch(80, with_instances=False))
    boxes = torch.stack([a["pred_boxes"] for a in outputs["aux_outputs"]] + [outputs["pred_boxes"]])
    expected = (model.bbox_embed(dec.hidden) + inverse_sigmoid(dec.references, 1e-3)).sigmoid()
    assert torch.allclose(boxes, expected, atol=1e-6)
    # the anchor a layer received: the previous anchor refined by the box head on the previous layer's
    # output before the final norm (official transformer.py:259), not the previous reported box
    refined = (model.bbox_embed(torch.stack(raw[:-1])) + inverse_sigmoid(dec.references[:-1], 1e-3)).sigmoid()
    assert torch.allclose(dec.references[1:], refined, atol=1e-6)
    assert not torch.allclose(dec.references[1:], boxes[:-1], atol=1e-3)
    assert dec.references.shape[:3] == boxes.shape[:3] == (2, 2, 10)
