"""The matching and the assigners against references written here from their documented rules, on
small random cases: the exact assignment (which query gets which ground truth), not only the counts.

- HungarianMatcher (sd_detr/modeling/matcher.py) against enumeration of every admissible assignment,
  with k = 1, 2, 3 repeats, batches of 1-3 images, images without ground truth. The cost is written
  here again from the docstring (official Conditional DETR ``models/matcher.py:68-83``): focal class
  cost, L1 and GIoU (torchvision's ``generalized_box_iou``), in float64. Inputs are continuous random
  draws, redrawn until the optimum is unique (the second best total is larger by a margin), so the
  exact assignment is the only right answer.
- HungarianAssigner with ``repeat_stages`` (negative indices): per stage, the optimum with the k that
  stage should use.
- CrossStageAssigner against a plain-loop version of StageInteractor's rule (appendix J, and the
  class docstring): the full multi-hot bags with each label's box, the localisation positives, the
  normalisers, on random multi-stage, multi-image inputs.

Bugs these catch that count checks do not: repeated ground truths laid out in another order than the
``cols % n`` read-back assumes (every target still gets k queries, but not its cheapest ones), k rounds of
one-to-one matching instead of the joint optimum, an image matched with another image's costs, a bag
gathered with the ground-truth indices of another image, a label's box not the best-overlapping one.
"""
import itertools
from typing import Dict, List, Optional, Sequence

import numpy as np
import pytest
import torch
from torchvision.ops import box_convert, box_iou, generalized_box_iou

from sd_detr.modeling import CrossStageAssigner, HungarianAssigner, HungarianMatcher

NUM_CLASSES = 3
MARGIN = 1e-3  # the second-best total must exceed the best by this (float32 matcher vs float64 reference)


# ------------------------------------------------------------------------------------ references
def rand_boxes(n: int, g: torch.Generator) -> torch.Tensor:
    """[n, 4] normalised cxcywh boxes well inside the image."""
    centre = torch.rand(n, 2, generator=g) * 0.6 + 0.2
    size = torch.rand(n, 2, generator=g) * 0.35 + 0.05
    return torch.cat([centre, size], dim=1)


def xyxy(boxes: torch.Tensor) -> torch.Tensor:
    return box_convert(boxes, "cxcywh", "xyxy")


def reference_cost(logits, boxes, labels, gt_boxes, weights=(2.0, 5.0, 2.0), alpha=0.25, gamma=2.0) -> np.ndarray:
    """[Q, n] float64 cost of one image, from the matcher's documented formula:
    w_class * (pos_focal - neg_focal)[label] + w_bbox * L1(cxcywh) - w_giou * GIoU(xyxy)."""
    p = logits.double().sigmoid()
    pos = alpha * (1 - p) ** gamma * -torch.log(p + 1e-8)
    neg = (1 - alpha) * p ** gamma * -torch.log(1 - p + 1e-8)
    cost_class = (pos - neg)[:, labels]
    b, t = boxes.double(), gt_boxes.double()
    cost_l1 = (b[:, None, :] - t[None, :, :]).abs().sum(-1)
    giou = generalized_box_iou(xyxy(b), xyxy(t))
    w_class, w_bbox, w_giou = weights
    return (w_class * cost_class + w_bbox * cost_l1 - w_giou * giou).numpy()


def enumerate_assignments(num_queries: int, num_gt: int, k: int) -> np.ndarray:
    """Every admissible matching of Q queries to the k copies of n targets, as [M, Q] arrays of the
    target index of each query (-1: unmatched). Admissible = injective from the k * n target slots to
    the queries, as many pairs as possible: min(Q, k * n) queries matched, no target more than k times.
    (Copies of one target are interchangeable, so this lists each distinct query -> target map once.)"""
    combos = np.array(list(itertools.product(range(-1, num_gt), repeat=num_queries)), dtype=np.int64)
    matched = (combos >= 0).sum(1)
    per_target = np.stack([(combos == t).sum(1) for t in range(num_gt)], 1) if num_gt else np.zeros((len(combos), 0))
    ok = (matched == min(num_queries, k * num_gt)) & (per_target <= k).all(1)
    return combos[ok]


def brute_force(cost: np.ndarray, k: int):
    """(best map [Q] of target per query (-1 none), best total, second-best total) over all admissible maps."""
    num_queries, num_gt = cost.shape
    combos = enumerate_assignments(num_queries, num_gt, k)
    padded = np.concatenate([cost, np.zeros((num_queries, 1))], 1)  # column -1: unmatched, cost 0
    totals = padded[np.arange(num_queries)[None, :], combos].sum(1)
    order = np.argsort(totals, kind="stable")
    second = totals[order[1]] if len(order) > 1 else np.inf
    return combos[order[0]], totals[order[0]], second


