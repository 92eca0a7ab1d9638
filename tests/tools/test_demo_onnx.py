"""tools/demo.py --onnx: an exported model draws the picture the eager model draws from the same weights."""
import importlib.util
import os

import cv2
import numpy as np
import pytest

from sd_detr.checkpoint import DETRCheckpointer

from ..export.helpers import build, config_path, image
from ..utils import REPO

pytestmark = pytest.mark.slow  # an ONNX export


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_with_an_onnx_export_draws_the_eager_picture(tmp_path):
    """Catches: --onnx ignored or drawing with other class names, the exported predictor resizing or
    rescaling boxes unlike the eager one (the pictures would differ)."""
    pytest.importorskip("onnxruntime")
    _, model = build("conditional_detr")
    DETRCheckpointer(model, save_dir=str(tmp_path)).save("weights")
    ckpt = str(tmp_path / "weights.pth")
    export = _load_tool("export_model")
    onnx_path = export.export(export.parse_args(["--config-file", config_path("conditional_detr"), "--checkpoint", ckpt,
                                                 "--format", "onnx", "--output", str(tmp_path / "export"),
                                                 "--size", "128", "160", "--dynamic"]))
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), np.ascontiguousarray(image((150, 130, 3), seed=3).numpy()))
    demo = _load_tool("demo")
    # a threshold that keeps a few of the spread heads' detections (scores about 0.2-0.8)
    common = ["--input", str(src), "--confidence-threshold", "0.6"]
    assert demo.main(["--config-file", config_path("conditional_detr"), "--checkpoint", ckpt, *common,
                      "--output", str(tmp_path / "eager.png")]) == 0
    assert demo.main(["--onnx", onnx_path, *common, "--output", str(tmp_path / "onnx.png")]) == 0
    eager, exported = cv2.imread(str(tmp_path / "eager.png")), cv2.imread(str(tmp_path / "onnx.png"))
    plain = cv2.imread(str(src))
    assert eager.shape == exported.shape == plain.shape
    drawn = (np.abs(eager.astype(int) - plain.astype(int)).sum(-1) > 30).mean()
    assert drawn > 0.01, "nothing drawn: the threshold keeps no detection"
    # the same boxes and labels: the pictures agree up to anti-aliasing of sub-pixel box differences
    assert (np.abs(eager.astype(int) - exported.astype(int)).sum(-1) > 30).mean() < 0.002


def test_demo_refuses_onnx_together_with_a_config_or_checkpoint(tmp_path, capsys):
    demo = _load_tool("demo")
    with pytest.raises(SystemExit):
        demo.main(["--onnx", "m.onnx", "--config-file", config_path("conditional_detr"), "--input", "x.png"])
    assert "either --config-file or --onnx" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo.main(["--onnx", "m.onnx", "--checkpoint", "w.pth", "--input", "x.png"])
    assert "--checkpoint and --opts belong to --config-file" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        demo.main(["--onnx", str(tmp_path / "missing.onnx"), "--input", "x.png"])
