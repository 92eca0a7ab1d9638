"""Target assigners: which ground truth each prediction of each stage is trained towards.

An assigner is called as ``assigner(stage_outputs, targets, matcher) -> List[Assignment]`` with one
entry per stage (decoder layer, in order). The default is DETR's one-to-one Hungarian assignment,
optionally with each ground truth matched k times (SD-DETR's repeated positives), and StageInteractor's
cross-stage label assigner (multi-hot classification bags gathered from the matches of several stages).
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from detectron2.utils import comm
from torch import Tensor, nn

from ..layers import box_cxcywh_to_xyxy, elementwise_box_iou
from .structures import Assignment
from .matcher import HungarianMatcher


class HungarianAssigner(nn.Module):
    """Per-stage Hungarian matching.

    Args:
        num_repeats: k; each ground truth is matched to k distinct queries in the stages listed in
            ``repeat_stages`` (1 = plain one-to-one DETR assignment).
        repeat_stages: stage indices (Python indexing, negatives allowed: -1 is the last decoder layer)
            where the k repeats apply; None = every stage.
    """

    def __init__(self, num_repeats: int = 1, repeat_stages: Optional[Sequence[int]] = None):
        super().__init__()
        if num_repeats < 1:
            raise ValueError(f"HungarianAssigner: num_repeats must be >= 1, got {num_repeats}")
        self.num_repeats = num_repeats
        self.repeat_stages = None if repeat_stages is None else list(repeat_stages)

    def repeats_for(self, stage: int, num_stages: int) -> int:
        if self.num_repeats == 1:
            return 1
        if self.repeat_stages is None:
            return self.num_repeats
        listed = {s % num_stages for s in self.repeat_stages}
        return self.num_repeats if stage in listed else 1

    def match(self, stage_outputs: List[dict], targets: List[dict], matcher: HungarianMatcher) -> list:
        """Per stage, per image (query_idx, gt_idx) matches. A matcher with ``match_stages`` (the
        :class:`HungarianMatcher`) matches all stages in one host round trip; any other callable is
        called stage by stage."""
        n = len(stage_outputs)
        requests = [(out["pred_logits"], out["pred_boxes"], self.repeats_for(i, n)) for i, out in enumerate(stage_outputs)]
        if hasattr(matcher, "match_stages"):
            return matcher.match_stages(requests, targets)
        return [matcher(logits, boxes, targets, num_repeats=k) for logits, boxes, k in requests]

    def forward(self, stage_outputs: List[dict], targets: List[dict], matcher: HungarianMatcher) -> List[Assignment]:
        return [Assignment.from_matches(m, targets) for m in self.match(stage_outputs, targets, matcher)]


@dataclass
class CrossStageAssignment(Assignment):
    """An :class:`Assignment` that also remembers how many Hungarian matches the stage itself had
    (``num_matched``), the floor of StageInteractor's classification normaliser."""

    num_matched: int = 0


