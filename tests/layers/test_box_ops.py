import math

import torch

from sd_detr.layers import (
    box_cxcywh_to_xyxy,
    box_xyxy_to_cxcywh,
    elementwise_box_iou,
    elementwise_generalized_box_iou,
    generalized_box_iou,
    inverse_sigmoid,
)


def test_cxcywh_xyxy_round_trip_and_known_values():
    cxcywh = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.2, 0.2]])
    xyxy = box_cxcywh_to_xyxy(cxcywh)
    assert torch.allclose(xyxy, torch.tensor([[0.4, 0.3, 0.6, 0.7], [0.0, 0.8, 0.2, 1.0]]))
    assert torch.allclose(box_xyxy_to_cxcywh(xyxy), cxcywh)


def test_giou_matches_hand_computed_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [4.0, 0.0, 5.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    # overlap 1, union 7, hull 9 -> 1/7 - 2/9; disjoint: union 5, hull 10 -> 0 - 5/10; identical -> 1
    expected = torch.tensor([[1 / 7 - 2 / 9, -0.5, 1.0]])
    assert torch.allclose(generalized_box_iou(a, b), expected)
    assert torch.allclose(elementwise_generalized_box_iou(a.expand(3, 4), b), expected[0])
    assert torch.allclose(elementwise_box_iou(a.expand(3, 4), b), torch.tensor([1 / 7, 0.0, 1.0]))


def test_inverse_sigmoid_inverts_sigmoid_and_clamps_with_eps():
    x = torch.tensor([-3.0, 0.0, 2.5])
    assert torch.allclose(inverse_sigmoid(x.sigmoid()), x, atol=1e-5)
    assert math.isclose(inverse_sigmoid(torch.tensor(0.0), eps=1e-5).item(), math.log(1e-5), rel_tol=1e-6)
    assert math.isclose(inverse_sigmoid(torch.tensor(1.0), eps=1e-3).item(), -math.log(1e-3), rel_tol=1e-6)
