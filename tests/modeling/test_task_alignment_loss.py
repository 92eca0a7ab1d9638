"""SD-DETR's task-alignment loss (Eq. 6-7) against hand-computed values, and the repeated positives."""
import math

import pytest
import torch

from sd_detr.modeling import Assignment, HungarianAssigner, HungarianMatcher, SetCriterion, TaskAlignmentLoss
from sd_detr.modeling.losses import box_losses

ALPHA, BETA, GAMMA = 0.25, 0.75, 2.0


def _assignment(batch, query, labels, boxes):
    b, q, l = (torch.tensor(x) for x in (batch, query, labels))
    boxes = torch.tensor(boxes, dtype=torch.float32)
    return Assignment(b, q, l, boxes, b, q, boxes)


def _sig(x):
    return 1 / (1 + math.exp(-x))


def _bce(s, t):
    return -(t * math.log(s) + (1 - t) * math.log(1 - s))


def _neg(x):
    s = _sig(x)
    return s ** GAMMA * _bce(s, 0.0)


def _pos(x, u):
    s = _sig(x)
    t = s ** ALPHA * u ** BETA
    return abs(t - s) ** GAMMA * _bce(s, t)


# pred box [0.4, 0.6] x [0.4, 0.6]; ground truths with known IoU
PRED = [0.5, 0.5, 0.2, 0.2]
GT_IOU_HALF = [0.5, 0.5, 0.1, 0.2]  # inside the prediction, half its area: IoU 0.5
GT_IOU_QUARTER = [0.55, 0.5, 0.1, 0.1]  # [0.5, 0.6] x [0.45, 0.55]: area 0.01 inside 0.04: IoU 0.25
GT_DISJOINT = [0.9, 0.9, 0.1, 0.1]  # no overlap: IoU 0


@pytest.mark.parametrize("logit,gt,iou", [(1.5, GT_IOU_HALF, 0.5), (-0.7, GT_IOU_QUARTER, 0.25), (0.3, GT_DISJOINT, 0.0)])
def test_task_alignment_loss_matches_hand_computed_value(logit, gt, iou):
    logits = torch.tensor([[[0.2, logit], [-1.0, 0.5]]])  # B=1, Q=2, K=2; query 0 is a class-1 positive
    boxes = torch.tensor([[PRED, [0.2, 0.2, 0.1, 0.1]]])
    a = _assignment([0], [0], [1], [gt])
    expected = (_neg(0.2) + _pos(logit, iou) + _neg(-1.0) + _neg(0.5)) / 3.0
    got = TaskAlignmentLoss(ALPHA, BETA, GAMMA)(logits, boxes, a, num_boxes=3.0)
    assert math.isclose(got.item(), expected, rel_tol=1e-5)


def test_positive_whose_target_equals_its_score_costs_nothing():
    # s = 0.5 and u = 0.5 give t = 0.5^0.25 * 0.5^0.75 = 0.5 = s: |t - s|^gamma = 0
    logits = torch.tensor([[[0.0], [1.0]]])
    boxes = torch.tensor([[PRED, PRED]])
    a = _assignment([0], [0], [0], [GT_IOU_HALF])
    loss = TaskAlignmentLoss(ALPHA, BETA, GAMMA)
    assert math.isclose(loss.alignment_targets(logits, boxes, a).item(), 0.5, rel_tol=1e-6)
    assert math.isclose(loss(logits, boxes, a, 1.0).item(), _neg(1.0), rel_tol=1e-5)


def test_positive_without_overlap_is_trained_like_a_negative():
    logits = torch.tensor([[[0.8], [0.8]]])
    boxes = torch.tensor([[PRED, PRED]])
    loss = TaskAlignmentLoss(ALPHA, BETA, GAMMA)
    positive = loss(logits, boxes, _assignment([0], [0], [0], [GT_DISJOINT]), 1.0)
    assert math.isclose(positive.item(), 2 * _neg(0.8), rel_tol=1e-5)


