#!/usr/bin/env python
"""Run a detector on images or a video and draw its detections (Detectron2's demo/demo.py for sd_detr).

--config-file takes a LazyConfig (.py, predictor: sd_detr.engine.LazyPredictor; a .py config is code) or
a yacs config (.yaml, predictor: Detectron2's own DefaultPredictor; read as data, yaml.safe_load). The
weights (--checkpoint, or train.init_checkpoint / MODEL.WEIGHTS) are loaded strictly on both paths, and
without running code a file may carry (sd_detr.checkpoint.safe_load): a checkpoint that does not fit the
model is an error listing the mismatching keys; running without weights is warned about. Detections
are drawn with Detectron2's Visualizer and the metadata of the config's test dataset. An input that
cannot be read is reported by name and skipped; the run goes on (exit status 1 if anything was skipped).
Inputs with the same file name (a/x.png, b/x.png) are written as x.png, x_1.png, ... and the renaming
is printed. --onnx FILE runs a model exported by tools/export_model.py (ONNX through onnxruntime, or
TorchScript) instead, with the class names stored in the export; no config is needed then.

Drawing threshold: the rule of tools/visualize_predictions.py. With a LazyConfig whose dataloader.test has
ground truth, the score with the best F1 against it (IoU >= 0.5, same class) over its first
--calibration-images images (sd_detr.evaluation.score_threshold.threshold_from_config), so that a DETR-style
model whose true positives score well below 0.5 still draws what it finds. Without such a validation set
(a yacs config, --onnx, a test set without annotations or whose files are missing) the threshold is
Detectron2's demo default, 0.5 (FALLBACK_THRESHOLD). Either way the tool prints the threshold and where it
came from; --confidence-threshold X draws with X instead.

Examples:
  python tools/demo.py --config-file projects/conditional_detr/configs/conditional_detr_tiny_synthetic.py \\
      --input "datasets/sd_detr_synthetic/val/*.png" --output output/demo_images \\
      --checkpoint output/demo_conditional_detr/model_final.pth
  python tools/demo.py --config-file projects/conditional_detr/configs/yacs/conditional_detr_r50_12ep.yaml \\
      --input street.jpg --output street_detections.jpg --opts MODEL.WEIGHTS converted.pth MODEL.DEVICE cpu
  python tools/demo.py --config-file ... --video-input clip.mp4 --output clip_detections.mp4
  python tools/demo.py --onnx export/model.onnx --input street.jpg --output street_detections.jpg
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

import sd_detr  # noqa: E402,F401  (first: registers the models, quiets import-time warnings)

from detectron2.utils.logger import setup_logger  # noqa: E402

from sd_detr.visualization.demo import (  # noqa: E402
    FALLBACK_THRESHOLD,
    calibration_images,
    check_demo_arguments,
    confidence_threshold,
    run_demo,
)


def _option(check):
    """An argparse type from a package check that raises ValueError (its message is argparse's error)."""
    def parse(value):
        try:
            return check(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = check.__name__
    return parse


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", help="LazyConfig .py or yacs .yaml (not with --onnx)")
    parser.add_argument("--onnx", metavar="FILE",
                        help="an exported model (tools/export_model.py: .onnx or TorchScript) instead of a config")
    parser.add_argument("--input", nargs="+", help="image files or globs")
    parser.add_argument("--video-input", help="a video file")
    parser.add_argument("--output", help="output file (one input) or folder; nothing is written if omitted")
    parser.add_argument("--checkpoint", default=None,
                        help="weights to load (strictly); default: train.init_checkpoint / MODEL.WEIGHTS")
    parser.add_argument("--confidence-threshold", type=_option(confidence_threshold), default=None,
                        help="draw detections scoring at least this; default: the F1-optimal threshold on the "
                             f"config's test set (as tools/visualize_predictions.py), else {FALLBACK_THRESHOLD}")
    parser.add_argument("--calibration-images", type=_option(calibration_images), default=None,
                        help="how many test images (from the first) choose the default threshold (default: "
                             "as tools/visualize_predictions.py, 200)")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides: key=value (LazyConfig) or KEY VALUE pairs (yacs)")
    return parser


def main(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    setup_logger(name="sd_detr")
    try:
        check_demo_arguments(args.config_file, args.onnx, args.input, args.video_input, args.checkpoint, args.opts)
    except ValueError as e:
        parser.error(str(e))
    return run_demo(config_file=args.config_file, onnx=args.onnx, inputs=args.input, video_input=args.video_input,
                    output=args.output, checkpoint=args.checkpoint, confidence_threshold=args.confidence_threshold,
                    calibration_images=args.calibration_images, opts=args.opts)


if __name__ == "__main__":
    sys.exit(main())
