"""Every loss term of the set criterion against values computed here by hand (issue 21).

The expected values are plain Python float64 arithmetic written from the formulas, never the
project's loss functions (official paths are in Atten4Vis/ConditionalDETR @8ea7c3f unless named):

- sigmoid focal loss (Lin et al. 2017, alpha 0.25 on the positives, gamma 2), summed over every query
  and class and divided by the number of ground-truth boxes: the official Conditional DETR
  ``sigmoid_focal_loss(...) * src_logits.shape[1]`` (``models/conditional_detr.py:150``) with
  ``loss.mean(1).sum() / num_boxes`` (``models/segmentation.py:223``) is that sum / num_boxes;
- SD-DETR's task-alignment loss (Eq. 6-7): ``t = s^alpha u^beta`` at the positives (s the score of the
  ground-truth class, u the IoU of the query's box with its ground truth), ``|t - s|^gamma BCE(s, t)``
  there and ``s^gamma BCE(s, 0)`` everywhere else, summed and divided by num_boxes like the focal loss;
- L1 over normalised cxcywh boxes and 1 - GIoU over xyxy boxes, each summed and divided by num_boxes
  (``models/conditional_detr.py:185, 190``);
- weights 2 / 5 / 2 (``main.py:86-88``), the mini-detector's losses x 0.1 (DESTR ``models/destr.py:484-487``,
  the project's ``extra_stage_weights``);
- num_boxes = the batch's ground truths averaged over workers, at least 1 (``models/conditional_detr.py:257-261``);
- repeated positives (SD-DETR Sec. 3.2.3 / 4.1: "we repeat the positive samples twice"): neither the
  paper nor any released code gives their normaliser; the project divides a repeated stage by num_boxes,
  not by k x num_boxes (projects/sd_detr/README.md, "Repeated positives, normalisation"), so a stage
  with k repeats sums all k x num_boxes positive terms over num_boxes.

Predictions are built so that the Hungarian matching is obvious (each designated query's box lies close
to its ground truth, every other box far from all of them), and each test asserts that the criterion's
assigner finds exactly the designated matches before comparing losses. Every layer gets its own
predictions and its own matches, so a layer paired with another layer's predictions or matches changes
the value. Inputs are float64, so the tolerance is tight.
"""
import math

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.utils import comm

from sd_detr.modeling import Assignment, HungarianAssigner, HungarianMatcher, SetCriterion, TaskAlignmentLoss

from ..utils import REPO

SD_DETR_MODEL = f"{REPO}/projects/sd_detr/configs/models/sd_detr_r50.py"
ALPHA, GAMMA = 0.25, 2.0  # focal loss (Conditional DETR main.py:89, segmentation.py:198)
TAL_ALPHA, TAL_BETA, TAL_GAMMA = 0.25, 0.75, 2.0  # SD-DETR Sec. 4.1
W_CLASS, W_BBOX, W_GIOU = 2.0, 5.0, 2.0  # Conditional DETR main.py:86-88, DESTR main.py:76-88
MINI_WEIGHT = 0.1  # DESTR models/destr.py:484-487
NUM_CLASSES, NUM_QUERIES = 3, 4
REL = 1e-9  # float64 inputs; the task-alignment targets t are computed in float32 by the project
TAL_REL = 1e-6

# per image: [(label, normalised cxcywh box)]; image 0 has no object, so every query of it is a negative
GT = [
    [],
    [(2, (0.30, 0.35, 0.20, 0.30)), (0, (0.70, 0.65, 0.30, 0.20))],
]
NUM_GT = sum(len(g) for g in GT)
# boxes far from both ground truths (the matcher never takes them while a near box is free)
FAR = [(0.88, 0.12, 0.10, 0.12), (0.12, 0.88, 0.12, 0.08), (0.90, 0.90, 0.08, 0.10), (0.10, 0.10, 0.06, 0.10)]


# ---------------------------------------------------------------------------------------- hand formulas
def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def _bce(p, t):
    return -(t * math.log(p) + (1.0 - t) * math.log(1.0 - p))