def draw_image(seed: int, num_queries: int, num_gt: int, k: int, weights=(2.0, 5.0, 2.0), target=None):
    """One image's (logits [Q, K], boxes [Q, 4] cxcywh, target, best map [Q], cost [Q, n]) with a unique
    optimum for k repeats (redrawn from the next seeds until the margin holds); ``target``: keep this one."""
    given = target
    for attempt in range(100):
        g = torch.Generator().manual_seed(seed * 1000 + attempt)
        logits = torch.randn(num_queries, NUM_CLASSES, generator=g) * 2
        boxes = rand_boxes(num_queries, g)
        target = given or {"labels": torch.randint(0, NUM_CLASSES, (num_gt,), generator=g),
                           "boxes": rand_boxes(num_gt, g)}
        cost = reference_cost(logits, boxes, target["labels"], target["boxes"], weights)
        best, best_total, second = brute_force(cost, k)
        if second - best_total > MARGIN:
            return logits, boxes, target, best, cost
    raise RuntimeError(f"no case with a unique optimum from seed {seed}")


def pairs_of(query_idx: torch.Tensor, gt_idx: torch.Tensor) -> List[tuple]:
    return list(zip(query_idx.tolist(), gt_idx.tolist()))


def pairs_from_map(best: np.ndarray) -> List[tuple]:
    return [(q, int(t)) for q, t in enumerate(best) if t >= 0]


# ------------------------------------------------------------------------------------ matcher
# (k, batch sizes, queries, targets per image): k * n <= Q and k * n > Q, images without targets
MATCHER_CASES = [
    (1, 1, 4, [3]), (1, 2, 5, [2, 0]), (1, 3, 6, [4, 1, 3]), (1, 1, 3, [3]), (1, 2, 4, [5, 2]),
    (2, 1, 6, [3]), (2, 2, 5, [2, 1]), (2, 3, 6, [2, 0, 3]), (2, 1, 4, [3]), (2, 2, 6, [1, 2]),
    (3, 1, 6, [2]), (3, 2, 6, [1, 2]), (3, 3, 5, [1, 0, 2]), (3, 1, 4, [2]), (3, 2, 6, [2, 3]),
]


@pytest.mark.parametrize("weights", [(2.0, 5.0, 2.0), (1.0, 2.0, 4.0)], ids=["default", "other_weights"])
@pytest.mark.parametrize("k,batch,num_queries,num_gt", MATCHER_CASES)
def test_matcher_assignment_is_the_unique_brute_force_optimum_per_image(k, batch, num_queries, num_gt, weights):
    """Bugs caught: repeats read back as the wrong target (``cols % n`` with another tiling), repeats
    matched round by round instead of jointly, an image matched with another image's cost matrix, a
    cost term with the wrong sign or weight. Counts alone would not see the first three."""
    matcher = HungarianMatcher(*weights)
    images = [draw_image(100 * k + 10 * i + num_queries + sum(num_gt), num_queries, num_gt[i], k, weights)
              for i in range(batch)]
    logits = torch.stack([im[0] for im in images])
    boxes = torch.stack([im[1] for im in images])
    targets = [im[2] for im in images]
    matches = matcher(logits, boxes, targets, num_repeats=k)
    costs = matcher.cost_matrix(logits, boxes, targets)  # [B, Q, sum n]
    assert len(matches) == batch
    offset = 0
    for i, ((query_idx, gt_idx), (_, _, target, best, ref_cost)) in enumerate(zip(matches, images)):
        n = num_gt[i]
        # the matcher's own cost matrix is the documented formula, block of image i (not another image's)
        np.testing.assert_allclose(costs[i, :, offset:offset + n].double().numpy(), ref_cost, rtol=1e-4, atol=1e-4)
        pairs = pairs_of(query_idx, gt_idx)
        queries = [q for q, _ in pairs]
        assert queries == sorted(set(queries)), f"image {i}: queries not distinct or not sorted: {queries}"
        per_target = [sum(t == j for _, t in pairs) for j in range(n)]
        if k * n <= num_queries:
            assert per_target == [k] * n, f"image {i}: queries per target {per_target}, expected {k} each"
        else:
            assert len(pairs) == num_queries and max(per_target) <= k, (i, per_target)
        # the exact assignment: each query reported with the target the optimum gives it
        assert sorted(pairs) == pairs_from_map(best), f"image {i} (k={k}): {pairs} != optimum {pairs_from_map(best)}"
        # the reported target of each query is the one whose cost counts: the total is the minimum
        total = sum(ref_cost[q, t] for q, t in pairs)
        assert total == pytest.approx(brute_force(ref_cost, k)[1], abs=1e-6)
        offset += n


