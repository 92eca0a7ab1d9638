"""StageInteractor's cross-stage label assigner (sd_detr/modeling/assigner.py CrossStageAssigner):
hand-built matches over three stages where the bags are known by hand, the multi-hot targets in the
focal loss, the normaliser, a detector training with it, and bit-identical losses when it is off."""
import math
import os

import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from sd_detr.modeling import CrossStageAssigner, FocalLoss, HungarianAssigner, HungarianMatcher, SetCriterion
from sd_detr.modeling.structures import Assignment
from sd_detr.modeling.losses import TaskAlignmentLoss, box_losses
from sd_detr.model_zoo import detector_names

from ..utils import REPO, random_batch

CONFIGS = os.path.join(REPO, "projects", "conditional_detr", "configs")
TINY = os.path.join(CONFIGS, "conditional_detr_tiny_synthetic.py")
TINY_CSA = os.path.join(CONFIGS, "conditional_detr_tiny_synthetic_stage_assigner.py")

# IoU of two 0.2 x 0.2 boxes shifted by dx along x: (0.2 - dx) / (0.2 + dx)
ABOVE, BELOW = 0.066, 0.068  # IoU 0.5038 (>= 0.5) and 0.4925 (< 0.5)


def box(x, y=0.3):
    return [x, y, 0.2, 0.2]


class ScriptedMatcher:
    """Stands in for HungarianMatcher: returns hand-made matches per stage, recognised by its logits
    tensor. Same call signature."""

    def __init__(self, per_stage):
        self.per_stage = per_stage  # list of (pred_logits, per-image [(query, gt), ...])

    def __call__(self, pred_logits, pred_boxes, targets, num_repeats=1):
        for logits, pairs in self.per_stage:
            if logits is pred_logits:
                return [(torch.tensor([q for q, _ in p], dtype=torch.int64),
                         torch.tensor([g for _, g in p], dtype=torch.int64)) for p in pairs]
        raise KeyError("unknown stage")


# Ground truth of one image: t0 class 0 and t2 class 2 overlap (IoU(t0, t2) = 0.14 / 0.26 = 0.538), t1 apart.
GT_BOXES = [box(0.30), box(0.70, 0.70), box(0.36)]
GT_LABELS = [0, 1, 2]
T0, T1, T2 = (torch.tensor(b) for b in GT_BOXES)
# Matches (query, gt) of the three stages S1, S2, S3 (0-based 0, 1, 2): t0 goes q0 -> q3 -> q0, t1 goes
# q1 -> q4 -> q4, t2 goes q2 -> q0 -> q2 (so q0 meets a ground truth of another class at S2).
MATCHES = [[(0, 0), (1, 1), (2, 2)], [(3, 0), (4, 1), (0, 2)], [(0, 0), (4, 1), (2, 2)]]
# The predicted boxes of each stage (Q = 5 queries)
PRED_BOXES = [
    # S1: q0 between t0 and t2 (IoU 0.739 with both); q1 = t1; q2 just below eta w.r.t. its own t2;
    #     q3 just above w.r.t. t0 (matched to q3 at S2); q4 just below w.r.t. t1 (matched to q4 at S2, S3)
    [box(0.33), box(0.70, 0.70), box(0.36 + BELOW), box(0.30 + ABOVE), box(0.70 + BELOW, 0.70)],
    # S2: q0 just above w.r.t. its own t2 and far from t0 (IoU 0.227); q1 just above w.r.t. t1 (its S1
    #     match); q2 = t2 (its S1/S3 match); q3 just below w.r.t. its own t0; q4 = t1
    [box(0.36 + ABOVE), box(0.70 + ABOVE, 0.70), box(0.36), box(0.30 + BELOW), box(0.70, 0.70)],
    # S3 (range S2..S3): q0 = t0 (its own; t2 from S2 at IoU 0.538); q1 = t1 but t1 reached q1 only at
    #     S1, outside the range; q2 = t2; q3 far from everything; q4 = t1
    [box(0.30), box(0.70, 0.70), box(0.36), box(0.80, 0.20), box(0.70, 0.70)],
]
# The bags by hand (query -> classes), default range [i-1, L] and eta 0.5
BAGS = [
    {0: {0, 2}, 1: {1}, 3: {0}},  # q2's own match is dropped (IoU 0.4925), q4's S2/S3 t1 too
    {0: {2}, 1: {1}, 2: {2}, 4: {1}},  # q0's t0 (S1, S3) fails the IoU, q3's own t0 too
    {0: {0, 2}, 2: {2}, 4: {1}},  # q1's t1 from S1 is out of range
]
NUM_CLASSES = 3


