"""tools/demo.py's library, sd_detr.visualization.demo, and Detectron2's DefaultPredictor on the yacs configs."""
import glob
import logging
import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.engine import DefaultPredictor

from sd_detr.config import add_all_configs
from sd_detr.visualization import demo

from ..utils import REPO

TINY = f"{REPO}/projects/conditional_detr/configs/conditional_detr_tiny_synthetic.py"
YAML = f"{REPO}/projects/conditional_detr/configs/yacs/conditional_detr_r50_12ep.yaml"


def _tiny_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(TINY).model)
    path = tmp_path / "tiny.pth"
    torch.save({"model": model.state_dict()}, path)
    return str(path)


def test_demo_draws_every_readable_image_and_reports_unreadable_ones_by_name(synthetic_root, tmp_path, sd_detr_log):
    images = sorted(glob.glob(os.path.join(synthetic_root, "val", "*.png")))[:2]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    missing = str(tmp_path / "missing.png")
    out = tmp_path / "out"
    os.environ["SD_DETR_SYNTHETIC_ROOT"] = synthetic_root
    try:
        status = demo.run_demo(config_file=TINY, inputs=[*images, str(broken), missing], output=str(out),
                               confidence_threshold=0.0,
                               opts=[f"train.init_checkpoint={_tiny_checkpoint(tmp_path)}", "train.device=cpu"])
    finally:
        del os.environ["SD_DETR_SYNTHETIC_ROOT"]
    assert status == 1
    written = sorted(os.listdir(out))
    assert written == sorted(os.path.basename(p) for p in images)
    for name in written:
        drawn = cv2.imread(str(out / name))
        assert drawn is not None and drawn.shape == cv2.imread(os.path.join(synthetic_root, "val", name)).shape
    # the log records, not stdout: Detectron2's setup_logger (a tool's) is cached, so its console handler keeps
    # the stream of the first caller in a process
    errors = [r.getMessage() for r in sd_detr_log.records if r.levelno >= logging.ERROR]
    assert any("broken.png" in line for line in errors) and any("missing.png" in line for line in errors)


@pytest.mark.parametrize("yaml", sorted(glob.glob(f"{REPO}/projects/*/configs/yacs/*_r50_12ep.yaml")),
                         ids=os.path.basename)
def test_detectron2_default_predictor_runs_a_yacs_config_unchanged(tmp_path, yaml):
    cfg = get_cfg()
    add_all_configs(cfg)
    cfg.merge_from_file(yaml)
    # shrink the R50 model of the yaml so that the test is fast; the keys are the yaml's
    cfg.merge_from_list(["MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 16,
                         "MODEL.RESNETS.STEM_OUT_CHANNELS", 16, "MODEL.DETR.HIDDEN_DIM", 32, "MODEL.DETR.NHEADS", 2,
                         "MODEL.DETR.DIM_FEEDFORWARD", 64, "MODEL.DETR.ENC_LAYERS", 1, "MODEL.DETR.DEC_LAYERS", 2,
                         "MODEL.DETR.NUM_QUERIES", 20, "MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", 96,
                         "INPUT.MAX_SIZE_TEST", 160])
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    path = tmp_path / "w.pth"
    torch.save({"model": build_model(cfg).state_dict()}, path)
    cfg.MODEL.WEIGHTS = str(path)
    predictor = DefaultPredictor(cfg)
    bgr = (np.random.RandomState(0).rand(120, 200, 3) * 255).astype(np.uint8)
    inst = predictor(bgr)["instances"]
    twin = os.path.join(os.path.dirname(os.path.dirname(yaml)), os.path.basename(yaml)[:-5] + ".py")
    assert len(inst) == LazyConfig.load(twin).model.num_select and inst.image_size == (120, 200)
    # the official post-processing (MODEL.DETR.CLIP_BOXES False) keeps the boxes unclipped; clipped on request
    assert not predictor.model.clip_boxes and torch.isfinite(inst.pred_boxes.tensor).all()
    predictor.model.clip_boxes = True
    clipped = predictor(bgr)["instances"].pred_boxes.tensor
    assert (clipped[:, 2] <= 200).all() and (clipped[:, 3] <= 120).all() and (clipped[:, :2] >= 0).all()
