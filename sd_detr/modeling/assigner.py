"""Target assigners: which ground truth each prediction of each stage is trained towards.

An assigner is called as ``assigner(stage_outputs, targets, matcher) -> List[Assignment]`` with one
entry per stage (decoder layer, in order). The default is DETR's one-to-one Hungarian assignment,
optionally with each ground truth matched k times (SD-DETR's repeated positives).
"""
from typing import List, Optional, Sequence

from torch import nn

from .assignment import Assignment
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
        """Per stage, per image (query_idx, gt_idx) matches."""
        n = len(stage_outputs)
        return [
            matcher(out["pred_logits"], out["pred_boxes"], targets, num_repeats=self.repeats_for(i, n))
            for i, out in enumerate(stage_outputs)
        ]

    def forward(self, stage_outputs: List[dict], targets: List[dict], matcher: HungarianMatcher) -> List[Assignment]:
        return [Assignment.from_matches(m, targets) for m in self.match(stage_outputs, targets, matcher)]
