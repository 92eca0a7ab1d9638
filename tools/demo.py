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
import glob
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

import sd_detr  # noqa: E402,F401  (first: registers the models, quiets import-time warnings)

import cv2  # noqa: E402
import tqdm  # noqa: E402
from detectron2.data import MetadataCatalog  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402
from detectron2.utils.visualizer import Visualizer  # noqa: E402

logger = logging.getLogger("sd_detr.demo")

FALLBACK_THRESHOLD = 0.5  # Detectron2's demo/demo.py default, where no validation set is at hand


def build_predictor(config_file, opts, checkpoint=None):
    """(predictor, metadata) for a LazyConfig .py or a yacs .yaml file; ``checkpoint`` (if given) replaces
    train.init_checkpoint / MODEL.WEIGHTS. Weights are loaded strictly on both paths."""
    if config_file.endswith(".py"):
        from detectron2.config import LazyConfig

        from sd_detr.config import check_override_keys
        from sd_detr.engine import LazyPredictor

        cfg = LazyConfig.load(config_file)
        check_override_keys(cfg, opts)
        cfg = LazyConfig.apply_overrides(cfg, opts)
        predictor = LazyPredictor(cfg, checkpoint=checkpoint)
        return predictor, predictor.metadata
    from detectron2.config import get_cfg

    from sd_detr.config import add_all_configs
    from sd_detr.config.yacs import merge_yaml_config
    from sd_detr.engine.predictor import strict_default_predictor

    cfg = get_cfg()
    add_all_configs(cfg)
    merge_yaml_config(cfg, config_file)  # data only: a !!python tag is an error, never run
    cfg.merge_from_list(opts)
    if checkpoint is not None:
        cfg.MODEL.WEIGHTS = checkpoint
    if cfg.MODEL.DEVICE == "cuda":
        import torch

        if not torch.cuda.is_available():
            cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else "__unused")
    return strict_default_predictor(cfg), metadata


def build_exported_predictor(path):
    """(predictor, metadata) for a file of tools/export_model.py: sd_detr.export.OnnxPredictor (the
    DefaultPredictor call interface) and metadata carrying the export's class names."""
    from sd_detr.export import OnnxPredictor

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--onnx {path}: no such file")
    predictor = OnnxPredictor(path)
    name = f"__sd_detr_export_{os.path.abspath(path)}"
    metadata = MetadataCatalog.get(name)
    if not metadata.get("thing_classes", None):
        metadata.set(thing_classes=list(predictor.class_names))
    return predictor, metadata


def choose_threshold(predictor, given=None, lazy_config=True, num_images=None, floor=None):
    """(threshold, where it came from): ``given`` (--confidence-threshold) if not None; else the F1-optimal
    threshold of ``predictor.model`` on the first ``num_images`` images of ``predictor.cfg``'s test set
    (LazyConfig path: :func:`~sd_detr.evaluation.score_threshold.threshold_from_config`, the rule of
    tools/visualize_predictions.py); else :data:`FALLBACK_THRESHOLD`, the reason being said."""
    from sd_detr.evaluation.score_threshold import (
        DEFAULT_CALIBRATION_IMAGES,
        DEFAULT_SCORE_FLOOR,
        NoValidationSet,
        threshold_from_config,
    )

    if given is not None:
        return given, f"score >= {given}, given by --confidence-threshold"
    if not lazy_config:
        reason = "no validation set at hand (a yacs config or an --onnx export)"
    else:
        try:
            choice = threshold_from_config(
                predictor.model, predictor.cfg,
                num_images=DEFAULT_CALIBRATION_IMAGES if num_images is None else num_images,
                floor=DEFAULT_SCORE_FLOOR if floor is None else floor)
            return choice.threshold, choice.describe() + "; --confidence-threshold X overrides it"
        except (NoValidationSet, OSError, ValueError) as e:  # missing files, no or malformed annotations
            reason = f"no validation set to choose it on ({type(e).__name__}: {e})"
    return FALLBACK_THRESHOLD, (f"score >= {FALLBACK_THRESHOLD}, Detectron2's default: {reason}; "
                                "--confidence-threshold X sets another")


def draw(predictor, metadata, bgr, threshold):
    instances = predictor(bgr)["instances"].to("cpu")
    instances = instances[instances.scores >= threshold]
    vis = Visualizer(bgr[:, :, ::-1], metadata)
    return vis.draw_instance_predictions(instances).get_image()[:, :, ::-1], len(instances)


def expand_inputs(patterns):
    paths = []
    for p in patterns:
        matches = sorted(glob.glob(os.path.expanduser(p)))
        paths.extend(matches if matches else [p])  # a missing file is reported when it is read
    return paths


