"""Golden outputs of the official code: each fixture of ``tests/checkpoint/golden`` holds the raw
outputs of an official model (Conditional DETR, Conditional DETR-DC5, DAB-DETR, SMCA-DETR single scale)
run by ``golden/make_golden.py`` on a padded batch of two images, and the recipe of the exact official
state dict it ran with. The state dict is rebuilt, converted by the real ``tools/convert_checkpoint.py``,
loaded strictly into the project's full-size LazyConfig (shrunk to the fixture's layers / FFN / queries
/ classes), and the project's per-layer logits and boxes must equal the official ones to 1e-4.

The official code is not needed here (see golden/README.md)."""
import json
import os

import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from sd_detr.checkpoint import DETRCheckpointer, coco_91_to_80_indices

from ..utils import REPO
from .golden.recipe import rebuild_official_state_dict

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
ATOL = 1e-4

# fixture -> (converter source, full-size config, official class-head size)
CASES = {
    "conditional_detr": ("conditional_detr", "projects/conditional_detr/configs/conditional_detr_r50_50ep.py", 91),
    "conditional_detr_dc5": ("conditional_detr", "projects/conditional_detr/configs/conditional_detr_r50_dc5_50ep.py", 91),
    "dab_detr": ("dab_detr", "projects/dab_detr/configs/dab_detr_r50_50ep.py", 91),
    "smca_detr": ("smca_detr", "projects/smca_detr/configs/smca_detr_r50_50ep.py", 92),
}


def load_fixture(name):
    path = os.path.join(GOLDEN, f"{name}.pt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: run tests/checkpoint/golden/make_golden.py (see golden/README.md)")
    return torch.load(path, map_location="cpu", weights_only=True)


def convert_with_tool(tmp_path, source, official, num_classes):
    """Write the official state dict as the official repos save it ({'model': ...}) and convert it with
    tools/convert_checkpoint.py's library function (the file in, the file out). Returns the converted
    checkpoint's path."""
    from sd_detr.checkpoint.convert_file import convert_checkpoint_file

    src, dst = tmp_path / "official.pth", tmp_path / "converted.pth"
    torch.save({"model": official}, src)
    convert_checkpoint_file(source, str(src), str(dst), num_classes=num_classes)
    return dst


def build_project_model(config, fixture, num_classes):
    """The project's full-size config with the fixture's official sizes; the structure (backbone, DC5,
    temperatures, SMCA's beta) stays the config's own and is checked against the official arguments."""
    args = json.loads(fixture["official_args"])
    cfg = LazyConfig.load(os.path.join(REPO, config))
    m = cfg.model
    assert m.hidden_dim == args["hidden_dim"], "the fixtures run at the configs' width (the official code hard-codes 256)"
    assert bool(m.backbone.dc5) == bool(args["dilation"]), f"{config}: dc5={m.backbone.dc5}, official --dilation={args['dilation']}"
    assert list(m.pixel_mean) == list(fixture["pixel_mean"]) and list(m.pixel_std) == list(fixture["pixel_std"])
    if "smooth" in args:
        assert m.decoder.beta == args["smooth"]
    if "pe_temperatureH" in args:
        assert (m.position_embedding.temperature_h, m.position_embedding.temperature_w) == (args["pe_temperatureH"], args["pe_temperatureW"])
    m.num_classes = num_classes
    m.encoder.update(num_layers=args["enc_layers"], nhead=args["nheads"], dim_feedforward=args["dim_feedforward"])
    m.decoder.update(num_layers=args["dec_layers"], nhead=args["nheads"], dim_feedforward=args["dim_feedforward"])
    m.query_init.num_queries = args["num_queries"]
    return instantiate(m).eval()


def project_outputs(model, images):
    """Per-layer raw outputs of the project model: ([L, B, Q, K] logits, [L, B, Q, 4] cxcywh boxes)."""
    batch = [{"image": img, "height": img.shape[-2], "width": img.shape[-1]} for img in images]
    with torch.no_grad():
        out, _, _ = model.forward_outputs(batch)
    layers = out["aux_outputs"] + [out]
    return torch.stack([o["pred_logits"] for o in layers]), torch.stack([o["pred_boxes"] for o in layers])


