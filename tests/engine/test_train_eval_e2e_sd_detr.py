"""End to end through tools/lazyconfig_train_net.py, as a user runs it: the tiny SD-DETR (mini-detector,
task-aware queries, disentangled decoder, task-alignment loss with repeated positives) learns: it memorises
the small synthetic training set, its COCO AP there far above an untrained model's; tools/visualize_predictions.py then
draws its detections (the picture of `make demo`)."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
from detectron2.utils.visualizer import Visualizer

import pytest

from ..utils import MEMORISE_BUDGET_SHORT, REPO, memorise_and_compare_with_untrained

TINY = os.path.join(REPO, "projects", "sd_detr", "configs", "sd_detr_tiny_synthetic.py")
VIS_TOOL = os.path.join(REPO, "tools", "visualize_predictions.py")


def _outline_changed_fraction(drawn, plain, box, scale, band=2):
    """Fraction of the pixels within ``band`` px of a box outline (box in image px, pictures at ``scale``)
    whose colour differs between the drawn and the undrawn picture."""
    h, w = plain.shape[:2]
    x0, y0, x1, y1 = (int(round(v * scale)) for v in box)
    x0, x1 = np.clip([x0, x1], 0, w - 1)
    y0, y1 = np.clip([y0, y1], 0, h - 1)
    mask = np.zeros((h, w), dtype=bool)
    for ys, xs in (((y0, y0), (x0, x1)), ((y1, y1), (x0, x1)), ((y0, y1), (x0, x0)), ((y0, y1), (x1, x1))):
        mask[max(ys[0] - band, 0): ys[1] + band + 1, max(xs[0] - band, 0): xs[1] + band + 1] = True
    diff = np.abs(drawn.astype(int) - plain.astype(int)).sum(-1) > 30
    return diff[mask].mean()


@pytest.mark.slow
def test_tiny_sd_detr_memorises_the_small_training_set_and_its_picture_shows_its_detections(memorise_env, tmp_path):
    chance, trained = memorise_and_compare_with_untrained(TINY, memorise_env, tmp_path, budget=MEMORISE_BUDGET_SHORT)
    # measured 2026-12-07, 1 thread:
    # AP 50.3 / AP50 90.3 (tests.utils.MEMORISE_BUDGET, 300 iterations),
    # AP 34.3 / AP50 84.5
    # (MEMORISE_BUDGET_SHORT, 200 iterations)
    assert trained["bbox/AP50"] > max(10 * chance["bbox/AP50"], 50.0), (chance, trained)
    assert trained["bbox/AP"] > max(10 * chance["bbox/AP"], 20.0), (chance, trained)

    # The predictions picture (default rule: F1-optimal threshold on the images it draws from, here the memorised
    # training images) must draw boxes, and
    # they must be visible: the pixels along each drawn box outline differ from the undrawn image.
    png, det_json = tmp_path / "predictions.png", tmp_path / "predictions.json"
    proc = subprocess.run([sys.executable, VIS_TOOL, "--config-file", TINY,
                           "--checkpoint", str(tmp_path / "trained" / "model_final.pth"), "--output", str(png),
                           "--num-images", "4", "--columns", "2", "--detections-json", str(det_json),
                           "--opts", "dataloader.test.dataset.names=sd_detr_synthetic_train"],
                          env=memorise_env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    det = json.loads(det_json.read_text())
    n_boxes = sum(len(im["boxes"]) for im in det["images"])
    assert n_boxes > 0, proc.stdout
    assert f"drew {n_boxes} boxes on 4 images" in proc.stdout
    assert 0.05 <= det["threshold"] < 1.0
    grid = cv2.imread(str(png))
    # the undrawn pictures: the same Visualizer canvas with nothing drawn on it (BGR like the PNG)
    plains = [Visualizer(cv2.imread(im["file_name"])[:, :, ::-1], scale=det["scale"]).output.get_image()[:, :, ::-1]
              for im in det["images"]]
    cell_h, cell_w = max(p.shape[0] for p in plains), max(p.shape[1] for p in plains)
    for k, (im, plain) in enumerate(zip(det["images"], plains)):
        r, c = divmod(k, det["columns"])
        tile = grid[r * cell_h: r * cell_h + plain.shape[0], c * cell_w: c * cell_w + plain.shape[1]]
        for box in im["boxes"]:
            assert _outline_changed_fraction(tile, plain, box, det["scale"]) > 0.3, (k, box)
        if not im["boxes"]:  # control: with nothing drawn the picture is the image itself
            assert (np.abs(tile.astype(int) - plain.astype(int)).sum(-1) > 30).mean() < 0.01, k
