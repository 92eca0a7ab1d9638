"""tools/export_model.py's library (sd_detr.export.from_config) end to end, its errors, OnnxPredictor against the
eager predictor, torch.compile."""
import json
import os

import numpy as np
import pytest
import torch

from sd_detr.checkpoint import DETRCheckpointer
from sd_detr.export import (ExportableDetector, ExportError, OnnxPredictor, build_metadata, compare_detections,
                            export_onnx)
from sd_detr.export.from_config import check_export_options, export_from_config

from .helpers import build, config_path, image

pytestmark = pytest.mark.slow  # exports and torch.compile (about 15 s)


def _checkpoint(name, tmp_path):
    cfg, model = build(name)
    DETRCheckpointer(model, save_dir=str(tmp_path)).save(f"{name}_weights")
    return cfg, model, str(tmp_path / f"{name}_weights.pth")


def test_tool_writes_onnx_with_metadata_and_the_predictor_matches_the_eager_predictor(tmp_path):
    """Catches: metadata missing from the file or the side JSON (class names, mean/std, input size), a
    checkpoint not loaded (the predictor would disagree with LazyPredictor on the trained weights), and a
    predictor that resizes or rescales boxes unlike the eager one."""
    import onnx

    from sd_detr.engine import LazyPredictor

    cfg, model, ckpt = _checkpoint("conditional_detr", tmp_path)
    out = tmp_path / "export"
    path = export_from_config(config_path("conditional_detr"), str(out), "onnx", checkpoint=ckpt, size=(128, 160),
                              dynamic=True)
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(props["class_names"]) == ["ellipse", "rectangle", "triangle", "cross", "ring"]
    assert json.loads(props["pixel_mean"]) == pytest.approx([123.675, 116.28, 103.53])
    assert json.loads(props["input_shape"]) == [3, 128, 160]
    side = json.loads((out / "model.onnx.json").read_text())
    assert side == json.loads(props["sd_detr"]) and side["input"]["dynamic_height_width"] is True
    assert side["test_resize"]["short_edge_length"] == [160, 160] and side["opset"] >= 17
    assert onnx.load(path).opset_import[0].version >= 17

    bgr = np.ascontiguousarray(image((150, 130, 3), seed=3).numpy())  # another size and aspect ratio
    onnx_inst = OnnxPredictor(path)(bgr)["instances"]
    eager = LazyPredictor(cfg, checkpoint=ckpt)
    eager_inst = eager(bgr)["instances"]
    assert len(onnx_inst) == len(eager_inst) > 0
    ok, msg = compare_detections((eager_inst.pred_boxes.tensor, eager_inst.scores, eager_inst.pred_classes),
                                 (onnx_inst.pred_boxes.tensor, onnx_inst.scores, onnx_inst.pred_classes))
    assert ok, msg


def test_tool_torchscript_export_carries_metadata(tmp_path):
    """Catches: a TorchScript file without its metadata, or one that does not load with torch.jit.load."""
    from sd_detr.export import load_metadata

    _, model, ckpt = _checkpoint("smca_detr", tmp_path)
    path = export_from_config(config_path("smca_detr"), str(tmp_path / "ts"), "torchscript", checkpoint=ckpt,
                              size=(128, 128))
    os.remove(path + ".json")  # the metadata inside the file alone
    meta = load_metadata(path)
    assert meta["detector"] == "SMCADETR" and meta["input"]["shape"] == [3, 128, 128]
    boxes, scores, labels = torch.jit.load(path)(image((3, 128, 128)))
    assert boxes.shape == (model.num_select, 4) and labels.dtype == torch.int64


def test_tool_refuses_a_checkpoint_of_another_detector_naming_both(tmp_path):
    """Catches: a non-strict load that would export random weights for the missing keys."""
    _, _, ckpt = _checkpoint("dab_detr", tmp_path)
    with pytest.raises(ExportError, match=r"dab_detr_weights\.pth does not fit ConditionalDETR of .*conditional_detr_tiny"):
        export_from_config(config_path("conditional_detr"), str(tmp_path / "x"), "onnx", checkpoint=ckpt)
    assert not (tmp_path / "x" / "model.onnx").exists()


def test_tool_refuses_an_unsupported_format():
    """The check behind tools/export_model.py's usage error (its parse_args turns it into one)."""
    with pytest.raises(ValueError, match="--format 'tflite' is not supported; choose one of onnx, torchscript"):
        check_export_options("tflite")


class _Eigen(torch.nn.Module):
    """An input projection that calls an operator without ONNX conversion (its output is unchanged)."""

    def __init__(self, proj):
        super().__init__()
        self.proj = proj

    def forward(self, x):
        y = self.proj(x)
        return y + 0.0 * torch.linalg.eigvalsh(y[0, :2, :2, :2] @ y[0, :2, :2, :2].transpose(-1, -2)).sum()


def test_an_operator_without_onnx_conversion_is_named_with_its_module(tmp_path):
    """Catches: the exporter's bare error (no detector, no module) reaching the user."""
    _, model = build("conditional_detr")
    model.input_proj = _Eigen(model.input_proj)
    wrapper = ExportableDetector(model)
    meta = build_metadata(model, fmt="onnx", input_shape=(3, 64, 64), dynamic=False)
    with pytest.raises(ExportError) as err:
        export_onnx(wrapper, image((3, 64, 64)), str(tmp_path / "m.onnx"), meta, config_file="my_config.py")
    msg = str(err.value)
    assert "ConditionalDETR (config my_config.py)" in msg and "aten::linalg_eigvalsh" in msg
    assert "used by module(s) input_proj" in msg


def test_compare_detections_tolerates_tied_scores_only_when_asked():
    """Catches: a tie-aware comparison that accepts different labels or boxes."""
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 2, 2]], dtype=np.float32)
    scores = np.array([0.5, 0.5, 0.1], dtype=np.float32)
    labels = np.array([1, 2, 3])
    swapped = (boxes[[1, 0, 2]], scores[[1, 0, 2]], labels[[1, 0, 2]])
    assert not compare_detections((boxes, scores, labels), swapped)[0]
    assert compare_detections((boxes, scores, labels), swapped, allow_ties=True)[0]
    wrong = (boxes, scores, np.array([7, 2, 3]))
    assert not compare_detections((boxes, scores, labels), wrong, allow_ties=True)[0]
    moved = (boxes + np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0.5, 0]], dtype=np.float32), scores, labels)
    assert not compare_detections((boxes, scores, labels), moved)[0]


def test_torch_compile_inference_matches_eager():
    """torch.compile of the exported wrapper (the whole inference of a shrunk Conditional DETR-R50) equals eager.
    Backend "eager" (Dynamo's graph capture, run by PyTorch): inductor's C++ compilation of the graphs takes
    minutes on 2 cores (docs/export.md). Catches: a fast path (oneDNN linear, padded attention values) that
    Dynamo captures wrongly, or Python state baked into a graph."""
    torch._dynamo.reset()
    _, model = build("conditional_shrunk")  # one encoder and two decoder layers
    wrapper = ExportableDetector(model)
    compiled = torch.compile(wrapper, backend="eager")
    img = image((3, 96, 128), seed=2)
    with torch.no_grad():
        expected, actual = wrapper(img), compiled(img)
    ok, msg = compare_detections([t.numpy() for t in expected], [t.numpy() for t in actual], score_tol=1e-5, box_tol=1e-3)
    assert ok, msg
