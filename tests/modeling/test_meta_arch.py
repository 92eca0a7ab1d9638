import torch
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model

from sd_detr.config import add_detr_config
from sd_detr.modeling import ConditionalDETR

from ..utils import REPO, random_batch, shrink_model_config, tiny_synthetic_yacs

TINY = f"{REPO}/projects/conditional_detr/configs/conditional_detr_tiny_synthetic.py"


def _tiny_model():
    torch.manual_seed(0)
    return instantiate(LazyConfig.load(TINY).model)


def test_inference_keeps_topk_over_queries_times_classes_and_rescales_to_output_size(monkeypatch):
    model = _tiny_model().eval()
    q, k = model.query_init.num_queries, model.num_classes
    logits = torch.full((1, q, k), -10.0)
    logits[0, 3, 2] = 5.0  # best: query 3, class 2
    logits[0, 3, 4] = 4.0  # second: the same query, another class
    boxes = torch.full((1, q, 4), 0.5)
    boxes[0, 3] = torch.tensor([0.25, 0.5, 0.1, 0.2])  # cx, cy, w, h normalised

    def fake_outputs(batched_inputs, targets=None):
        images, _ = model.preprocess_image(batched_inputs)
        return {"pred_logits": logits, "pred_boxes": boxes}, images, None

    monkeypatch.setattr(model, "forward_outputs", fake_outputs)
    model.num_select = 5
    # input resized to 100 x 200 (h x w); the original image was 50 x 100
    out = model([{"image": torch.zeros(3, 100, 200, dtype=torch.uint8), "height": 50, "width": 100}])[0]["instances"]
    assert len(out) == 5 and out.image_size == (50, 100)
    assert out.pred_classes[:2].tolist() == [2, 4]
    assert torch.allclose(out.scores[0], torch.sigmoid(torch.tensor(5.0)))
    expected = torch.tensor([(0.25 - 0.05) * 100, (0.5 - 0.1) * 50, (0.25 + 0.05) * 100, (0.5 + 0.1) * 50])
    assert torch.allclose(out.pred_boxes.tensor[0], expected, atol=1e-4)
    assert torch.allclose(out.pred_boxes.tensor[1], expected, atol=1e-4)


def test_padding_mask_marks_only_the_padded_pixels():
    model = _tiny_model()
    images, mask = model.preprocess_image(random_batch(5, sizes=((40, 60), (50, 30)), with_instances=False))
    assert images.tensor.shape[-2:] == (50, 60)
    assert not mask[0, :40, :60].any() and mask[0, 40:].all()
    assert not mask[1, :50, :30].any() and mask[1, :, 30:].all()


def test_targets_are_normalised_cxcywh_of_the_augmented_image():
    model = _tiny_model()
    batch = random_batch(5)
    t = model.prepare_targets(batch)[0]
    inst = batch[0]["instances"]
    h, w = inst.image_size
    x0, y0, x1, y1 = inst.gt_boxes.tensor[0].tolist()
    assert torch.allclose(t["boxes"][0], torch.tensor([(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h]))
    assert torch.equal(t["labels"], inst.gt_classes)


def test_training_forward_returns_weighted_losses_for_every_decoder_layer_and_backpropagates():
    model = _tiny_model().train()
    losses = model(random_batch(5))
    layers = len(model.decoder.layers)
    expected = {"loss_class", "loss_bbox", "loss_giou"}
    expected |= {f"{k}_{i}" for k in ("loss_class", "loss_bbox", "loss_giou") for i in range(layers - 1)}
    assert set(losses) == expected
    sum(losses.values()).backward()
    assert model.class_embed.weight.grad.abs().sum() > 0
    assert model.decoder.ref_point_head.layers[0].weight.grad.abs().sum() > 0
    assert model.backbone.stem.conv1.weight.grad.abs().sum() > 0


def test_build_model_from_yacs_config_matches_the_lazy_config_model():
    cfg = get_cfg()
    add_detr_config(cfg)
    yacs_model = build_model(tiny_synthetic_yacs(cfg, "ConditionalDETR"))
    lazy_cfg = LazyConfig.load(TINY)
    lazy_model = instantiate(lazy_cfg.model)
    assert isinstance(yacs_model, ConditionalDETR)
    assert {k: v.shape for k, v in yacs_model.state_dict().items()} == {k: v.shape for k, v in lazy_model.state_dict().items()}
    yacs_model.eval()
    out = yacs_model(random_batch(5, with_instances=False))
    assert len(out) == 2 and len(out[0]["instances"]) == lazy_model.num_select == 50


def test_shrunk_full_size_config_runs_forward_backward():
    cfg = LazyConfig.load(f"{REPO}/projects/conditional_detr/configs/conditional_detr_r50_dc5_12ep.py")
    model = instantiate(shrink_model_config(cfg.model)).train()
    sum(model(random_batch(80)).values()).backward()
    assert model.backbone.output_shape()["res5"].stride == 16