def hand_made_stages(seed=0):
    g = torch.Generator().manual_seed(seed)
    stages = [{"pred_logits": torch.randn(1, 5, NUM_CLASSES, generator=g), "pred_boxes": torch.tensor([b])}
              for b in PRED_BOXES]
    targets = [{"labels": torch.tensor(GT_LABELS), "boxes": torch.tensor(GT_BOXES)}]
    matcher = ScriptedMatcher([(s["pred_logits"], [m]) for s, m in zip(stages, MATCHES)])
    return stages, targets, matcher


def bags_of(assignment):
    bags = {}
    for b, q, c in zip(assignment.cls_batch.tolist(), assignment.cls_query.tolist(), assignment.cls_label.tolist()):
        assert b == 0
        assert c not in bags.get(q, set()), "a (query, class) pair appears twice"
        bags.setdefault(q, set()).add(c)
    return bags


def box_pairs(assignment):
    return {(q, tuple(t)) for q, t in zip(assignment.box_query.tolist(), assignment.box_target.tolist())}


def f32(b):
    """A box as the float32 values a tensor holds."""
    return tuple(torch.tensor(b).tolist())


def own_box_pairs(stage):
    return {(q, f32(GT_BOXES[g])) for q, g in MATCHES[stage]}


def test_bags_gather_matches_of_stages_in_range_with_iou_at_least_eta():
    stages, targets, matcher = hand_made_stages()
    assignments = CrossStageAssigner()(stages, targets, matcher)
    assert [bags_of(a) for a in assignments] == BAGS


def test_keep_own_matches_adds_each_stage_own_match_whatever_its_iou():
    stages, targets, matcher = hand_made_stages()
    assignments = CrossStageAssigner(keep_own_matches=True)(stages, targets, matcher)
    expected = [
        {0: {0, 2}, 1: {1}, 2: {2}, 3: {0}},  # S1: q2's own t2 (IoU 0.4925) is kept now
        {0: {2}, 1: {1}, 2: {2}, 3: {0}, 4: {1}},  # S2: q3's own t0 (below eta) is kept now
        BAGS[2],  # S3: every own match was above eta already
    ]
    assert [bags_of(a) for a in assignments] == expected
    assert [bags_of(a) for a in CrossStageAssigner()(stages, targets, matcher)] == BAGS  # default: paper


def test_localisation_stays_the_stage_own_one_to_one_match():
    stages, targets, matcher = hand_made_stages()
    for i, a in enumerate(CrossStageAssigner()(stages, targets, matcher)):
        assert box_pairs(a) == own_box_pairs(i)  # S1's q2 keeps its box target though its class is dropped


def test_each_bag_label_carries_the_box_of_the_ground_truth_that_contributed_it():
    stages, targets, matcher = hand_made_stages()
    a = CrossStageAssigner()(stages, targets, matcher)[0]
    rows = {(q, c): b for q, c, b in zip(a.cls_query.tolist(), a.cls_label.tolist(), a.cls_box)}
    assert torch.equal(rows[(0, 0)], T0) and torch.equal(rows[(0, 2)], T2) and torch.equal(rows[(3, 0)], T0)


