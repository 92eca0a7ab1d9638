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
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

import sd_detr  # noqa: E402,F401  (first: imports Detectron2 without the torch.jit.script warning)

from sd_detr.evaluation.score_threshold import DEFAULT_CALIBRATION_IMAGES, DEFAULT_SCORE_FLOOR  # noqa: E402
from sd_detr.visualization.predictions import visualize_predictions  # noqa: E402
from sd_detr.visualization.predictions import parse_threshold as _parse_threshold  # noqa: E402


def parse_threshold(value):
    try:
        return _parse_threshold(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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

    out = visualize_predictions(args.config_file, args.checkpoint, args.output, num_images=args.num_images,
                                columns=args.columns, threshold=args.threshold,
                                calibration_images=args.calibration_images, score_floor=args.score_floor,
                                detections_json=args.detections_json, opts=args.opts)
    print(f"drew {out['num_boxes']} boxes on {len(out['dataset'])} images ({out['rule']}) -> {args.output}")
    if out["num_boxes"] == 0:
        print("warning: no detection reached the threshold: the picture shows no box", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
