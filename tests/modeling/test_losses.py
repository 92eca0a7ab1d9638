import math

import torch

from sd_detr.modeling import Assignment, FocalLoss
from sd_detr.modeling.losses import box_losses, one_hot_targets


def _assignment(batch, query, labels, boxes):
    b, q, l = (torch.tensor(x) for x in (batch, query, labels))
    boxes = torch.tensor(boxes, dtype=torch.float32)
    return Assignment(b, q, l, boxes, b, q, boxes)


def test_focal_loss_matches_hand_computed_value():
    logits = torch.tensor([[[0.0, 2.0], [-1.0, 0.5]]])  # B=1, Q=2, K=2
    a = _assignment([0], [0], [1], [[0.5, 0.5, 0.2, 0.2]])  # query 0 is class 1
    alpha, gamma = 0.25, 2.0

    def term(x, t):
        p = 1 / (1 + math.exp(-x))
        ce = -math.log(p) if t else -math.log(1 - p)
        pt = p if t else 1 - p
        return (alpha if t else 1 - alpha) * ce * (1 - pt) ** gamma

    expected = term(0.0, 0) + term(2.0, 1) + term(-1.0, 0) + term(0.5, 0)
    got = FocalLoss(alpha, gamma)(logits, None, a, num_boxes=2.0)
    assert math.isclose(got.item(), expected / 2.0, rel_tol=1e-5)


def test_one_hot_targets_is_multi_hot_for_bags_and_keeps_the_largest_value():
    logits = torch.zeros(1, 3, 4)
    a = _assignment([0, 0, 0], [1, 1, 1], [2, 3, 2], [[0.5] * 4] * 3)
    t = one_hot_targets(logits, a, values=torch.tensor([0.3, 0.6, 0.9]))
    assert t[0, 1, 2] == 0.9 and t[0, 1, 3] == 0.6
    assert t.sum().item() == 1.5


def test_box_losses_l1_and_giou_hand_computed():
    pred = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.2, 0.2]]])
    a = _assignment([0], [0], [0], [[0.6, 0.5, 0.2, 0.2]])
    out = box_losses(pred, a, num_boxes=1.0)
    assert math.isclose(out["loss_bbox"].item(), 0.1, rel_tol=1e-5)
    # boxes [0.4,0.6]x[0.4,0.6] and [0.5,0.7]x[0.4,0.6]: inter 0.02, union 0.06, hull 0.06 -> giou 1/3
    assert math.isclose(out["loss_giou"].item(), 1 - 1 / 3, rel_tol=1e-5)