def test_stage_range_is_configurable():
    stages, targets, matcher = hand_made_stages()
    # alpha_i = 1 (Table 13's [1, L]): S3 sees S1's match of t1 to q1 (q1's S3 box = t1)
    wide = CrossStageAssigner(lower_offset=None)(stages, targets, matcher)
    assert bags_of(wide[2]) == {0: {0, 2}, 1: {1}, 2: {2}, 4: {1}}
    # [i, i]: only the own match, filtered by IoU
    own = CrossStageAssigner(lower_offset=0, upper_offset=0)(stages, targets, matcher)
    assert [bags_of(a) for a in own] == [{0: {0}, 1: {1}}, {0: {2}, 4: {1}}, {0: {0}, 2: {2}, 4: {1}}]


def test_stages_without_the_cross_stage_assignment_are_plain_hungarian():
    stages, targets, matcher = hand_made_stages()
    a = CrossStageAssigner(stages=[-1])(stages, targets, matcher)  # only the last stage
    for i in (0, 1):
        assert bags_of(a[i]) == {q: {GT_LABELS[g]} for q, g in MATCHES[i]}
        assert box_pairs(a[i]) == own_box_pairs(i)
    assert bags_of(a[2]) == BAGS[2]


def test_iou_threshold_is_configurable():
    stages, targets, matcher = hand_made_stages()
    # at eta 0.45 the just-below pairs (0.4925) join: S1's q2 keeps t2, q4 gets t1
    a = CrossStageAssigner(iou_threshold=0.45)(stages, targets, matcher)
    assert bags_of(a[0]) == {0: {0, 2}, 1: {1}, 2: {2}, 3: {0}, 4: {1}}


def test_same_class_from_two_ground_truths_is_one_row_with_the_best_overlapping_box():
    # two class-0 ground truths matched to q0 at different stages; S1's box overlaps b more
    a_box, b_box = box(0.30), box(0.36)
    stages = [{"pred_logits": torch.zeros(1, 2, 1), "pred_boxes": torch.tensor([[box(0.34), box(0.8)]])},
              {"pred_logits": torch.zeros(1, 2, 1), "pred_boxes": torch.tensor([[box(0.34), box(0.8)]])}]
    targets = [{"labels": torch.tensor([0, 0]), "boxes": torch.tensor([a_box, b_box])}]
    matcher = ScriptedMatcher([(stages[0]["pred_logits"], [[(0, 0), (1, 1)]]),
                               (stages[1]["pred_logits"], [[(0, 1), (1, 0)]])])
    a = CrossStageAssigner()(stages, targets, matcher)[0]
    # IoU(box(0.34), a) = 0.16 / 0.24 = 0.667, IoU(box(0.34), b) = 0.18 / 0.22 = 0.818
    assert a.cls_query.tolist() == [0] and a.cls_label.tolist() == [0]
    assert torch.equal(a.cls_box[0], torch.tensor(b_box))


def test_best_iou_box_targets_add_bag_queries_and_keep_own_matches():
    stages, targets, matcher = hand_made_stages()
    a = CrossStageAssigner(box_targets="best_iou")(stages, targets, matcher)
    t0, t1, t2 = (f32(b) for b in GT_BOXES)
    assert box_pairs(a[0]) == own_box_pairs(0) | {(3, t0)}
    assert box_pairs(a[1]) == own_box_pairs(1) | {(1, t1), (2, t2)}
    assert box_pairs(a[2]) == own_box_pairs(2)


def test_best_iou_box_target_of_a_multi_label_bag_is_its_highest_iou_ground_truth():
    # q0 is matched to nothing at S2; its bag there has t0 (S1, IoU 0.818) and t2 (S3, IoU 0.667)
    stages = [{"pred_logits": torch.zeros(1, 2, 3), "pred_boxes": torch.tensor([[box(0.5), box(0.5)]])}
              for _ in range(3)]
    stages[1]["pred_boxes"] = torch.tensor([[box(0.32), box(0.9)]])
    targets = [{"labels": torch.tensor([0, 2]), "boxes": torch.tensor([box(0.30), box(0.36)])}]
    matcher = ScriptedMatcher([(stages[0]["pred_logits"], [[(0, 0), (1, 1)]]),
                               (stages[1]["pred_logits"], [[(1, 0)]]),
                               (stages[2]["pred_logits"], [[(0, 1), (1, 0)]])])
    # (box(0.32) vs box(0.30): 0.18/0.22 = 0.818; vs box(0.36): 0.16/0.24 = 0.667)
    a = CrossStageAssigner(box_targets="best_iou")(stages, targets, matcher)[1]
    assert bags_of(a) == {0: {0, 2}}
    assert box_pairs(a) == {(1, f32(box(0.30))), (0, f32(box(0.30)))}


