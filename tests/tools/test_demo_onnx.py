"""tools/demo.py --onnx (sd_detr.visualization.demo): an exported model draws the picture the eager model draws
from the same weights."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from sd_detr.checkpoint import DETRCheckpointer
from sd_detr.export.from_config import export_from_config
from sd_detr.visualization import demo

from ..export.helpers import build, config_path, image
from ..utils import REPO

pytestmark = pytest.mark.slow  # an ONNX export; tools/demo.py run as a subprocess


def test_demo_with_an_onnx_export_draws_the_eager_picture(tmp_path):
    """Catches: --onnx ignored or drawing with other class names, the exported predictor resizing or
    rescaling boxes unlike the eager one (the pictures would differ)."""
    pytest.importorskip("onnxruntime")
    _, model = build("conditional_detr")
    DETRCheckpointer(model, save_dir=str(tmp_path)).save("weights")
    ckpt = str(tmp_path / "weights.pth")
    onnx_path = export_from_config(config_path("conditional_detr"), str(tmp_path / "export"), "onnx", checkpoint=ckpt,
                                   size=(128, 160), dynamic=True)
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), np.ascontiguousarray(image((150, 130, 3), seed=3).numpy()))
    # a threshold that keeps a few of the spread heads' detections (scores about 0.2-0.8)
    common = {"inputs": [str(src)], "confidence_threshold": 0.6}
    assert demo.run_demo(config_file=config_path("conditional_detr"), checkpoint=ckpt, **common,
                         output=str(tmp_path / "eager.png")) == 0
    assert demo.run_demo(onnx=onnx_path, **common, output=str(tmp_path / "onnx.png")) == 0
    eager, exported = cv2.imread(str(tmp_path / "eager.png")), cv2.imread(str(tmp_path / "onnx.png"))
    plain = cv2.imread(str(src))
    assert eager.shape == exported.shape == plain.shape
    drawn = (np.abs(eager.astype(int) - plain.astype(int)).sum(-1) > 30).mean()
    assert drawn > 0.01, "nothing drawn: the threshold keeps no detection"
    # the same boxes and labels: the pictures agree up to anti-aliasing of sub-pixel box differences
    assert (np.abs(eager.astype(int) - exported.astype(int)).sum(-1) > 30).mean() < 0.002


def test_demo_refuses_onnx_together_with_a_config_or_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="either --config-file or --onnx"):
        demo.run_demo(onnx="m.onnx", config_file=config_path("conditional_detr"), inputs=["x.png"])
    with pytest.raises(ValueError, match="--checkpoint and --opts belong to --config-file"):
        demo.run_demo(onnx="m.onnx", checkpoint="w.pth", inputs=["x.png"])
    with pytest.raises(ValueError, match="give --input and/or --video-input"):
        demo.run_demo(onnx="m.onnx")
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        demo.run_demo(onnx=str(tmp_path / "missing.onnx"), inputs=["x.png"])


def test_the_demo_tool_turns_conflicting_arguments_into_a_usage_error():
    """tools/demo.py as a user runs it: the package's argument check reaches its command line as an argparse
    error (exit 2, usage), not a traceback. (One subprocess: the --confidence-threshold type is the same glue.)"""
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "demo.py"), "--onnx", "m.onnx", "--config-file",
                           "c.py", "--input", "x.png"], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 2 and "usage:" in proc.stderr, proc.stderr[-2000:]
    assert "demo.py: error: give either --config-file or --onnx" in proc.stderr
