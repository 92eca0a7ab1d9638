"""The result of target assignment for one prediction stage (one decoder layer or an extra head)."""
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch
from torch import Tensor


@dataclass
class Assignment:
    """Which ground truth supervises which prediction, for one stage.

    Classification positives (one row per (query, class) pair; a query may have several rows, a
    multi-hot bag):
        cls_batch, cls_query, cls_label: [P] long; cls_box: [P, 4] normalised cxcywh box of the ground
        truth that contributed the label (used by IoU-aware targets such as the task-alignment loss).
    Localisation positives (one row per supervised box):
        box_batch, box_query: [R] long; box_target: [R, 4] normalised cxcywh.
    Every query without a classification row is a negative for all classes.
    """

    cls_batch: Tensor
    cls_query: Tensor
    cls_label: Tensor
    cls_box: Tensor
    box_batch: Tensor
    box_query: Tensor
    box_target: Tensor

    @property
    def num_cls_positives(self) -> int:
        return int(self.cls_batch.numel())

    @classmethod
    def from_matches(cls, matches: Sequence[Tuple[Tensor, Tensor]], targets: List[dict]) -> "Assignment":
        """One-to-one (or k-to-one) assignment from per-image (query_idx, gt_idx) pairs: the matched query
        is a classification and a localisation positive of its ground truth."""
        device = targets[0]["boxes"].device if targets else torch.device("cpu")
        batch = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(matches)]).to(device)
        query = torch.cat([q for q, _ in matches]).to(device)
        labels = torch.cat([t["labels"][g.to(device)] for t, (_, g) in zip(targets, matches)])
        boxes = torch.cat([t["boxes"][g.to(device)] for t, (_, g) in zip(targets, matches)]).reshape(-1, 4)
        return cls(batch, query, labels, boxes, batch, query, boxes)