class CrossStageAssigner(HungarianAssigner):
    """StageInteractor's cross-stage label assigner (Teng et al., "StageInteractor: Query-based Object
    Detector with Cross-stage Interaction", ICCV 2023, Sec. 3.2 and appendix J).

    Every stage is first matched one-to-one with the Hungarian matcher (as :class:`HungarianAssigner`).
    Then, for stage ``i``, each query ``q`` gets a candidate bag of classes gathered from the matches of
    the stages ``j`` in ``[alpha_i, beta_i]`` (its own stage included): ground truth ``t`` matched to the
    *same query index* ``q`` at stage ``j`` adds its class if ``IoU(stage i's box of q, t) >= eta``.
    The own match is filtered too: a stage-i match below ``eta`` is no classification positive unless
    another stage brings it back (official ``stageinteractor_head.py:898-901`` puts the own match's
    IoU in the same score table, ``:1094-1095`` thresholds it). The bag is a multi-hot sigmoid-focal
    target, one classification row per (query, class). Stages are 0-based here; the paper's are 1-based.

    Defaults are appendix J's: range ``[i - 1, L]`` and ``eta = 0.5`` for every stage (official config
    ``configs/stageinteractor/stageinteractor_r50_1x_coco.py:141,148``: ``iou_eval_eta=0.5``,
    ``targets_candi_ids=[-1] + [1 .. L-1-i]`` relative to the stage, used with the stage's own targets
    by ``mmdet/models/roi_heads/stageinteractor_decoder.py:386-394``; the score is the IoU because of
    ``use_iou=True``, config ``:238``, decoder ``:358-359``). The official loss is a quality focal loss
    with 0/1 targets (``use_thres_filter``/``use_hard_label``, config ``:144-146``), i.e. the sigmoid
    focal loss (alpha 0.25, gamma 2) of the multi-hot target: any project ``class_loss`` applies.

    Localisation stays stage ``i``'s own one-to-one match (``box_targets="own"``, the paper's choice).
    ``box_targets="best_iou"`` is Table 12's alternative: a query without an own match whose bag is not
    empty is also a localisation positive, towards the bag ground truth of greatest IoU with its box;
    own matches keep their target (official ``stageinteractor_head.py:1010-1018`` with
    ``use_last_box_target``, which takes such boxes only from later stages).

    Several ground truths of the same class may enter one query's bag (matched at different stages):
    the label is kept once, with ``cls_box`` = the contributing ground truth of greatest IoU with the
    query's stage-i box (ties: the earliest stage, then the lowest ground-truth index); the official
    code keeps the larger IoU too (``torch.maximum``, ``stageinteractor_head.py:1021-1026``) before
    binarising. So with an IoU-aware classification loss (SD-DETR's task-alignment loss,
    ``t = s^alpha * u^beta`` per classification row with ``u = IoU(query box, cls_box)``), each bag
    label's soft target uses the IoU with the ground truth that contributed it, and a label brought by
    several ground truths of its class uses the best-overlapping one (the largest ``u``). Labels of
    other classes in the same bag get their own ``t`` from their own ground truth.

    Normalisation (official ``stageinteractor_head.py:1140-1150``, ``use_hard_label=True``): the
    classification loss of a stage is divided by ``max(#positive (query, class) entries, #own
    matches)``, the box losses by ``max(#localisation positives, #own matches)``, each averaged over
    workers (``reduce_mean``); :class:`SetCriterion` asks :meth:`loss_normalizers` for them. With the
    defaults #own matches = #ground truths, so the box normaliser is the criterion's ``num_boxes``.
    With ``num_repeats = k > 1`` (not in the paper) #own matches is k x #ground truths, so both floors
    are k times the plain criterion's ``num_boxes``.

    Args:
        iou_threshold: eta; a candidate label enters the bag when IoU >= eta.
        lower_offset: alpha_i = i + lower_offset (clipped to the first stage); None = the first stage
            (Table 13's alpha_i = 1).
        upper_offset: beta_i = i + upper_offset (clipped to the last stage); None = the last stage L.
            Table 13: [i, i] = (0, 0), [i-1, i] = (-1, 0), [i-1, i+1] = (-1, 1), [i-1, L] = (-1, None).
        stages: stage indices (Python indexing, negatives allowed) that get the cross-stage assignment;
            the others keep plain Hungarian assignment (Table 13's last row: all but the last two).
            None = every stage (appendix J); ``[]`` turns the assigner off (= :class:`HungarianAssigner`).
        box_targets: "own" (the paper) or "best_iou" (Table 12).
        num_repeats, repeat_stages: as :class:`HungarianAssigner` (1 = one-to-one, as the paper).
        keep_own_matches: not in the paper or the official code (default False): the stage's own
            Hungarian match is a classification positive whatever its IoU, as in plain DETR training,
            and the other stages only add labels. Without it a detector trained from scratch gets
            almost no classification positives until its boxes reach IoU 0.5 (docs/ablations.md).
    """

    BOX_TARGETS = ("own", "best_iou")

    def __init__(self, iou_threshold: float = 0.5, lower_offset: Optional[int] = -1,
                 upper_offset: Optional[int] = None, stages: Optional[Sequence[int]] = None,
                 box_targets: str = "own", num_repeats: int = 1, repeat_stages: Optional[Sequence[int]] = None,
                 keep_own_matches: bool = False):
        super().__init__(num_repeats=num_repeats, repeat_stages=repeat_stages)
        if box_targets not in self.BOX_TARGETS:
            raise ValueError(f"CrossStageAssigner: box_targets must be one of {self.BOX_TARGETS}, got {box_targets!r}")
        if lower_offset is not None and upper_offset is not None and lower_offset > upper_offset:
            raise ValueError(f"CrossStageAssigner: empty stage range [i{lower_offset:+d}, i{upper_offset:+d}]")
        self.iou_threshold = float(iou_threshold)
        self.lower_offset = lower_offset
        self.upper_offset = upper_offset
        self.stages = None if stages is None else list(stages)
        self.box_targets = box_targets
        self.keep_own_matches = keep_own_matches

    def stage_range(self, stage: int, num_stages: int) -> range:
        """0-based stages [alpha_i, beta_i] whose matches feed stage ``stage``'s bags."""
        lo = 0 if self.lower_offset is None else max(0, stage + self.lower_offset)
        hi = num_stages - 1 if self.upper_offset is None else min(num_stages - 1, stage + self.upper_offset)
        return range(lo, hi + 1)

    def applies_to(self, stage: int, num_stages: int) -> bool:
        return self.stages is None or stage in {s % num_stages for s in self.stages}

    def forward(self, stage_outputs: List[dict], targets: List[dict], matcher: HungarianMatcher) -> List[Assignment]:
        matches = self.match(stage_outputs, targets, matcher)
        n = len(stage_outputs)
        out = []
        for i, m in enumerate(matches):
            if not self.applies_to(i, n):
                out.append(Assignment.from_matches(m, targets))
            else:
                in_range = [matches[j] for j in self.stage_range(i, n)]
                out.append(self.cross_stage(stage_outputs[i]["pred_boxes"], in_range, m, targets))
        return out

    @torch.no_grad()
    def cross_stage(self, pred_boxes: Tensor, range_matches: list, own_matches, targets: List[dict]) -> Assignment:
        """Bags of one stage.

        pred_boxes: [B, Q, 4] normalised cxcywh of this stage; range_matches: per stage j of the range
        (in order), per image (query_idx, gt_idx); own_matches: this stage's.
        """
        device = pred_boxes.device
        num_queries = pred_boxes.shape[1]
        gt_boxes = torch.cat([t["boxes"] for t in targets]).reshape(-1, 4).to(device)
        gt_labels = torch.cat([t["labels"] for t in targets]).to(device)
        gt_offset = torch.tensor([0] + [len(t["labels"]) for t in targets], device=device).cumsum(0)

        def flat(per_image):  # per-image (query, gt) -> batch, query, global gt index
            b = torch.cat([torch.full_like(q, k) for k, (q, _) in enumerate(per_image)]).to(device)
            q = torch.cat([q for q, _ in per_image]).to(device)
            g = torch.cat([g for _, g in per_image]).to(device) + gt_offset[b]
            return b, q, g

        # candidates of every stage of the range, in stage order (so ties keep the earliest stage)
        empty = torch.empty(0, dtype=torch.int64, device=device)
        cand = [flat(m) for m in range_matches] or [(empty, empty, empty)]
        b = torch.cat([c[0] for c in cand])
        q = torch.cat([c[1] for c in cand])
        g = torch.cat([c[2] for c in cand])
        iou = elementwise_box_iou(box_cxcywh_to_xyxy(pred_boxes[b, q].float()), box_cxcywh_to_xyxy(gt_boxes[g].float()))
        keep = iou >= self.iou_threshold  # NaN (degenerate box) never passes
        if self.keep_own_matches:  # the own matches join as candidates that always pass
            own = flat(own_matches)
            own_iou = elementwise_box_iou(box_cxcywh_to_xyxy(pred_boxes[own[0], own[1]].float()),
                                          box_cxcywh_to_xyxy(gt_boxes[own[2]].float()))
            b, q, g = torch.cat([b, own[0]]), torch.cat([q, own[1]]), torch.cat([g, own[2]])
            iou = torch.cat([iou, torch.nan_to_num(own_iou, nan=0.0)])
            keep = torch.cat([keep, torch.ones_like(own[0], dtype=torch.bool)])
        b, q, g, iou = b[keep], q[keep], g[keep], iou[keep]
        labels = gt_labels[g]

        # one row per (batch, query, label): the contributing ground truth of greatest IoU
        num_classes = int(gt_labels.max().item()) + 1 if gt_labels.numel() else 1
        key = (b * num_queries + q) * num_classes + labels
        by_iou = torch.sort(-iou, stable=True).indices  # best first, earlier candidates first on ties
        by_key = by_iou[torch.sort(key[by_iou], stable=True).indices]  # grouped by key, best first in a group
        first = torch.ones_like(by_key, dtype=torch.bool)
        first[1:] = key[by_key][1:] != key[by_key][:-1]
        rows = by_key[first]  # sorted by (batch, query, label)
        cls_b, cls_q, cls_g, cls_iou = b[rows], q[rows], g[rows], iou[rows]

        own_b, own_q, own_g = flat(own_matches)
        box_b, box_q, box_g = own_b, own_q, own_g
        if self.box_targets == "best_iou" and cls_b.numel():
            is_own = torch.zeros(len(targets) * num_queries, dtype=torch.bool, device=device)
            is_own[own_b * num_queries + own_q] = True
            query_key = cls_b * num_queries + cls_q
            # per query, the bag row of greatest IoU (rows are grouped by query, so sort within groups)
            order = torch.sort(-cls_iou, stable=True).indices
            order = order[torch.sort(query_key[order], stable=True).indices]
            head = torch.ones_like(order, dtype=torch.bool)
            head[1:] = query_key[order][1:] != query_key[order][:-1]
            best = order[head]
            best = best[~is_own[query_key[best]]]
            box_b = torch.cat([own_b, cls_b[best]])
            box_q = torch.cat([own_q, cls_q[best]])
            box_g = torch.cat([own_g, cls_g[best]])
        return CrossStageAssignment(cls_b, cls_q, gt_labels[cls_g], gt_boxes[cls_g], box_b, box_q, gt_boxes[box_g],
                                    num_matched=int(own_b.numel()))

    def loss_normalizers(self, assignments: List[Assignment], targets: List[dict],
                         num_boxes: float) -> List[Tuple[float, float]]:
        """(classification, box) divisor of each stage, see the class docstring. Stages without the
        cross-stage assignment use the criterion's ``num_boxes`` for both."""
        counts = []
        for a in assignments:
            if isinstance(a, CrossStageAssignment):
                counts.append([max(a.num_cls_positives, a.num_matched), max(int(a.box_batch.numel()), a.num_matched)])
            else:
                counts.append([0, 0])
        device = targets[0]["boxes"].device if targets else torch.device("cpu")
        n = torch.as_tensor(counts, dtype=torch.float, device=device).reshape(-1, 2)
        if comm.get_world_size() > 1:
            torch.distributed.all_reduce(n)
        n = torch.clamp(n / comm.get_world_size(), min=1).tolist()
        return [tuple(n[k]) if isinstance(a, CrossStageAssignment) else (num_boxes, num_boxes)
                for k, a in enumerate(assignments)]