def test_normalisers_are_max_of_bag_entries_and_own_matches():
    stages, targets, matcher = hand_made_stages()
    assigner = CrossStageAssigner()
    a = assigner(stages, targets, matcher)
    # 4 multi-hot entries at every stage, 3 own matches; boxes: 3 own matches
    assert assigner.loss_normalizers(a, targets, num_boxes=3.0) == [(4.0, 3.0)] * 3
    # eta 0.9: S1 keeps only q1's t1 (1 entry) -> the floor of 3 own matches
    strict = CrossStageAssigner(iou_threshold=0.9)
    a = strict(stages, targets, matcher)
    assert [len(bags_of(x)) for x in a] == [1, 2, 3]
    assert strict.loss_normalizers(a, targets, num_boxes=3.0) == [(3.0, 3.0)] * 3
    # best_iou boxes: S2 has 5 localisation positives
    best = CrossStageAssigner(box_targets="best_iou")
    assert best.loss_normalizers(best(stages, targets, matcher), targets, 3.0)[1] == (4.0, 5.0)
    # stages without cross-stage assignment use the criterion's num_boxes
    only_last = CrossStageAssigner(stages=[2])
    assert only_last.loss_normalizers(only_last(stages, targets, matcher), targets, 7.0)[:2] == [(7.0, 7.0)] * 2


def _rows(n, num_matched):
    """A CrossStageAssignment with n classification rows and num_matched own matches (= box rows)."""
    from sd_detr.modeling.assigner import CrossStageAssignment

    idx = torch.arange(n)
    own = torch.arange(num_matched)
    return CrossStageAssignment(idx * 0, idx, idx * 0, torch.zeros(n, 4), own * 0, own, torch.zeros(num_matched, 4),
                                num_matched=num_matched)


