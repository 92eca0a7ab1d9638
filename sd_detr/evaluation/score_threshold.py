"""A drawing threshold chosen from validation scores: the score at which the detections best match the
ground truth (maximum F1 at IoU >= 0.5, same class).

A fixed threshold such as Detectron2's 0.5 suits well-calibrated two-stage detectors; DETR-style models
trained with focal or task-alignment losses give their true positives much lower sigmoid scores early in
training (the tiny models here: best scores 0.3-0.5), so a fixed 0.5 draws nothing, and a low one draws
the duplicates DETR leaves without NMS. The F1-optimal threshold draws what the model really finds.

The drawing tools (tools/visualize_predictions.py, tools/demo.py) share one rule,
:func:`calibrate_threshold` over the first :data:`DEFAULT_CALIBRATION_IMAGES` images of the config's test
set (:func:`threshold_from_config`), so that both draw the same boxes for the same model.
"""
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

import torch
from detectron2.structures import Boxes, BoxMode, Instances, pairwise_iou

DEFAULT_CALIBRATION_IMAGES = 200  # test images (from the first) that choose the threshold
DEFAULT_SCORE_FLOOR = 0.05  # no threshold below this score (an untrained model would draw noise)


def match_detections(instances: Instances, annotations: Sequence[dict], iou_threshold: float = 0.5) -> torch.Tensor:
    """True-positive flag of each detection of one image, COCO style: detections in descending score
    order each take the unmatched ground-truth box of their class with the highest IoU >= ``iou_threshold``.

    Args:
        instances: ``pred_boxes`` (absolute xyxy, the image's coordinates), ``scores``, ``pred_classes``.
        annotations: Detectron2 dataset-dict annotations (``bbox`` in its ``bbox_mode``, contiguous
            ``category_id``); crowd boxes are ignored.
    Returns: bool [N], aligned with ``instances`` (not with the score order).
    """
    anns = [a for a in annotations if not a.get("iscrowd", 0)]
    tp = torch.zeros(len(instances), dtype=torch.bool)
    if not anns or len(instances) == 0:
        return tp
    gt = torch.tensor([BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns],
                      dtype=torch.float32)
    gt_cls = torch.tensor([a["category_id"] for a in anns])
    iou = pairwise_iou(Boxes(instances.pred_boxes.tensor.float().cpu()), Boxes(gt))  # [N, G]
    iou[instances.pred_classes.cpu()[:, None] != gt_cls[None, :]] = -1.0
    taken = torch.zeros(len(anns), dtype=torch.bool)
    for i in torch.argsort(instances.scores.cpu(), descending=True).tolist():
        row = iou[i].masked_fill(taken, -1.0)
        best = int(row.argmax())
        if row[best] >= iou_threshold:
            tp[i] = True
            taken[best] = True
    return tp


def f1_optimal_threshold(results: Iterable[Tuple[Instances, Sequence[dict]]], iou_threshold: float = 0.5,
                         floor: float = DEFAULT_SCORE_FLOOR) -> Tuple[float, float]:
    """The score threshold with the best F1 over a set of images, and that F1.

    Args:
        results: (detections, ground-truth annotations) per image, as for :func:`match_detections`.
        floor: no threshold below this score is chosen (an untrained model would otherwise draw noise).
    Returns: (threshold, F1); (1.0, 0.0) when no detection above ``floor`` is a true positive, so that
    nothing is drawn for a model that finds nothing.

    Because matching runs in descending score order, the matches of the detections above a threshold do
    not depend on those below it: one matching per image gives the true positives at every threshold.
    """
    scores: List[torch.Tensor] = []
    flags: List[torch.Tensor] = []
    num_gt = 0
    for inst, anns in results:
        scores.append(inst.scores.detach().float().cpu())
        flags.append(match_detections(inst, anns, iou_threshold))
        num_gt += sum(1 for a in anns if not a.get("iscrowd", 0))
    if not scores:
        return 1.0, 0.0
    s, tp = torch.cat(scores), torch.cat(flags)
    keep = s >= floor
    s, tp = s[keep], tp[keep]
    if not bool(tp.any()):
        return 1.0, 0.0
    order = torch.argsort(s, descending=True)
    s, tp = s[order], tp[order].float()
    f1 = 2 * tp.cumsum(0) / (torch.arange(1, len(s) + 1) + num_gt)
    # equal scores are one threshold: only the last position of a run of ties counts
    last_of_ties = torch.ones_like(s, dtype=torch.bool)
    last_of_ties[:-1] = s[:-1] != s[1:]
    f1 = f1.masked_fill(~last_of_ties, -1.0)
    best = int(f1.argmax())
    return float(s[best]), float(f1[best])


