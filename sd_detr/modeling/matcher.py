"""Hungarian matching between predictions and ground truth (DETR's set prediction)."""
from typing import List, Tuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from ..layers import box_cxcywh_to_xyxy, generalized_box_iou


class HungarianMatcher(nn.Module):
    """Bipartite matching with the focal-loss class cost, L1 and GIoU box costs.

    cost = cost_class * (pos_focal - neg_focal)[gt class] + cost_bbox * L1 + cost_giou * (-GIoU), as the
    official Conditional DETR ``models/matcher.py:68-83`` (alpha 0.25, gamma 2, the 1e-8 log guard).
    The cost matrix is computed for the whole batch at once and split per image.
    """

    def __init__(self, cost_class: float = 2.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                 focal_alpha: float = 0.25, focal_gamma: float = 2.0):
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("HungarianMatcher: all costs are 0")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    @torch.no_grad()
    def cost_matrix(self, pred_logits: Tensor, pred_boxes: Tensor, targets: List[dict], to_host: bool = True) -> Tensor:
        """[B, Q, K] logits, [B, Q, 4] normalised cxcywh boxes -> [B, Q, sum of n_i] float32 costs, on CPU
        (``to_host=False``: on the predictions' device). Computed in float32 whatever the autocast dtype."""
        bsz, nq = pred_logits.shape[:2]
        prob = pred_logits.flatten(0, 1).float().sigmoid()
        boxes = pred_boxes.flatten(0, 1).float()
        tgt_ids = torch.cat([t["labels"] for t in targets])
        tgt_boxes = torch.cat([t["boxes"] for t in targets]).float()
        a, g = self.focal_alpha, self.focal_gamma
        neg = (1 - a) * prob ** g * -(1 - prob + 1e-8).log()
        pos = a * (1 - prob) ** g * -(prob + 1e-8).log()
        cost_class = pos[:, tgt_ids] - neg[:, tgt_ids]
        cost_bbox = torch.cdist(boxes, tgt_boxes, p=1)
        cost_giou = -generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(tgt_boxes))
        cost = self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou
        cost = cost.view(bsz, nq, -1)
        return cost.cpu() if to_host else cost

    @torch.no_grad()
    def forward(self, pred_logits: Tensor, pred_boxes: Tensor, targets: List[dict],
                num_repeats: int = 1) -> List[Tuple[Tensor, Tensor]]:
        """Match each image's predictions to its ground truth.

        Args:
            pred_logits: [B, Q, K]; pred_boxes: [B, Q, 4] normalised cxcywh;
            targets: per image {"labels": [n] long, "boxes": [n, 4] normalised cxcywh};
            num_repeats: k >= 1; each ground truth is replicated k times in the cost matrix, so it is
                matched to up to k distinct queries (SD-DETR's repeated positives; 1 = DETR).
        Returns:
            per image (query_idx [m] long, gt_idx [m] long) on the predictions' device, m = min(Q, k * n),
            sorted by query.

        Several stages at once (:meth:`match_stages`, through this call so that module hooks see it):
        ``pred_logits``, ``pred_boxes`` and ``num_repeats`` lists with one entry per stage -> a list of
        the above per stage.
        """
        if isinstance(pred_logits, (list, tuple)):
            return self.match_batch(list(zip(pred_logits, pred_boxes, num_repeats)), targets)
        return self.match_batch([(pred_logits, pred_boxes, num_repeats)], targets)[0]

    @torch.no_grad()
    def match_stages(self, stages: List[Tuple[Tensor, Tensor, int]], targets: List[dict]) -> list:
        """Match several stages (decoder layers) of one batch: per stage ``(pred_logits, pred_boxes,
        num_repeats)`` as :meth:`forward`'s arguments -> per stage :meth:`forward`'s result.

        The cost matrices of all stages are copied to the host at once and the indices back at once (one
        round trip per batch instead of one per stage and per image). A subclass that overrides
        :meth:`forward` is called stage by stage through it, so its behaviour is kept.
        """
        if type(self).forward is not HungarianMatcher.forward:
            return [self(logits, boxes, targets, num_repeats=k) for logits, boxes, k in stages]
        if not stages:
            return []
        logits, boxes, repeats = (list(x) for x in zip(*stages))
        return self(logits, boxes, targets, num_repeats=repeats)

    @torch.no_grad()
    def match_batch(self, stages: List[Tuple[Tensor, Tensor, int]], targets: List[dict]) -> list:
        """The work of :meth:`match_stages` (no subclass dispatch)."""
        for _, _, num_repeats in stages:
            if num_repeats < 1:
                raise ValueError(f"HungarianMatcher: num_repeats must be >= 1, got {num_repeats}")
        sizes = [len(t["boxes"]) for t in targets]
        device = stages[0][0].device
        empty = torch.empty(0, dtype=torch.int64, device=device)
        if sum(sizes) == 0:
            return [[(empty, empty) for _ in sizes] for _ in stages]
        costs = [self.cost_matrix(logits, boxes, targets, to_host=False) for logits, boxes, _ in stages]
        # one device -> host copy of every stage's [B, Q, sum n] costs
        host = torch.cat([c.flatten() for c in costs]).cpu().numpy()
        if not np.isfinite(host).all():
            raise FloatingPointError("HungarianMatcher: the cost matrix has NaN/inf (diverged predictions?)")
        bounds = np.cumsum(sizes)[:-1]
        per_stage, start = [], 0
        for cost, (_, _, num_repeats) in zip(costs, stages):
            stage_cost = host[start:start + cost.numel()].reshape(tuple(cost.shape))
            start += cost.numel()
            matches = []
            for i, c in enumerate(np.split(stage_cost, bounds, axis=-1)):
                n = sizes[i]
                if n == 0:
                    matches.append((torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64)))
                    continue
                c = c[i]
                if num_repeats > 1:
                    c = np.tile(c, (1, num_repeats))
                rows, cols = linear_sum_assignment(c)
                matches.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols % n, dtype=torch.int64)))
            per_stage.append(matches)
        # one host -> device copy of every (query_idx, gt_idx), split back per stage and image
        flat = [t for matches in per_stage for pair in matches for t in pair]
        moved = torch.cat(flat).to(device).split([len(t) for t in flat])
        return [[(moved[2 * (s * len(sizes) + i)], moved[2 * (s * len(sizes) + i) + 1]) for i in range(len(sizes))]
                for s in range(len(stages))]