def test_matcher_on_images_without_targets_returns_empty_matches():
    """Bug caught: an image without ground truth given another image's matches (or a crash)."""
    logits, boxes, target, _, _ = draw_image(7, 4, 2, 1)
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}
    for k in (1, 2):
        out = HungarianMatcher()(torch.stack([logits, logits]), torch.stack([boxes, boxes]), [empty, target], k)
        assert out[0][0].numel() == 0 and out[0][1].numel() == 0
        assert out[1][0].numel() == min(4, 2 * k)


# ------------------------------------------------------------------------------------ HungarianAssigner
class RecordingMatcher(HungarianMatcher):
    """The real matcher, remembering the k of each call (in call order)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, pred_logits, pred_boxes, targets, num_repeats=1):
        self.calls.append(num_repeats)
        return super().forward(pred_logits, pred_boxes, targets, num_repeats)


def reference_repeats(stage: int, num_stages: int, k: int, repeat_stages: Optional[Sequence[int]]) -> int:
    """k where the stage is listed (Python indexing: -1 is the last stage), 1 elsewhere; None: everywhere."""
    if repeat_stages is None:
        return k
    return k if stage in [s if s >= 0 else num_stages + s for s in repeat_stages] else 1


@pytest.mark.parametrize("k,repeat_stages", [(2, None), (2, [-1]), (3, [0, -2]), (2, [1]), (3, [-3, 3])])
def test_hungarian_assigner_uses_each_stages_k_and_its_own_predictions(k, repeat_stages):
    """Bugs caught: negative repeat_stages not wrapped, repeats in a stage that is not listed, a stage
    matched with another stage's predictions, assignment rows with another query's target."""
    num_stages, num_queries, num_gt = 4, 6, [2, 1]
    ks = [reference_repeats(s, num_stages, k, repeat_stages) for s in range(num_stages)]
    targets = [draw_image(500 + i, num_queries, n, 1)[2] for i, n in enumerate(num_gt)]
    stages = []
    for s in range(num_stages):  # each stage's predictions with a unique optimum for its own k
        images = [draw_image(600 + 37 * s + 7 * i + k, num_queries, num_gt[i], ks[s], target=t)
                  for i, t in enumerate(targets)]
        stages.append({"pred_logits": torch.stack([im[0] for im in images]),
                       "pred_boxes": torch.stack([im[1] for im in images])})
    matcher = RecordingMatcher()
    assignments = HungarianAssigner(num_repeats=k, repeat_stages=repeat_stages)(stages, targets, matcher)
    assert matcher.calls == ks
    for s, a in enumerate(assignments):
        want = set()
        for i, t in enumerate(targets):
            cost = reference_cost(stages[s]["pred_logits"][i], stages[s]["pred_boxes"][i], t["labels"], t["boxes"])
            best = brute_force(cost, ks[s])[0]  # unique: draw_image redrew this stage's predictions until it was
            want |= {(i, q, int(t["labels"][g]), tuple(t["boxes"][g].tolist())) for q, g in pairs_from_map(best)}
        got = [(b, q, c, tuple(box)) for b, q, c, box in zip(a.cls_batch.tolist(), a.cls_query.tolist(),
                                                              a.cls_label.tolist(), a.cls_box.tolist())]
        assert len(got) == len(set(got)) and set(got) == want, f"stage {s} (k={ks[s]})"
        got_boxes = [(b, q, tuple(box)) for b, q, box in zip(a.box_batch.tolist(), a.box_query.tolist(),
                                                             a.box_target.tolist())]
        assert sorted(got_boxes) == sorted((b, q, box) for b, q, _, box in want), f"stage {s} box positives"


# ------------------------------------------------------------------------------------ cross-stage assigner
class ScriptedRandomMatcher:
    """Stands in for the matcher: given random matches per stage (recognised by the logits tensor),
    remembering the k each stage asked for."""

    def __init__(self, per_stage):
        self.per_stage = per_stage
        self.calls = []

    def __call__(self, pred_logits, pred_boxes, targets, num_repeats=1):
        self.calls.append(num_repeats)
        for logits, matches in self.per_stage:
            if logits is pred_logits:
                return [(torch.tensor([q for q, _ in m], dtype=torch.int64),
                         torch.tensor([g for _, g in m], dtype=torch.int64)) for m in matches]
        raise KeyError("unknown stage")


def random_matches(g: torch.Generator, num_queries: int, num_gt: int, k: int) -> List[tuple]:
    """A random admissible k-to-one matching of one image: [(query, gt)] sorted by query."""
    slots = (torch.arange(k * num_gt) % max(num_gt, 1)).tolist()
    slots = [slots[i] for i in torch.randperm(len(slots), generator=g).tolist()][:num_queries]
    queries = torch.randperm(num_queries, generator=g)[:len(slots)].tolist()
    return sorted(zip(queries, slots))


def jitter(box: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A box near ``box`` (cxcywh): its IoU with it spreads over about 0.1 .. 1."""
    scale = float(torch.rand(1, generator=g)) * 0.6
    centre = box[:2] + (torch.rand(2, generator=g) - 0.5) * box[2:] * scale
    size = box[2:] * torch.exp((torch.rand(2, generator=g) - 0.5) * scale)
    return torch.cat([centre, size]).clamp(0.01, 0.99)


