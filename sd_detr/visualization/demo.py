"""Run a detector on images or a video and draw its detections (the library side of tools/demo.py;
Detectron2's demo/predictor.py for sd_detr).

A LazyConfig (.py: :class:`sd_detr.engine.LazyPredictor`), a yacs config (.yaml: Detectron2's
DefaultPredictor, the file read as data) or an exported model (:class:`sd_detr.export.OnnxPredictor`) gives
the predictor; detections are drawn with Detectron2's Visualizer and the metadata of the config's test
dataset (or the export's class names). The drawing threshold: the F1-optimal score on the config's test
set (:func:`choose_threshold`, the rule of :mod:`sd_detr.visualization.predictions`), else
:data:`FALLBACK_THRESHOLD`. An input that cannot be read is logged by name and skipped."""
import glob
import logging
import os
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import tqdm
from detectron2.data import MetadataCatalog
from detectron2.utils.visualizer import Visualizer

from .predictions import score_in_unit_interval

logger = logging.getLogger("sd_detr.demo")

FALLBACK_THRESHOLD = 0.5  # Detectron2's demo/demo.py default, where no validation set is at hand


def confidence_threshold(value: str) -> float:
    """``--confidence-threshold``: a number in [0, 1] (ValueError naming the option otherwise)."""
    return score_in_unit_interval(value, "--confidence-threshold")


def calibration_images(value: str) -> int:
    """``--calibration-images``: a positive integer (ValueError naming the option otherwise)."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"--calibration-images must be a positive integer, got {value!r}")
    return n


def check_demo_arguments(config_file=None, onnx=None, inputs=None, video_input=None, checkpoint=None, opts=()):
    """ValueError (the message a command line shows) unless there is something to read (``inputs`` and/or
    ``video_input``) and a model from exactly one of ``config_file`` and ``onnx`` (an export carries its
    weights and config: no ``checkpoint`` or ``opts`` with it)."""
    if not inputs and not video_input:
        raise ValueError("give --input and/or --video-input")
    if bool(config_file) == bool(onnx):
        raise ValueError("give either --config-file or --onnx")
    if onnx and (checkpoint or opts):
        raise ValueError("--checkpoint and --opts belong to --config-file; an --onnx export carries its weights")


def build_predictor(config_file: str, opts: Sequence[str], checkpoint: Optional[str] = None):
    """(predictor, metadata) for a LazyConfig .py or a yacs .yaml file; ``checkpoint`` (if given) replaces
    train.init_checkpoint / MODEL.WEIGHTS. Weights are loaded strictly on both paths."""
    if config_file.endswith(".py"):
        from detectron2.config import LazyConfig

        from ..config import check_override_keys
        from ..engine import LazyPredictor

        cfg = LazyConfig.load(config_file)
        check_override_keys(cfg, list(opts))
        cfg = LazyConfig.apply_overrides(cfg, list(opts))
        predictor = LazyPredictor(cfg, checkpoint=checkpoint)
        return predictor, predictor.metadata
    from detectron2.config import get_cfg

    from ..config import add_all_configs
    from ..config.yacs import merge_yaml_config
    from ..engine.predictor import strict_default_predictor

    cfg = get_cfg()
    add_all_configs(cfg)
    merge_yaml_config(cfg, config_file)  # data only: a !!python tag is an error, never run
    cfg.merge_from_list(list(opts))
    if checkpoint is not None:
        cfg.MODEL.WEIGHTS = checkpoint
    if cfg.MODEL.DEVICE == "cuda":
        import torch

        if not torch.cuda.is_available():
            cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else "__unused")
    return strict_default_predictor(cfg), metadata


def build_exported_predictor(path: str):
    """(predictor, metadata) for a file of tools/export_model.py: sd_detr.export.OnnxPredictor (the
    DefaultPredictor call interface) and metadata carrying the export's class names."""
    from ..export import OnnxPredictor

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--onnx {path}: no such file")
    predictor = OnnxPredictor(path)
    name = f"__sd_detr_export_{os.path.abspath(path)}"
    metadata = MetadataCatalog.get(name)
    if not metadata.get("thing_classes", None):
        metadata.set(thing_classes=list(predictor.class_names))
    return predictor, metadata