def _normalizers_worker(rank, init_file, out_dir):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    # rank 0: 1 bag entry, 3 own matches; rank 1: 5 entries, 1 own match
    a = [_rows(1, 3)] if rank == 0 else [_rows(5, 1)]
    n = 3 if rank == 0 else 1
    targets = [{"labels": torch.zeros(n, dtype=torch.int64), "boxes": torch.zeros(n, 4)}]
    result = CrossStageAssigner().loss_normalizers(a, targets, num_boxes=2.0)
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_normalisers_take_the_max_on_each_worker_then_average_over_workers(tmp_path):
    # official reduce_mean(max(entries, #pos)) (stageinteractor_head.py:1140-1143):
    # (max(1, 3) + max(5, 1)) / 2 = 4, not max(mean entries 3, mean matches 2) = 3; boxes (3 + 1) / 2 = 2
    torch.multiprocessing.spawn(_normalizers_worker, args=(str(tmp_path / "pg"), str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        assert torch.load(tmp_path / f"rank{rank}.pt") == [(4.0, 2.0)]


def focal_term(x, t, alpha=0.25, gamma=2.0):
    p = 1 / (1 + math.exp(-x))
    ce = -math.log(p) if t else -math.log(1 - p)
    pt = p if t else 1 - p
    return (alpha if t else 1 - alpha) * ce * (1 - pt) ** gamma


def test_multi_hot_bags_reach_the_focal_loss_of_the_criterion():
    stages, targets, matcher = hand_made_stages(seed=3)
    weights = {"loss_class": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    criterion = SetCriterion(NUM_CLASSES, matcher, assigner=CrossStageAssigner(), class_loss=FocalLoss(0.25, 2.0),
                             weight_dict=weights)
    outputs = dict(stages[-1], aux_outputs=stages[:-1])
    losses = criterion(outputs, targets)
    for i, suffix in enumerate(["_0", "_1", ""]):
        logits = stages[i]["pred_logits"][0]
        entries = sum(len(c) for c in BAGS[i].values())
        expected = sum(focal_term(logits[q, k].item(), k in BAGS[i].get(q, ()))
                       for q in range(5) for k in range(NUM_CLASSES)) / max(entries, 3)
        assert math.isclose(losses["loss_class" + suffix].item(), 2.0 * expected, rel_tol=1e-5)
        # box losses: the stage's own matches over the 3 ground truths
        own = Assignment.from_matches(matcher(stages[i]["pred_logits"], None, targets), targets)
        ref = box_losses(stages[i]["pred_boxes"], own, 3.0)
        assert torch.allclose(losses["loss_bbox" + suffix], 5.0 * ref["loss_bbox"])
        assert torch.allclose(losses["loss_giou" + suffix], 2.0 * ref["loss_giou"])
    # S1's multi-hot target differs from the one-hot one: the plain criterion gives another class loss
    plain = SetCriterion(NUM_CLASSES, matcher, class_loss=FocalLoss(0.25, 2.0), weight_dict=weights)(outputs, targets)
    assert not torch.isclose(plain["loss_class_0"], losses["loss_class_0"])


def _task_alignment_term(x, t, gamma=2.0):
    p = 1 / (1 + math.exp(-x))
    bce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
    return abs(t - p) ** gamma * bce


def test_task_alignment_target_of_each_bag_label_uses_the_iou_with_its_own_ground_truth():
    stages, targets, matcher = hand_made_stages(seed=1)
    criterion = SetCriterion(NUM_CLASSES, matcher, assigner=CrossStageAssigner(),
                             class_loss=TaskAlignmentLoss(alpha=0.25, beta=0.75, gamma=2.0),
                             weight_dict={"loss_class": 1.0, "loss_bbox": 1.0, "loss_giou": 1.0})
    losses = criterion(dict(stages[-1], aux_outputs=stages[:-1]), targets)
    # S3: q0's box is t0: label 0 has u = 1, label 2 (from t2, matched to q0 at S2) u = IoU(t0, t2) = 0.14 / 0.26;
    # q2 = t2 and q4 = t1: u = 1
    u = {(0, 0): 1.0, (0, 2): 0.14 / 0.26, (2, 2): 1.0, (4, 1): 1.0}
    logits = stages[2]["pred_logits"][0]
    expected = 0.0
    for q in range(5):
        for k in range(NUM_CLASSES):
            x = logits[q, k].item()
            t = (1 / (1 + math.exp(-x))) ** 0.25 * u[(q, k)] ** 0.75 if (q, k) in u else 0.0
            expected += _task_alignment_term(x, t)
    assert math.isclose(losses["loss_class"].item(), expected / 4, rel_tol=1e-4)  # 4 entries > 3 matches


def test_task_alignment_target_of_a_label_from_two_ground_truths_uses_the_best_overlapping_one():
    stages = [{"pred_logits": torch.tensor([[[0.3], [-2.0]]]), "pred_boxes": torch.tensor([[box(0.34), box(0.8)]])}
              for _ in range(2)]
    targets = [{"labels": torch.tensor([0, 0]), "boxes": torch.tensor([box(0.30), box(0.36)])}]
    matcher = ScriptedMatcher([(stages[0]["pred_logits"], [[(0, 0), (1, 1)]]),
                               (stages[1]["pred_logits"], [[(0, 1), (1, 0)]])])
    a = CrossStageAssigner()(stages, targets, matcher)[0]
    t = TaskAlignmentLoss(alpha=0.25, beta=0.75).alignment_targets(stages[0]["pred_logits"], stages[0]["pred_boxes"], a)
    s = 1 / (1 + math.exp(-0.3))
    assert t.shape == (1,)
    assert math.isclose(t.item(), s ** 0.25 * (0.18 / 0.22) ** 0.75, rel_tol=1e-5)  # not (0.16 / 0.24)


# ------------------------------------------------------------------------------- detectors


def _tiny_losses(path, assigner_overrides=None, seed=0):
    cfg = LazyConfig.load(path)
    if assigner_overrides:
        cfg.model.criterion.assigner.update(assigner_overrides)
    torch.manual_seed(seed)
    model = instantiate(cfg.model).train()
    torch.manual_seed(seed + 1)
    return model(random_batch(cfg.model.num_classes, sizes=((96, 128), (128, 96))))


def test_assigner_off_gives_losses_bit_identical_to_the_plain_criterion():
    plain = _tiny_losses(TINY)
    off = _tiny_losses(TINY_CSA, {"stages": []})
    assert plain.keys() == off.keys()
    for k in plain:
        assert torch.equal(plain[k], off[k]), k
    on = _tiny_losses(TINY_CSA)
    assert on.keys() == plain.keys()


def test_plain_criterion_equals_focal_and_box_losses_of_hungarian_matches():
    """The criterion's normaliser hook leaves assigners without one exactly as before."""
    g = torch.Generator().manual_seed(0)
    stages = [{"pred_logits": torch.randn(2, 6, 4, generator=g),
               "pred_boxes": torch.rand(2, 6, 4, generator=g) * 0.5 + 0.25} for _ in range(3)]
    targets = [{"labels": torch.tensor([1, 3]), "boxes": torch.tensor([box(0.3), box(0.6, 0.6)])},
               {"labels": torch.tensor([0]), "boxes": torch.tensor([box(0.5, 0.5)])}]
    matcher = HungarianMatcher()
    criterion = SetCriterion(4, matcher, assigner=HungarianAssigner())
    losses = criterion(dict(stages[-1], aux_outputs=stages[:-1]), targets)
    for i, suffix in enumerate(["_0", "_1", ""]):
        a = Assignment.from_matches(matcher(stages[i]["pred_logits"], stages[i]["pred_boxes"], targets), targets)
        expected = {"loss_class": FocalLoss()(stages[i]["pred_logits"], stages[i]["pred_boxes"], a, 3.0)}
        expected.update(box_losses(stages[i]["pred_boxes"], a, 3.0))
        for k, v in expected.items():
            assert torch.equal(losses[k + suffix], v * criterion.weight_dict[k]), k + suffix


# every registered detector's (TINY_CSA: Conditional DETR's)
STAGE_ASSIGNER_CONFIGS = [os.path.join(REPO, "projects", p, "configs", f"{p}_tiny_synthetic_stage_assigner.py")
                          for p in detector_names()]


@pytest.mark.parametrize("config", STAGE_ASSIGNER_CONFIGS, ids=lambda p: os.path.basename(p)[:-3])
def test_every_tiny_detector_with_cross_stage_assigner_trains_a_few_iterations(config):
    cfg = LazyConfig.load(config)
    plain = LazyConfig.load(config.replace("_stage_assigner", ""))
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    assert isinstance(model.criterion.assigner, CrossStageAssigner)
    # the same detector otherwise: only the assigner differs from the plain config
    assert type(model) is type(instantiate(plain.model))
    plain_assigner = instantiate(plain.model.criterion).assigner
    assert model.criterion.assigner.num_repeats == plain_assigner.num_repeats  # SD-DETR keeps k = 2
    assert model.criterion.assigner.repeat_stages == plain_assigner.repeat_stages
    optimizer = torch.optim.AdamW(model.parameters(), 2e-4)
    batch = random_batch(cfg.model.num_classes, sizes=((96, 128), (128, 96)))
    before = {k: v.detach().clone() for k, v in model.class_embed.state_dict().items()}
    totals = []
    for _ in range(8):
        losses = model(batch)
        total = sum(losses.values())
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert any(not torch.equal(before[k], v) for k, v in model.class_embed.state_dict().items())
    # the loss falls on the one batch (the matching changes between steps, so single steps may not)
    assert sum(totals[-2:]) / 2 < totals[0], totals