def draw_stages(seed: int, num_stages: int, num_queries: int, num_gt: Sequence[int], ks: Sequence[int],
                eta: float):
    """Random multi-stage inputs: targets of 2 classes (so one bag often meets two ground truths of a
    class), random matches per stage, and every stage's boxes near a ground truth some stage matched to
    that query (or a random one), so that bag candidates fall on both sides of eta."""
    for attempt in range(100):
        g = torch.Generator().manual_seed(seed * 1000 + attempt)
        targets = [{"labels": torch.randint(0, 2, (n,), generator=g), "boxes": rand_boxes(n, g)} for n in num_gt]
        matches = [[random_matches(g, num_queries, n, ks[s]) for n in num_gt] for s in range(num_stages)]
        stages = []
        for s in range(num_stages):
            boxes = rand_boxes(len(num_gt) * num_queries, g).view(len(num_gt), num_queries, 4)
            for b, t in enumerate(targets):
                for q in range(num_queries):
                    near = [gt for m in matches for qq, gt in m[b] if qq == q]
                    if near and float(torch.rand(1, generator=g)) < 0.85:
                        boxes[b, q] = jitter(t["boxes"][near[int(torch.randint(len(near), (1,), generator=g))]], g)
            stages.append({"pred_logits": torch.randn(len(num_gt), num_queries, NUM_CLASSES, generator=g),
                           "pred_boxes": boxes})
        ious = [box_iou(xyxy(st["pred_boxes"][b].double()), xyxy(t["boxes"].double()))
                for st in stages for b, t in enumerate(targets) if len(t["boxes"])]
        if all(((iou - eta).abs() > 1e-4).all() for iou in ious):  # no candidate at the threshold
            return stages, targets, matches
    raise RuntimeError(f"no case away from the threshold from seed {seed}")


def reference_bags(stage, num_stages, stages, targets, matches, eta, lower, upper, keep_own, box_targets):
    """Plain loops from the paper's rule (appendix J) as the class docstring states it.

    Returns ({(b, q, label): gt index}, [(b, q, gt index)] localisation positives, #own matches)."""
    lo = 0 if lower is None else max(0, stage + lower)
    hi = num_stages - 1 if upper is None else min(num_stages - 1, stage + upper)
    boxes = stages[stage]["pred_boxes"]
    best: Dict[tuple, tuple] = {}  # (b, q, label) -> (iou, gt)

    def offer(b, q, t, passes_always):
        u = float(box_iou(xyxy(boxes[b, q][None].double()), xyxy(targets[b]["boxes"][t][None].double()))[0, 0])
        if passes_always or u >= eta:
            key = (b, q, int(targets[b]["labels"][t]))
            if key not in best or u > best[key][0]:  # ties: the earlier candidate (earlier stage) stays
                best[key] = (u, t)

    for j in range(lo, hi + 1):
        for b in range(len(targets)):
            for q, t in matches[j][b]:
                offer(b, q, t, False)
    own = [(b, q, t) for b in range(len(targets)) for q, t in matches[stage][b]]
    if keep_own:
        for b, q, t in own:
            offer(b, q, t, True)
    box_pos = list(own)
    if box_targets == "best_iou":
        owned = {(b, q) for b, q, _ in own}
        for b, q in sorted({(b, q) for b, q, _ in best} - owned):
            rows = sorted((label, u, t) for (bb, qq, label), (u, t) in best.items() if (bb, qq) == (b, q))
            top = max(u for _, u, _ in rows)
            box_pos.append((b, q, next(t for _, u, t in rows if u == top)))
    return {key: t for key, (u, t) in best.items()}, box_pos, len(own)