@dataclass
class ThresholdChoice:
    """A drawing threshold chosen on a validation set: ``threshold``, its ``f1``, on ``num_images``
    images of ``dataset`` (the test set's name)."""

    threshold: float
    f1: float
    num_images: int
    dataset: str = "the test set"

    def describe(self) -> str:
        return (f"score >= {self.threshold:.3f}, the F1-optimal threshold on {self.num_images} images of "
                f"{self.dataset} (F1 {self.f1:.3f})")


@torch.no_grad()
def predict_dataset(model, dataset_dicts: Sequence[dict], mapper) -> List[Instances]:
    """Detections (Instances on CPU, in each image's coordinates: absolute xyxy ``pred_boxes``,
    ``scores``, ``pred_classes``) of ``model`` (set to eval) on each dataset dict, read and resized by
    ``mapper`` (the config's test mapper), one image at a time."""
    model.eval()
    return [model([mapper(dict(d))])[0]["instances"].to("cpu") for d in dataset_dicts]


def calibrate_threshold(model, dataset_dicts: Sequence[dict], mapper, floor: float = DEFAULT_SCORE_FLOOR,
                        predictions: Optional[Sequence[Instances]] = None,
                        dataset: str = "the test set") -> ThresholdChoice:
    """The F1-optimal threshold (:func:`f1_optimal_threshold`) of ``model`` on ``dataset_dicts`` (with
    their ``annotations``); ``predictions`` (aligned with ``dataset_dicts``) saves running the model
    again where the caller has them."""
    if predictions is None:
        predictions = predict_dataset(model, dataset_dicts, mapper)
    if len(predictions) != len(dataset_dicts):
        raise ValueError(f"calibrate_threshold: {len(predictions)} predictions for {len(dataset_dicts)} images")
    pairs = [(p, d.get("annotations", [])) for p, d in zip(predictions, dataset_dicts)]
    threshold, f1 = f1_optimal_threshold(pairs, floor=floor)
    return ThresholdChoice(threshold, f1, len(pairs), dataset)


class NoValidationSet(LookupError):
    """The config has no test set with ground truth to choose a threshold on (the message says why)."""


def config_test_set(cfg, num_images: int = DEFAULT_CALIBRATION_IMAGES):
    """(the first ``num_images`` dataset dicts of a LazyConfig's ``dataloader.test.dataset``, its mapper,
    its name). Raises :class:`NoValidationSet` when the config has no ``dataloader.test`` or its
    images carry no annotation; loading errors of the dataset (missing files: ``OSError``, malformed
    annotations: ``ValueError``) propagate."""
    from detectron2.config import instantiate

    test = cfg.get("dataloader", {}).get("test", None) if hasattr(cfg, "get") else None
    if test is None or "dataset" not in test or "mapper" not in test:
        raise NoValidationSet("the config has no dataloader.test with a dataset and a mapper")
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    names = test.dataset.get("names", "the test set")
    name = names if isinstance(names, str) else "+".join(names)
    dicts = list(instantiate(test.dataset)[:num_images])
    if not any(d.get("annotations") for d in dicts):
        raise NoValidationSet(f"the first {len(dicts)} images of {name} have no annotations")
    return dicts, instantiate(test.mapper), name


def threshold_from_config(model, cfg, num_images: int = DEFAULT_CALIBRATION_IMAGES,
                          floor: float = DEFAULT_SCORE_FLOOR) -> ThresholdChoice:
    """The drawing threshold of the project's tools for ``model`` built from the LazyConfig ``cfg``:
    :func:`calibrate_threshold` on the first ``num_images`` images of ``cfg.dataloader.test``
    (:func:`config_test_set`, whose errors it raises)."""
    dicts, mapper, name = config_test_set(cfg, num_images)
    return calibrate_threshold(model, dicts, mapper, floor=floor, dataset=name)
