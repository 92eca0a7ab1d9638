#!/usr/bin/env python
"""Draw a model's detections on images of its config's test dataset, in a grid, as one PNG.

Uses Detectron2's Visualizer with the dataset's metadata (class names). By default the drawing threshold
is chosen from the validation scores: the score with the best F1 against the ground truth (IoU >= 0.5,
same class) over the first --calibration-images images of the test set (sd_detr/evaluation/
score_threshold.py), so that a model draws what it really finds whatever its score scale; give a number
to draw with a fixed threshold instead. The tool prints the threshold and how many boxes it drew.

Example:
  python tools/visualize_predictions.py \\
      --config-file projects/sd_detr/configs/sd_detr_tiny_synthetic.py \\
      --checkpoint output/demo_sd_detr/model_final.pth \\
      --output output/demo_sd_detr/predictions.png --num-images 8            # threshold from val F1
  python tools/visualize_predictions.py ... --threshold 0.5                  # fixed threshold
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

import sd_detr  # noqa: E402,F401  (first: imports Detectron2 without the torch.jit.script warning)
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.data import MetadataCatalog  # noqa: E402
from detectron2.utils.visualizer import Visualizer  # noqa: E402

from sd_detr.checkpoint import DETRCheckpointer  # noqa: E402
from sd_detr.config import check_override_keys  # noqa: E402
from sd_detr.engine.accel import optimize_for_cpu  # noqa: E402
from sd_detr.evaluation.score_threshold import (  # noqa: E402
    DEFAULT_CALIBRATION_IMAGES,
    DEFAULT_SCORE_FLOOR,
    calibrate_threshold,
    predict_dataset,
)

SCALE = 2.0  # pictures are drawn at twice the image size


def read_rgb(file_name):
    return cv2.cvtColor(cv2.imread(file_name, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def draw(image, instances, metadata):
    """RGB uint8 picture (SCALE x the image size) of ``instances`` drawn on ``image``."""
    return Visualizer(image, metadata, scale=SCALE).draw_instance_predictions(instances).get_image()


def tile(images, columns):
    """Grid of RGB images (padded to the largest) -> one RGB image."""
    h = max(i.shape[0] for i in images)
    w = max(i.shape[1] for i in images)
    rows = (len(images) + columns - 1) // columns
    grid = np.full((rows * h, columns * w, 3), 255, dtype=np.uint8)
    for k, img in enumerate(images):
        r, c = divmod(k, columns)
        grid[r * h: r * h + img.shape[0], c * w: c * w + img.shape[1]] = img
    return grid


def parse_threshold(value):
    if value == "auto":
        return value
    try:
        t = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threshold must be 'auto' or a number in [0, 1], got {value!r}")
    if not 0.0 <= t <= 1.0:
        raise argparse.ArgumentTypeError(f"--threshold must be 'auto' or a number in [0, 1], got {value!r}")
    return t


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument("--num-images", type=int, default=8)
    parser.add_argument("--columns", type=int, default=4)
    parser.add_argument("--threshold", type=parse_threshold, default="auto",
                        help="minimum score of a drawn detection, or 'auto' (default): the F1-optimal score on "
                             "the calibration images")
    parser.add_argument("--calibration-images", type=int, default=DEFAULT_CALIBRATION_IMAGES,
                        help="with --threshold auto: how many test images (from the first) choose the threshold")
    parser.add_argument("--score-floor", type=float, default=DEFAULT_SCORE_FLOOR,
                        help="with --threshold auto: never draw detections scoring below this")
    parser.add_argument("--detections-json", default=None,
                        help="also write the drawn detections (per image: file, absolute xyxy boxes, scores, "
                             "classes) and the threshold to this JSON file")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides key=value")
    args = parser.parse_args(argv)
    if args.threshold == "auto" and args.calibration_images < 1:
        parser.error(f"--calibration-images must be >= 1 with --threshold auto, got {args.calibration_images}")

    cfg = LazyConfig.load(args.config_file)
    check_override_keys(cfg, args.opts)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    model = instantiate(cfg.model).to(cfg.train.device)
    optimize_for_cpu(model)
    DETRCheckpointer(model, strict=True).load(args.checkpoint)
    dataset = instantiate(cfg.dataloader.test.dataset)
    mapper = instantiate(cfg.dataloader.test.mapper)
    names = cfg.dataloader.test.dataset.names
    metadata = MetadataCatalog.get(names if isinstance(names, str) else names[0])

    shown = dataset[: args.num_images]
    n_cal = args.calibration_images if args.threshold == "auto" else 0
    predictions = predict_dataset(model, dataset[:max(len(shown), n_cal)], mapper)
    if args.threshold == "auto":
        # the rule tools/demo.py follows too (sd_detr.evaluation.score_threshold.threshold_from_config):
        # the first --calibration-images test images, whatever --num-images shows
        choice = calibrate_threshold(model, dataset[:n_cal], mapper, floor=args.score_floor,
                                     predictions=predictions[:n_cal],
                                     dataset=names if isinstance(names, str) else "+".join(names))
        threshold, rule = choice.threshold, choice.describe()
    else:
        threshold, rule = args.threshold, f"score >= {args.threshold}"
    kept = [p[p.scores >= threshold] for p in predictions[: len(shown)]]
    pictures = [draw(read_rgb(d["file_name"]), k, metadata) for d, k in zip(shown, kept)]
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    cv2.imwrite(args.output, cv2.cvtColor(tile(pictures, args.columns), cv2.COLOR_RGB2BGR))
    n_boxes = sum(len(k) for k in kept)
    if args.detections_json:
        with open(args.detections_json, "w") as f:
            json.dump({"threshold": threshold, "rule": rule, "columns": args.columns, "scale": SCALE, "images": [
                {"file_name": d["file_name"], "boxes": k.pred_boxes.tensor.tolist(), "scores": k.scores.tolist(),
                 "classes": k.pred_classes.tolist()} for d, k in zip(shown, kept)]}, f)
    print(f"drew {n_boxes} boxes on {len(pictures)} images ({rule}) -> {args.output}")
    if n_boxes == 0:
        print("warning: no detection reached the threshold: the picture shows no box", file=sys.stderr)
    return {"threshold": threshold, "detections": kept, "dataset": shown, "num_boxes": n_boxes}


if __name__ == "__main__":
    main()