CROSS_STAGE_OPTIONS = [  # (lower_offset, upper_offset, stages, keep_own_matches, box_targets, eta, k, repeat_stages)
    (-1, None, None, False, "own", 0.5, 1, None),  # appendix J
    (-1, None, None, True, "own", 0.5, 1, None),
    (-1, None, None, False, "best_iou", 0.5, 1, None),
    (None, None, None, True, "best_iou", 0.4, 1, None),
    (0, 0, None, False, "own", 0.5, 1, None),
    (-1, 1, [0, -1], False, "best_iou", 0.6, 1, None),
    (-1, None, None, True, "own", 0.5, 2, [-1]),
    (None, 0, [1, 2], False, "best_iou", 0.5, 2, None),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("options", CROSS_STAGE_OPTIONS, ids=lambda o: "_".join(map(str, o)).replace(" ", ""))
def test_cross_stage_bags_boxes_and_normalisers_equal_the_plain_loop_reference(options, seed):
    """Bugs caught: a bag built with another image's ground-truth indices, a label's box not the
    best-overlapping contributing ground truth (the own match preferred whatever its IoU), stages out of
    the range read, the own match not filtered by eta (or not kept with keep_own_matches), best_iou box
    targets from another bag row, the normaliser counting the wrong rows."""
    lower, upper, only, keep_own, box_targets, eta, k, repeat_stages = options
    num_stages, num_queries, num_gt = 4, 6, {0: [3, 4], 1: [2], 2: [3, 0, 2]}[seed]
    ks = [reference_repeats(s, num_stages, k, repeat_stages) for s in range(num_stages)]
    stages, targets, matches = draw_stages(seed + 17 * CROSS_STAGE_OPTIONS.index(options), num_stages, num_queries,
                                           num_gt, ks, eta)
    matcher = ScriptedRandomMatcher([(s["pred_logits"], m) for s, m in zip(stages, matches)])
    assigner = CrossStageAssigner(iou_threshold=eta, lower_offset=lower, upper_offset=upper, stages=only,
                                  box_targets=box_targets, num_repeats=k, repeat_stages=repeat_stages,
                                  keep_own_matches=keep_own)
    assignments = assigner(stages, targets, matcher)
    assert matcher.calls == ks
    applies = [only is None or s in {x % num_stages for x in only} for s in range(num_stages)]
    expected_norms = []
    for s, a in enumerate(assignments):
        if applies[s]:
            bags, box_pos, num_own = reference_bags(s, num_stages, stages, targets, matches, eta, lower, upper,
                                                    keep_own, box_targets)
            expected_norms.append((float(max(len(bags), num_own, 1)), float(max(len(box_pos), num_own, 1))))
        else:  # plain one-to-one (k-to-one) assignment
            bags = {(b, q, int(targets[b]["labels"][t])): t for b in range(len(targets)) for q, t in matches[s][b]}
            box_pos = [(b, q, t) for b in range(len(targets)) for q, t in matches[s][b]]
            expected_norms.append((3.0, 3.0))
        want_cls = {key: tuple(targets[key[0]]["boxes"][t].tolist()) for key, t in bags.items()}
        got_cls = [((b, q, c), tuple(box)) for b, q, c, box in zip(a.cls_batch.tolist(), a.cls_query.tolist(),
                                                                  a.cls_label.tolist(), a.cls_box.tolist())]
        assert len(got_cls) == len(dict(got_cls)), f"stage {s}: a (query, class) pair twice"
        assert dict(got_cls) == want_cls, f"stage {s}: bags differ from the reference"
        # the multi-hot classification target [B, Q, K] the focal loss sees
        multi_hot = torch.zeros(len(targets), num_queries, NUM_CLASSES)
        multi_hot[a.cls_batch, a.cls_query, a.cls_label] = 1
        want_hot = torch.zeros_like(multi_hot)
        for b, q, c in want_cls:
            want_hot[b, q, c] = 1
        assert torch.equal(multi_hot, want_hot), f"stage {s}"
        got_box = sorted((b, q, tuple(box)) for b, q, box in zip(a.box_batch.tolist(), a.box_query.tolist(),
                                                                 a.box_target.tolist()))
        assert got_box == sorted((b, q, tuple(targets[b]["boxes"][t].tolist())) for b, q, t in box_pos), \
            f"stage {s}: localisation positives differ from the reference"
    assert assigner.loss_normalizers(assignments, targets, num_boxes=3.0) == expected_norms
