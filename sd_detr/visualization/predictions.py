"""A model's detections on images of its config's test dataset, in a grid, as one picture (the library
side of tools/visualize_predictions.py; Detectron2's Visualizer with the dataset's metadata).

The drawing threshold is a number, or ``"auto"``: the score with the best F1 against the ground truth
(IoU >= 0.5, same class) over the first ``calibration_images`` test images
(:func:`sd_detr.evaluation.score_threshold.calibrate_threshold`), the rule tools/demo.py follows too."""
import json
import os
from typing import Dict, List, Sequence, Union

import cv2
import numpy as np
from detectron2.config import LazyConfig, instantiate
from detectron2.data import MetadataCatalog
from detectron2.utils.visualizer import Visualizer

from ..checkpoint import DETRCheckpointer
from ..config import check_override_keys
from ..engine.accel import optimize_for_cpu
from ..evaluation.score_threshold import (
    DEFAULT_CALIBRATION_IMAGES,
    DEFAULT_SCORE_FLOOR,
    calibrate_threshold,
    predict_dataset,
)

SCALE = 2.0  # pictures are drawn at twice the image size


def read_rgb(file_name: str) -> np.ndarray:
    """The image file as RGB uint8 [H, W, 3]."""
    return cv2.cvtColor(cv2.imread(file_name, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def draw(image: np.ndarray, instances, metadata) -> np.ndarray:
    """RGB uint8 picture (SCALE x the image size) of ``instances`` drawn on ``image`` (RGB uint8 [H, W, 3])."""
    return Visualizer(image, metadata, scale=SCALE).draw_instance_predictions(instances).get_image()


def tile(images: Sequence[np.ndarray], columns: int) -> np.ndarray:
    """Grid of RGB images (cells the size of the largest, white padding) -> one RGB uint8 image."""
    h = max(i.shape[0] for i in images)
    w = max(i.shape[1] for i in images)
    rows = (len(images) + columns - 1) // columns
    grid = np.full((rows * h, columns * w, 3), 255, dtype=np.uint8)
    for k, img in enumerate(images):
        r, c = divmod(k, columns)
        grid[r * h: r * h + img.shape[0], c * w: c * w + img.shape[1]] = img
    return grid


def score_in_unit_interval(value: str, option: str, also: str = "") -> float:
    """``value`` as a number in [0, 1]; ValueError naming ``option`` (and the other accepted form ``also``)."""
    try:
        t = float(value)
    except ValueError:
        t = None
    if t is None or not 0.0 <= t <= 1.0:
        raise ValueError(f"{option} must be {also}a number in [0, 1], got {value!r}")
    return t


def parse_threshold(value: str) -> Union[str, float]:
    """``"auto"`` or a number in [0, 1] (ValueError naming --threshold otherwise)."""
    return value if value == "auto" else score_in_unit_interval(value, "--threshold", also="'auto' or ")


def visualize_predictions(config_file: str, checkpoint: str, output: str, num_images: int = 8, columns: int = 4,
                          threshold: Union[str, float] = "auto",
                          calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
                          score_floor: float = DEFAULT_SCORE_FLOOR, detections_json: str = None,
                          opts: Sequence[str] = ()) -> Dict:
    """Draw the detections scoring at least the threshold on the first ``num_images`` test images, in a
    grid of ``columns``, to the picture ``output``; with ``detections_json`` also write them (per image:
    file, absolute xyxy boxes, scores, classes) and the threshold as JSON.

    Returns ``{"threshold", "rule" (how it was chosen, in words), "detections" (the drawn Instances per
    image), "dataset" (the images' dicts), "num_boxes"}``."""
    cfg = LazyConfig.load(config_file)
    check_override_keys(cfg, list(opts))
    cfg = LazyConfig.apply_overrides(cfg, list(opts))
    model = instantiate(cfg.model).to(cfg.train.device)
    optimize_for_cpu(model)
    DETRCheckpointer(model, strict=True).load(checkpoint)
    dataset = instantiate(cfg.dataloader.test.dataset)
    mapper = instantiate(cfg.dataloader.test.mapper)
    names = cfg.dataloader.test.dataset.names
    metadata = MetadataCatalog.get(names if isinstance(names, str) else names[0])

    shown = dataset[:num_images]
    n_cal = calibration_images if threshold == "auto" else 0
    predictions = predict_dataset(model, dataset[:max(len(shown), n_cal)], mapper)
    if threshold == "auto":
        # the rule tools/demo.py follows too (sd_detr.evaluation.score_threshold.threshold_from_config):
        # the first calibration_images test images, whatever num_images shows
        choice = calibrate_threshold(model, dataset[:n_cal], mapper, floor=score_floor,
                                     predictions=predictions[:n_cal],
                                     dataset=names if isinstance(names, str) else "+".join(names))
        threshold, rule = choice.threshold, choice.describe()
    else:
        rule = f"score >= {threshold}"
    kept: List = [p[p.scores >= threshold] for p in predictions[: len(shown)]]
    pictures = [draw(read_rgb(d["file_name"]), k, metadata) for d, k in zip(shown, kept)]
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    cv2.imwrite(output, cv2.cvtColor(tile(pictures, columns), cv2.COLOR_RGB2BGR))
    if detections_json:
        with open(detections_json, "w") as f:
            json.dump({"threshold": threshold, "rule": rule, "columns": columns, "scale": SCALE, "images": [
                {"file_name": d["file_name"], "boxes": k.pred_boxes.tensor.tolist(), "scores": k.scores.tolist(),
                 "classes": k.pred_classes.tolist()} for d, k in zip(shown, kept)]}, f)
    return {"threshold": threshold, "rule": rule, "detections": kept, "dataset": shown,
            "num_boxes": sum(len(k) for k in kept)}