def assert_equal_to_official(name, what, ours, theirs):
    assert ours.shape == theirs.shape, f"{name} {what}: shape {tuple(ours.shape)} != official {tuple(theirs.shape)}"
    diff = (ours - theirs).abs()
    per_layer = [f"{d:.2e}" for d in diff.flatten(1).max(1).values.tolist()]
    assert diff.max() <= ATOL, f"{name} {what}: max |ours - official| per decoder layer {per_layer} > {ATOL}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_converted_official_weights_give_the_official_logits_and_boxes(tmp_path, name):
    """Catches any numerical departure from the official model: e.g. Conditional DETR's query scale
    (lambda_q) or the first-layer-only ca_qpos_proj removed, DAB-DETR's width/height modulation or
    anchor refinement removed, SMCA's Gaussian map not added or its centre in the wrong units, the
    DC5 dilation of res5 block 0, the padding mask or the position embedding's normalisation wrong, or
    a converter rule sending an official tensor to the wrong module."""
    source, config, num_classes = CASES[name]
    fixture = load_fixture(name)
    official = rebuild_official_state_dict(fixture, name)
    converted = convert_with_tool(tmp_path, source, official, num_classes)
    model = build_project_model(config, fixture, num_classes)
    DETRCheckpointer(model, strict=True).load(str(converted))  # raises on a missing/unexpected/misshaped key
    logits, boxes = project_outputs(model, fixture["images"])
    assert_equal_to_official(name, "pred_logits", logits, fixture["pred_logits"])
    assert_equal_to_official(name, "pred_boxes", boxes, fixture["pred_boxes"])


def test_eighty_class_conversion_gives_the_official_logits_of_the_coco_classes(tmp_path):
    """The tool's default (--num-classes 80) keeps the official rows of the 80 COCO category ids.
    Catches a wrong row map (e.g. contiguous rows 0-79, or ids shifted by one) in the full path."""
    source, config, _ = CASES["conditional_detr"]
    fixture = load_fixture("conditional_detr")
    converted = convert_with_tool(tmp_path, source, rebuild_official_state_dict(fixture), 80)
    model = build_project_model(config, fixture, 80)
    DETRCheckpointer(model, strict=True).load(str(converted))
    logits, boxes = project_outputs(model, fixture["images"])
    assert_equal_to_official("conditional_detr (80 classes)", "pred_logits", logits,
                             fixture["pred_logits"][..., coco_91_to_80_indices()])
    assert_equal_to_official("conditional_detr (80 classes)", "pred_boxes", boxes, fixture["pred_boxes"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_outputs_depend_on_the_image_and_the_layer(name):
    """A fixture whose outputs barely depended on the image (features drowned by the weights' scale) or
    on the layer would let a broken encoder or decoder layer pass at 1e-4: each image's and each
    layer's outputs must differ from the other's by far more than the tolerance, boxes must not be
    saturated at 0 or 1, and the fixture's recipe must rebuild its digests."""
    fixture = load_fixture(name)
    rebuild_official_state_dict(fixture, name)  # raises naming the key if the recipe drifted
    logits, boxes = fixture["pred_logits"], fixture["pred_boxes"]
    assert logits.shape[:3] == boxes.shape[:3] and logits.shape[0] >= 2 and logits.shape[1] == 2
    assert (logits[:, 0] - logits[:, 1]).abs().max() > 100 * ATOL
    assert (boxes[:, 0] - boxes[:, 1]).abs().max() > 100 * ATOL
    assert (logits[0] - logits[-1]).abs().max() > 100 * ATOL
    assert 0.01 < boxes.min() and boxes.max() < 0.99
    sizes = [tuple(img.shape[-2:]) for img in fixture["images"]]
    assert sizes[0][0] != sizes[1][0] and sizes[0][1] != sizes[1][1], "both images padded: the mask matters"