def test_soft_targets_carry_no_gradient_but_the_scores_do():
    logits = torch.tensor([[[1.0, -2.0]]], requires_grad=True)
    boxes = torch.tensor([[PRED]], requires_grad=True)
    a = _assignment([0], [0], [0], [GT_IOU_HALF])
    loss = TaskAlignmentLoss(ALPHA, BETA, GAMMA)
    assert not loss.alignment_targets(logits, boxes, a).requires_grad
    loss(logits, boxes, a, 1.0).backward()
    assert boxes.grad is None or torch.all(boxes.grad == 0)  # the box enters only through the detached t
    s, t = _sig(1.0), _sig(1.0) ** ALPHA * 0.5 ** BETA
    # d/dx [|t - s|^2 BCE(s, t)] with t fixed: 2 (s - t) s (1 - s) BCE + (s - t)^2 (s - t)
    expected = 2 * (s - t) * s * (1 - s) * _bce(s, t) + (s - t) ** 2 * (s - t)
    assert math.isclose(logits.grad[0, 0, 0].item(), expected, rel_tol=1e-4)


def test_multi_hot_bag_gets_one_target_per_label_from_that_labels_box():
    # query 0 carries class 0 (from a ground truth of IoU 0.5) and class 2 (from one of IoU 0.25)
    logits = torch.tensor([[[0.4, -3.0, -0.2]]])
    boxes = torch.tensor([[PRED]])
    a = _assignment([0, 0], [0, 0], [0, 2], [GT_IOU_HALF, GT_IOU_QUARTER])
    loss = TaskAlignmentLoss(ALPHA, BETA, GAMMA)
    t = loss.alignment_targets(logits, boxes, a)
    assert torch.allclose(t, torch.tensor([_sig(0.4) ** ALPHA * 0.5 ** BETA, _sig(-0.2) ** ALPHA * 0.25 ** BETA]))
    expected = _pos(0.4, 0.5) + _neg(-3.0) + _pos(-0.2, 0.25)
    assert math.isclose(loss(logits, boxes, a, 1.0).item(), expected, rel_tol=1e-5)


def test_same_label_from_two_ground_truths_keeps_the_larger_target():
    logits = torch.tensor([[[0.4]]])
    boxes = torch.tensor([[PRED]])
    a = _assignment([0, 0], [0, 0], [0, 0], [GT_IOU_QUARTER, GT_IOU_HALF])
    got = TaskAlignmentLoss(ALPHA, BETA, GAMMA)(logits, boxes, a, 1.0)
    assert math.isclose(got.item(), _pos(0.4, 0.5), rel_tol=1e-5)


# ------------------------------------------------------------------ repeated positives
def _stage(num_queries=12, num_classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"pred_logits": torch.randn(2, num_queries, num_classes, generator=g),
            "pred_boxes": torch.rand(2, num_queries, 4, generator=g) * 0.4 + 0.3}


TARGETS = [
    {"labels": torch.tensor([0, 2, 1]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.5, 0.3, 0.2], [0.5, 0.7, 0.1, 0.1]])},
    {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])},
]


@pytest.mark.parametrize("k", [2, 3])
def test_repeated_positives_match_each_ground_truth_to_k_distinct_queries(k):
    stages = [_stage(seed=0), _stage(seed=1)]
    assignments = HungarianAssigner(num_repeats=k, repeat_stages=[0])(stages, TARGETS, HungarianMatcher())
    repeated, one_to_one = assignments
    for img, t in enumerate(TARGETS):
        rows = repeated.box_batch == img
        queries = repeated.box_query[rows]
        assert len(queries) == k * len(t["labels"]) and len(set(queries.tolist())) == len(queries)
        # every ground truth exactly k times (each target box appears k times among the positives)
        for box in t["boxes"]:
            assert int((repeated.box_target[rows] == box).all(-1).sum()) == k
        assert int((one_to_one.box_batch == img).sum()) == len(t["labels"])


def test_repeated_stage_box_losses_sum_all_k_positives_over_the_number_of_ground_truths():
    """The chosen normalisation: ``num_boxes`` stays the number of ground truths (see the README)."""
    stages = [_stage(seed=0), _stage(seed=1)]
    criterion = SetCriterion(3, HungarianMatcher(), assigner=HungarianAssigner(num_repeats=2, repeat_stages=[0]),
                             weight_dict={"loss_class": 1.0, "loss_bbox": 1.0, "loss_giou": 1.0})
    outputs = {**stages[1], "aux_outputs": [stages[0]]}
    losses = criterion(outputs, TARGETS)
    a0 = criterion.assigner(stages, TARGETS, criterion.matcher)[0]
    assert a0.box_query.numel() == 8
    expected = box_losses(stages[0]["pred_boxes"], a0, num_boxes=4.0)
    assert torch.isclose(losses["loss_bbox_0"], expected["loss_bbox"])
    assert torch.isclose(losses["loss_giou_0"], expected["loss_giou"])
