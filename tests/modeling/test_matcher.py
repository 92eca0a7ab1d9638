import itertools

import pytest
import torch

from sd_detr.layers import box_cxcywh_to_xyxy, generalized_box_iou
from sd_detr.modeling import HungarianMatcher


def _random_case(num_queries, num_gt, num_classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, num_queries, num_classes, generator=g)
    boxes = torch.rand(1, num_queries, 4, generator=g) * 0.5 + 0.2
    target = {"labels": torch.randint(0, num_classes, (num_gt,), generator=g),
              "boxes": torch.rand(num_gt, 4, generator=g) * 0.5 + 0.2}
    return logits, boxes, target


def _cost(matcher, logits, boxes, target):
    p = logits[0].sigmoid()
    a, gm = 0.25, 2.0
    pos = a * (1 - p) ** gm * -(p + 1e-8).log()
    neg = (1 - a) * p ** gm * -(1 - p + 1e-8).log()
    c_cls = (pos - neg)[:, target["labels"]]
    c_l1 = torch.cdist(boxes[0], target["boxes"], p=1)
    c_giou = -generalized_box_iou(box_cxcywh_to_xyxy(boxes[0]), box_cxcywh_to_xyxy(target["boxes"]))
    return 2 * c_cls + 5 * c_l1 + 2 * c_giou


@pytest.mark.parametrize("num_queries,num_gt,seed", [(4, 2, 0), (5, 3, 1), (6, 4, 2), (3, 3, 3)])
def test_matching_is_the_minimum_cost_permutation(num_queries, num_gt, seed):
    matcher = HungarianMatcher(2.0, 5.0, 2.0)
    logits, boxes, target = _random_case(num_queries, num_gt, seed=seed)
    (rows, cols), = matcher(logits, boxes, [target])
    cost = _cost(matcher, logits, boxes, target)
    best = min(sum(cost[q, j] for j, q in enumerate(perm)) for perm in itertools.permutations(range(num_queries), num_gt))
    got = sum(cost[q, j] for q, j in zip(rows.tolist(), cols.tolist()))
    assert len(rows) == num_gt and sorted(cols.tolist()) == list(range(num_gt))
    assert torch.isclose(torch.as_tensor(got), torch.as_tensor(best), atol=1e-5)


def test_batched_matching_equals_matching_each_image_alone():
    matcher = HungarianMatcher()
    cases = [_random_case(6, n, seed=s) for s, n in [(0, 2), (1, 0), (2, 3)]]
    logits = torch.cat([c[0] for c in cases])
    boxes = torch.cat([c[1] for c in cases])
    targets = [c[2] for c in cases]
    batched = matcher(logits, boxes, targets)
    for i, (lg, bx, tg) in enumerate(cases):
        alone = matcher(lg, bx, [tg])[0]
        assert torch.equal(batched[i][0], alone[0]) and torch.equal(batched[i][1], alone[1])
    assert batched[1][0].numel() == 0


def test_repeated_matching_gives_k_distinct_queries_per_ground_truth():
    matcher = HungarianMatcher()
    logits, boxes, target = _random_case(10, 3, seed=5)
    (rows, cols), = matcher(logits, boxes, [target], num_repeats=2)
    assert len(set(rows.tolist())) == len(rows) == 6
    assert sorted(cols.tolist()) == [0, 0, 1, 1, 2, 2]
