"""OnnxPredictor on a fixed-size export: an image of another size is resized, and it says so once."""
import logging

import numpy as np
import pytest

from sd_detr.export import predictor as predictor_module


def _metadata(dynamic):
    return {"class_names": ["a"], "format": "onnx", "clip_boxes": False,
            "input": {"channel_order": "RGB", "shape": [3, 32, 48], "dynamic_height_width": dynamic},
            "test_resize": {"short_edge_length": [32], "max_size": 64}}


@pytest.fixture
def fake_export(monkeypatch):
    """A predictor without a file: the metadata given, a runner that records the input it gets and
    returns one box covering the whole input (x0, y0, x1, y1)."""
    seen = []

    def make(dynamic):
        monkeypatch.setattr(predictor_module, "load_metadata", lambda path: _metadata(dynamic))

        def runner(path, num_threads=0):
            def run(image):
                seen.append(image.shape)
                h, w = image.shape[1:]
                return (np.array([[0, 0, w, h]], np.float32), np.array([0.9], np.float32), np.array([0]))
            return run

        monkeypatch.setattr(predictor_module, "onnx_runner", runner)
        return predictor_module.OnnxPredictor("fixed.onnx")

    return make, seen


def test_fixed_size_export_resizes_another_size_and_warns_once(fake_export, caplog):
    """Catches the silent stretch of issue 22: a fixed-size file given an image of another size must
    say that it resizes it (aspect ratio not kept), once per predictor, not per image, and not for an
    image of the exported size; the box must still come back in the original image's pixels."""
    make, seen = fake_export
    predictor = make(dynamic=False)
    with caplog.at_level(logging.WARNING, logger=predictor_module.__name__):
        predictor(np.zeros((32, 48, 3), np.uint8))  # the exported size: nothing to say
        assert not caplog.records
        out = predictor(np.zeros((60, 40, 3), np.uint8))
        predictor(np.zeros((70, 50, 3), np.uint8))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "fixed.onnx" in warnings[0] and "32x48" in warnings[0] and "60x40" in warnings[0]
    assert "resized" in warnings[0] and "--dynamic" in warnings[0]
    assert seen == [(3, 32, 48)] * 3  # every image went in at the exported size
    np.testing.assert_allclose(out["instances"].pred_boxes.tensor.numpy(), [[0, 0, 40, 60]])


def test_dynamic_export_does_not_warn(fake_export, caplog):
    """Catches the warning shown for dynamic-size files too (they resize as the config does)."""
    make, _ = fake_export
    with caplog.at_level(logging.WARNING, logger=predictor_module.__name__):
        make(dynamic=True)(np.zeros((60, 40, 3), np.uint8))
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