def _xyxy(b):
    cx, cy, w, h = b
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def _iou_giou(pred, gt):
    """IoU and GIoU of two cxcywh boxes, computed on their xyxy corners."""
    p, g = _xyxy(pred), _xyxy(gt)
    iw = max(0.0, min(p[2], g[2]) - max(p[0], g[0]))
    ih = max(0.0, min(p[3], g[3]) - max(p[1], g[1]))
    inter = iw * ih
    union = (p[2] - p[0]) * (p[3] - p[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
    hull = (max(p[2], g[2]) - min(p[0], g[0])) * (max(p[3], g[3]) - min(p[1], g[1]))
    iou = inter / union
    return iou, iou - (hull - union) / hull


class _Focal:
    """Sigmoid focal loss of one (query, class) entry: alpha_t (1 - p_t)^gamma (-log p_t)."""

    @staticmethod
    def positive(x, iou):
        p = _sig(x)
        return ALPHA * (1 - p) ** GAMMA * -math.log(p)

    @staticmethod
    def negative(x):
        p = _sig(x)
        return (1 - ALPHA) * p ** GAMMA * -math.log(1 - p)


class _TaskAlignment:
    """SD-DETR Eq. 6-7 for one entry: t = s^alpha u^beta, |t - s|^gamma BCE(s, t); s^gamma BCE(s, 0)."""

    @staticmethod
    def positive(x, iou):
        s = _sig(x)
        t = s ** TAL_ALPHA * iou ** TAL_BETA
        return abs(t - s) ** TAL_GAMMA * _bce(s, t)

    @staticmethod
    def negative(x):
        s = _sig(x)
        return s ** TAL_GAMMA * _bce(s, 0.0)


def hand_sums(stage, matches, term, gt=GT):
    """Unweighted, unnormalised sums of one stage: (classification, L1, 1 - GIoU).

    stage: {"pred_logits": [B, Q, K], "pred_boxes": [B, Q, 4] cxcywh}; matches: {(image, query): gt index}.
    """
    logits, boxes = stage["pred_logits"].tolist(), stage["pred_boxes"].tolist()
    cls = l1 = giou = 0.0
    for b, per_query in enumerate(logits):
        for q, row in enumerate(per_query):
            g = matches.get((b, q))
            label, box = gt[b][g] if g is not None else (None, None)
            iou, gi = _iou_giou(boxes[b][q], box) if g is not None else (None, None)
            for c, x in enumerate(row):
                cls += term.positive(x, iou) if c == label else term.negative(x)
            if g is not None:
                l1 += sum(abs(p - t) for p, t in zip(boxes[b][q], box))  # cxcywh, not xyxy
                giou += 1.0 - gi
    return cls, l1, giou


def hand_losses(stage, matches, term, num_boxes, weight=1.0, gt=GT):
    cls, l1, giou = hand_sums(stage, matches, term, gt)
    return {"loss_class": weight * W_CLASS * cls / num_boxes, "loss_bbox": weight * W_BBOX * l1 / num_boxes,
            "loss_giou": weight * W_GIOU * giou / num_boxes}


# ---------------------------------------------------------------------------------------- predictions
def make_stage(layer, matches, num_queries=NUM_QUERIES, gt=GT):
    """Predictions of one layer: each designated (image, query) -> gt gets a box close to that ground
    truth, with offsets that differ per layer and query (and between centre and size, so L1 on xyxy
    corners would differ from L1 on cxcywh); the other queries get far boxes. Logits in [-2, 2]."""
    bsz = len(gt)
    logits = torch.empty(bsz, num_queries, NUM_CLASSES, dtype=torch.float64)
    boxes = torch.empty(bsz, num_queries, 4, dtype=torch.float64)
    for b in range(bsz):
        for q in range(num_queries):
            for c in range(NUM_CLASSES):
                logits[b, q, c] = 2.0 * math.sin(1.3 * layer + 2.1 * q + 0.7 * c + 0.9 * b + 0.4)
            g = matches.get((b, q))
            if g is None:
                boxes[b, q] = torch.tensor(FAR[(q + layer) % len(FAR)], dtype=torch.float64)
            else:
                d = 0.01 * (1 + (layer + q) % 3)
                cx, cy, w, h = gt[b][g][1]
                boxes[b, q] = torch.tensor([cx + d, cy - 0.5 * d, w + 1.5 * d, h - d], dtype=torch.float64)
    return {"pred_logits": logits, "pred_boxes": boxes}


def targets_of(gt=GT):
    return [{"labels": torch.tensor([lab for lab, _ in g], dtype=torch.int64),
             "boxes": torch.tensor([box for _, box in g], dtype=torch.float64).reshape(-1, 4)} for g in gt]


def as_matches(assignment, targets):
    """{(image, query): gt index} of an assignment's localisation rows (and a check that its
    classification rows are the same pairs, with the ground truth's label and box)."""
    out = {}
    for b, q, box in zip(assignment.box_batch.tolist(), assignment.box_query.tolist(), assignment.box_target):
        hits = (targets[b]["boxes"] == box).all(-1).nonzero().flatten().tolist()
        assert len(hits) == 1 and (b, q) not in out
        out[(b, q)] = hits[0]
    cls = list(zip(assignment.cls_batch.tolist(), assignment.cls_query.tolist(), assignment.cls_label.tolist()))
    assert sorted(cls) == sorted((b, q, int(targets[b]["labels"][g])) for (b, q), g in out.items())
    return out


def assert_losses(got, expected, rel):
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert math.isclose(got[k].item(), v, rel_tol=rel, abs_tol=1e-12), (k, got[k].item(), v)


def sd_detr_criterion():
    """The criterion of the shipped SD-DETR-R50 model file (6 decoder layers, k = 2 in layers 0-4)."""
    cfg = LazyConfig.load(SD_DETR_MODEL)
    cfg.model.num_classes = NUM_CLASSES
    return instantiate(cfg.model.criterion), cfg.model.decoder.num_layers


# one-to-one designations per layer (image 1: gt 0 and gt 1), different in every layer
ONE_TO_ONE = [{(1, 2): 0, (1, 0): 1}, {(1, 1): 0, (1, 3): 1}, {(1, 3): 0, (1, 2): 1},
              {(1, 0): 0, (1, 1): 1}, {(1, 2): 0, (1, 3): 1}, {(1, 1): 0, (1, 2): 1}]
# k = 2: every query of image 1 is a positive, two per ground truth, paired differently in every layer
REPEATED = [{(1, 0): 0, (1, 2): 0, (1, 1): 1, (1, 3): 1}, {(1, 1): 0, (1, 3): 0, (1, 0): 1, (1, 2): 1},
            {(1, 0): 0, (1, 1): 0, (1, 2): 1, (1, 3): 1}, {(1, 2): 0, (1, 3): 0, (1, 0): 1, (1, 1): 1},
            {(1, 0): 0, (1, 3): 0, (1, 1): 1, (1, 2): 1}]


# ---------------------------------------------------------------------------------------- the tests
def test_conditional_detr_criterion_gives_the_hand_focal_l1_giou_of_every_layer_and_known_queries():
    """The default criterion (focal loss, one-to-one in every layer, weights 2 / 5 / 2) over 3 layers and
    denoising-style known queries: every key equals the hand value of its own layer.

    Bugs caught: focal alpha on the wrong side (0.75 on the positives) or dropped; gamma dropped; the
    focal loss averaged over queries (the official ``mean(1)`` without ``* num_queries``) or over
    classes; aux layer i scored with layer i+1's predictions or matches, or the last layer's losses
    taken from an aux layer; L1 on xyxy corners instead of cxcywh; GIoU on cxcywh; a weight applied to
    the wrong term (GIoU's 2 on L1); a term or a layer dropped; the empty image given positives; the
    known queries matched instead of trained with their assignment, or supervised in the last layer
    only. (Here num_boxes = 2 = the number of images = the positives per one-to-one layer: the
    normaliser's own bugs are the other tests' business.)"""
    targets = targets_of()
    stages = [make_stage(i, m) for i, m in enumerate(ONE_TO_ONE[:3])]
    criterion = SetCriterion(NUM_CLASSES, HungarianMatcher())
    assert [as_matches(a, targets) for a in criterion.assigner(stages, targets, criterion.matcher)] == ONE_TO_ONE[:3]

    # known queries (2 per image): image 1's known query 0 -> gt 1, known query 1 -> gt 0, in every layer;
    # their predictions are not the ones the matcher would pick (known query 0 sits near gt 0)
    known_matches = {(1, 0): 1, (1, 1): 0}
    known_stages = [make_stage(10 + i, {(1, 0): 0, (1, 1): 1}, num_queries=2) for i in range(3)]
    known_assignment = Assignment.from_matches(
        [(torch.empty(0, dtype=torch.int64),) * 2, (torch.tensor([0, 1]), torch.tensor([1, 0]))], targets)
    outputs = {**stages[-1], "aux_outputs": stages[:-1],
               "known_outputs": {"name": "dn", "assignment": known_assignment, "stages": known_stages}}
    losses = criterion(outputs, targets)

    expected = {}
    for i, (stage, matches) in enumerate(zip(stages, ONE_TO_ONE)):
        suffix = "" if i == 2 else f"_{i}"
        expected.update({k + suffix: v for k, v in hand_losses(stage, matches, _Focal, NUM_GT).items()})
    for i, stage in enumerate(known_stages):
        suffix = "_dn" if i == 2 else f"_dn_{i}"
        expected.update({k + suffix: v for k, v in hand_losses(stage, known_matches, _Focal, NUM_GT).items()})
    assert_losses(losses, expected, REL)


def test_sd_detr_criterion_gives_the_hand_tal_of_every_layer_with_repeats_and_the_focal_mini_detector():
    """The shipped SD-DETR criterion (projects/sd_detr/configs/models/sd_detr_r50.py): task-alignment loss
    with k = 2 repeated positives in layers 0..4, one-to-one in the last, and the mini-detector's focal
    loss x 0.1; every key equals the hand value of its own layer.

    Bugs caught: t = s^beta u^alpha, t without u^beta, u taken on cxcywh boxes instead of xyxy; the
    |t - s|^gamma factor dropped or the negatives' s^gamma dropped; the focal (0.25 / 0.75) alpha
    weights in TAL; the mini-detector trained with TAL instead of the focal loss, given repeated
    positives, or its 0.1 applied to the class loss only or not at all; repeats in the last layer or
    in no layer; a repeated stage
    divided by k x num_boxes (or by its number of positives) instead of num_boxes; aux layer i scored
    with layer i+1's predictions or matches; the config's weights or TAL exponents not reaching the loss."""
    criterion, num_layers = sd_detr_criterion()
    assert num_layers == 6
    targets = targets_of()
    designations = REPEATED + [ONE_TO_ONE[0]]
    stages = [make_stage(i, m) for i, m in enumerate(designations)]
    assert [as_matches(a, targets) for a in criterion.assigner(stages, targets, criterion.matcher)] == designations

    mini_matches = {(1, 3): 0, (1, 1): 1}
    mini = make_stage(20, mini_matches, num_queries=5)
    mini_found = criterion.matcher(mini["pred_logits"], mini["pred_boxes"], targets)  # one-to-one, no repeats
    assert as_matches(Assignment.from_matches(mini_found, targets), targets) == mini_matches
    outputs = {**stages[-1], "aux_outputs": stages[:-1], "extra_outputs": {"mini_detector": mini}}
    losses = criterion(outputs, targets)

    expected = {}
    for i, (stage, matches) in enumerate(zip(stages, designations)):
        suffix = "" if i == num_layers - 1 else f"_{i}"
        # a repeated stage: all 2 x NUM_GT positives summed, divided by NUM_GT (not 2 x NUM_GT)
        expected.update({k + suffix: v for k, v in hand_losses(stage, matches, _TaskAlignment, NUM_GT).items()})
    expected.update({k + "_mini_detector": v
                     for k, v in hand_losses(mini, mini_matches, _Focal, NUM_GT, weight=MINI_WEIGHT).items()})
    assert_losses(losses, expected, TAL_REL)


@pytest.mark.parametrize("k", [2, 3])
def test_repeated_stage_sums_all_k_positives_and_divides_by_the_number_of_ground_truths(k):
    """One ground truth, k queries matched to it in layer 0 and one in the last layer: layer 0's losses
    are the hand sums over all k positives divided by num_boxes = 1 (the project's choice, see the
    module docstring), so they grow with k while the last layer's do not.

    Bugs caught: the normaliser num_boxes x k (H-DETR's one-to-many) or the number of positives instead
    of num_boxes, or num_boxes counting images (2) instead of ground truths (1); only the first of the
    k positives trained (duplicates collapsed); the k positives given the same query; repeats in the
    last layer."""
    gt = [[(1, (0.45, 0.55, 0.30, 0.25))], []]
    targets = targets_of(gt)
    criterion = SetCriterion(NUM_CLASSES, HungarianMatcher(),
                             assigner=HungarianAssigner(num_repeats=k, repeat_stages=[0]),
                             class_loss=TaskAlignmentLoss(TAL_ALPHA, TAL_BETA, TAL_GAMMA))
    designations = [{(0, q): 0 for q in range(k)}, {(0, 3): 0}]
    stages = [make_stage(i, m, gt=gt) for i, m in enumerate(designations)]
    assert [as_matches(a, targets) for a in criterion.assigner(stages, targets, criterion.matcher)] == designations
    losses = criterion({**stages[1], "aux_outputs": [stages[0]]}, targets)
    expected = {}
    for stage, matches, suffix in zip(stages, designations, ("_0", "")):
        expected.update({n + suffix: v for n, v in hand_losses(stage, matches, _TaskAlignment, 1.0, gt=gt).items()})
    assert_losses(losses, expected, TAL_REL)


def test_num_boxes_is_the_worker_average_of_the_ground_truths_at_least_one(monkeypatch):
    """num_boxes = (sum over workers of the ground truths) / world size, clamped at 1 (official
    ``models/conditional_detr.py:257-261``); every loss of every layer is divided by it.

    Bugs caught: the sum over workers not divided by the world size (or the local count kept); the
    clamp dropped (a batch without objects divides by 0); the clamp applied before the average; a
    batch without objects given box losses or positives."""
    targets = targets_of()
    stages = [make_stage(i, m) for i, m in enumerate(ONE_TO_ONE[:2])]
    outputs = {**stages[-1], "aux_outputs": stages[:-1]}
    criterion = SetCriterion(NUM_CLASSES, HungarianMatcher())

    other_worker = {"boxes": 3.0}

    def all_reduce(tensor, *args, **kwargs):  # the other worker's count is added in place (SUM)
        tensor += other_worker["boxes"]

    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    num_boxes = (NUM_GT + 3.0) / 2  # 2.5
    assert criterion.num_boxes(targets, "cpu") == num_boxes
    expected = {}
    for i, (stage, matches) in enumerate(zip(stages, ONE_TO_ONE)):
        suffix = "" if i == 1 else f"_{i}"
        expected.update({k + suffix: v for k, v in hand_losses(stage, matches, _Focal, num_boxes).items()})
    assert_losses(criterion(outputs, targets), expected, REL)

    # no object on any worker: divided by 1, no positive, box losses exactly 0
    other_worker["boxes"] = 0.0
    empty = [[], []]
    assert criterion.num_boxes(targets_of(empty), "cpu") == 1.0
    other_worker["boxes"] = 1.0  # (0 + 1) / 2 = 0.5, clamped to 1
    assert criterion.num_boxes(targets_of(empty), "cpu") == 1.0
    empty_stages = [make_stage(i, {}, gt=empty) for i in range(2)]
    losses = criterion({**empty_stages[-1], "aux_outputs": empty_stages[:-1]}, targets_of(empty))
    expected = {}
    for i, stage in enumerate(empty_stages):
        suffix = "" if i == 1 else f"_{i}"
        expected.update({k + suffix: v for k, v in hand_losses(stage, {}, _Focal, 1.0, gt=empty).items()})
    assert expected["loss_bbox"] == 0.0 and expected["loss_class"] > 0
    assert_losses(losses, expected, REL)