def choose_threshold(predictor, given: Optional[float] = None, lazy_config: bool = True,
                     num_images: Optional[int] = None, floor: Optional[float] = None) -> Tuple[float, str]:
    """(threshold, where it came from): ``given`` (--confidence-threshold) if not None; else the F1-optimal
    threshold of ``predictor.model`` on the first ``num_images`` images of ``predictor.cfg``'s test set
    (LazyConfig path: :func:`~sd_detr.evaluation.score_threshold.threshold_from_config`, the rule of
    tools/visualize_predictions.py); else :data:`FALLBACK_THRESHOLD`, the reason being said."""
    from ..evaluation.score_threshold import (
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


def draw(predictor, metadata, bgr: np.ndarray, threshold: float) -> Tuple[np.ndarray, int]:
    """(BGR uint8 [H, W, 3] picture of the detections scoring >= ``threshold`` on ``bgr``, their number)."""
    instances = predictor(bgr)["instances"].to("cpu")
    instances = instances[instances.scores >= threshold]
    vis = Visualizer(bgr[:, :, ::-1], metadata)
    return vis.draw_instance_predictions(instances).get_image()[:, :, ::-1], len(instances)


def expand_inputs(patterns: Sequence[str]) -> List[str]:
    """Files matching each glob, sorted per pattern; a pattern matching nothing is kept as it is (a missing
    file is reported when it is read)."""
    paths = []
    for p in patterns:
        matches = sorted(glob.glob(os.path.expanduser(p)))
        paths.extend(matches if matches else [p])
    return paths


def output_paths(output: Optional[str], paths: Sequence[str]):
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


def run_images(predictor, metadata, paths: Sequence[str], output: Optional[str], threshold: float) -> List[str]:
    """Draw every image of ``paths`` (to :func:`output_paths`); returns the inputs skipped (unreadable)."""
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


def run_video(predictor, metadata, path: str, output: Optional[str], threshold: float) -> List[str]:
    """Draw every frame of the video ``path`` (to ``output``, an .mp4 file or a folder); returns
    ``[path]`` if it cannot be opened, else ``[]``."""
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


def run_demo(config_file: Optional[str] = None, onnx: Optional[str] = None, inputs: Sequence[str] = (),
             video_input: Optional[str] = None, output: Optional[str] = None, checkpoint: Optional[str] = None,
             confidence_threshold: Optional[float] = None, calibration_images: Optional[int] = None,
             opts: Sequence[str] = ()) -> int:
    """The demo (arguments as tools/demo.py's options, checked by :func:`check_demo_arguments`): build the
    predictor, choose and print the threshold, draw the images and the video. Returns the exit status:
    1 if an input was skipped, else 0."""
    check_demo_arguments(config_file, onnx, inputs, video_input, checkpoint, opts)
    if onnx:
        predictor, metadata = build_exported_predictor(onnx)
    else:
        predictor, metadata = build_predictor(config_file, opts, checkpoint=checkpoint)
    lazy = bool(config_file) and config_file.endswith(".py")
    threshold, source = choose_threshold(predictor, confidence_threshold, lazy_config=lazy,
                                         num_images=calibration_images)
    print(f"drawing threshold: {source}", flush=True)
    skipped = []
    if inputs:
        skipped += run_images(predictor, metadata, expand_inputs(inputs), output, threshold)
    if video_input:
        skipped += run_video(predictor, metadata, video_input, output, threshold)
    if skipped:
        logger.error("skipped %d input(s): %s", len(skipped), ", ".join(skipped))
        return 1
    return 0