def output_paths(output, paths):
    """The file each input image is written to (None: nothing is written).

    One input: ``output`` itself, unless it is a folder (exists, or has no extension). Several: files in
    the folder ``output`` under the inputs' own names; inputs sharing a file name (a/x.png, b/x.png) keep
    them apart: the first keeps its name, the others get ``x_1.png``, ``x_2.png``, ... (never the own
    name of another input). Returns (targets, renamed): one target per input, and (input, target) pairs
    of the renamed ones."""
    if output is None:
        return [None] * len(paths), []
    if len(paths) == 1 and not os.path.isdir(output) and os.path.splitext(output)[1]:
        return [output], []
    names = [os.path.basename(p) for p in paths]
    taken, targets, renamed = set(), [], []
    own = set(names)
    for path, name in zip(paths, names):
        final = name
        if final in taken:
            stem, ext = os.path.splitext(name)
            k = 1
            while f"{stem}_{k}{ext}" in taken or f"{stem}_{k}{ext}" in own:
                k += 1
            final = f"{stem}_{k}{ext}"
        taken.add(final)
        targets.append(os.path.join(output, final))
        if final != name:
            renamed.append((path, targets[-1]))
    return targets, renamed


def run_images(predictor, metadata, paths, output, threshold):
    skipped = []
    targets, renamed = output_paths(output, paths)
    if renamed:
        # printed (not only logged) because the user looks for these files under other names
        print(f"{len(renamed)} input(s) share a file name with another input; written as:\n"
              + "\n".join(f"  {src} -> {dst}" for src, dst in renamed), flush=True)
    for path, target in tqdm.tqdm(list(zip(paths, targets)), disable=len(paths) < 2):
        bgr = cv2.imread(path, cv2.IMREAD_COLOR) if os.path.isfile(path) else None
        if bgr is None:
            logger.error("cannot read image %s (missing or not an image): skipped", path)
            skipped.append(path)
            continue
        picture, n = draw(predictor, metadata, bgr, threshold)
        if target:
            os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
            cv2.imwrite(target, picture)
        logger.info("%s: %d detections%s", path, n, f" -> {target}" if target else "")
    return skipped


def run_video(predictor, metadata, path, output, threshold):
    video = cv2.VideoCapture(path)
    if not video.isOpened():
        logger.error("cannot open video %s: skipped", path)
        return [path]
    fps = video.get(cv2.CAP_PROP_FPS) or 25.0
    frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    writer = None
    for _ in tqdm.tqdm(range(frames) if frames > 0 else iter(int, 1)):
        ok, frame = video.read()
        if not ok:
            break
        picture, _ = draw(predictor, metadata, frame, threshold)
        if output:
            if writer is None:
                target = output if os.path.splitext(output)[1] else os.path.join(output, os.path.basename(path))
                os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
                writer = cv2.VideoWriter(target, cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                         (picture.shape[1], picture.shape[0]))
            writer.write(picture)
    video.release()
    if writer is not None:
        writer.release()
    return []


def _threshold(value):
    try:
        t = float(value)
    except ValueError:
        t = None
    if t is None or not 0.0 <= t <= 1.0:
        raise argparse.ArgumentTypeError(f"--confidence-threshold must be a number in [0, 1], got {value!r}")
    return t


def _positive_int(value):
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--calibration-images must be a positive integer, got {value!r}")
    return n


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
    parser.add_argument("--confidence-threshold", type=_threshold, default=None,
                        help="draw detections scoring at least this; default: the F1-optimal threshold on the "
                             f"config's test set (as tools/visualize_predictions.py), else {FALLBACK_THRESHOLD}")
    parser.add_argument("--calibration-images", type=_positive_int, default=None,
                        help="how many test images (from the first) choose the default threshold (default: "
                             "as tools/visualize_predictions.py, 200)")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides: key=value (LazyConfig) or KEY VALUE pairs (yacs)")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="sd_detr")
    if not args.input and not args.video_input:
        get_parser().error("give --input and/or --video-input")
    if bool(args.config_file) == bool(args.onnx):
        get_parser().error("give either --config-file or --onnx")
    if args.onnx:
        if args.checkpoint or args.opts:
            get_parser().error("--checkpoint and --opts belong to --config-file; an --onnx export carries its weights")
        predictor, metadata = build_exported_predictor(args.onnx)
    else:
        predictor, metadata = build_predictor(args.config_file, args.opts, checkpoint=args.checkpoint)
    lazy = bool(args.config_file) and args.config_file.endswith(".py")
    threshold, source = choose_threshold(predictor, args.confidence_threshold, lazy_config=lazy,
                                         num_images=args.calibration_images)
    print(f"drawing threshold: {source}", flush=True)
    skipped = []
    if args.input:
        skipped += run_images(predictor, metadata, expand_inputs(args.input), args.output, threshold)
    if args.video_input:
        skipped += run_video(predictor, metadata, args.video_input, args.output, threshold)
    if skipped:
        logger.error("skipped %d input(s): %s", len(skipped), ", ".join(skipped))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
