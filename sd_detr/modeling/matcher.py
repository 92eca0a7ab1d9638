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
    def cost_matrix(self, pred_logits: Tensor, pred_boxes: Tensor, targets: List[dict]) -> Tensor:
        """[B, Q, K] logits, [B, Q, 4] normalised cxcywh boxes -> [B, Q, sum of n_i] costs (on CPU)."""
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
        return cost.view(bsz, nq, -1).cpu()

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
            per image (query_idx [m] long, gt_idx [m] long), m = min(Q, k * n), sorted by query.
        """
        if num_repeats < 1:
            raise ValueError(f"HungarianMatcher: num_repeats must be >= 1, got {num_repeats}")
        sizes = [len(t["boxes"]) for t in targets]
        empty = torch.empty(0, dtype=torch.int64)
        if sum(sizes) == 0:
            return [(empty, empty) for _ in sizes]
        cost = self.cost_matrix(pred_logits, pred_boxes, targets)
        if not torch.isfinite(cost).all():
            raise FloatingPointError("HungarianMatcher: the cost matrix has NaN/inf (diverged predictions?)")
        matches = []
        for i, c in enumerate(cost.split(sizes, -1)):
            n = sizes[i]
            if n == 0:
                matches.append((empty, empty))
                continue
            c = c[i].numpy()
            if num_repeats > 1:
                c = np.tile(c, (1, num_repeats))
            rows, cols = linear_sum_assignment(c)
            matches.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols % n, dtype=torch.int64)))
        return matches
