"""The set criterion shared by every detector of the project.

Three replaceable steps, each chosen by config:
1. target assignment (``assigner``): Hungarian one-to-one by default, k-fold repeated positives,
   or the cross-stage assigner; it sees every decoder stage at once;
2. the classification loss (``class_loss``): sigmoid focal loss by default, or the task-alignment loss;
3. the box losses: L1 + GIoU of the localisation positives.
The criterion does not know which detector it serves: it reads per-stage predictions.
"""
from typing import Dict, List, Optional

import torch
from detectron2.utils import comm
from torch import Tensor, nn

from .assigner import HungarianAssigner
from .structures import Assignment
from .losses import FocalLoss, box_losses
from .matcher import HungarianMatcher

DEFAULT_WEIGHTS = {"loss_class": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0}


class SetCriterion(nn.Module):
    """DETR set-prediction loss over the decoder stages and optional extra heads.

    Args:
        num_classes: K, number of foreground classes (sigmoid outputs, no "no-object" class).
        matcher: :class:`HungarianMatcher`.
        assigner: callable ``(stage_outputs, targets, matcher) -> List[Assignment]``; default
            :class:`HungarianAssigner` (one-to-one).
        class_loss: ``(logits, pred_boxes, assignment, num_boxes) -> Tensor``; default :class:`FocalLoss`.
        weight_dict: weight of each loss term by base name ("loss_class", "loss_bbox", "loss_giou").
        aux_loss: also supervise the intermediate decoder layers (deep supervision).
        extra_stage_weights: multiplier of the losses of each extra head in
            ``outputs["extra_outputs"]`` (e.g. SD-DETR's mini-detector); those heads are assigned
            one-to-one with the matcher and trained with ``extra_class_loss`` (default: focal).

    forward(outputs, targets) -> dict of weighted loss tensors: ``loss_class``, ``loss_bbox``,
    ``loss_giou`` for the last layer, ``..._{i}`` for layer i < L-1, ``..._{name}`` for extra heads.
    ``outputs``: {"pred_logits": [B, Q, K], "pred_boxes": [B, Q, 4] normalised cxcywh,
    "aux_outputs": list of such dicts for layers 0..L-2, "extra_outputs": {name: such dict},
    "known_outputs": {"name", "assignment", "stages": list of such dicts for layers 0..L-1}} (queries
    with a known assignment, e.g. denoising: not matched, trained with that assignment in every layer
    like the matched ones, losses ``..._{name}`` and ``..._{name}_{i}``).
    ``targets``: per image {"labels": [n] long, "boxes": [n, 4] normalised cxcywh}.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher,
        assigner: Optional[nn.Module] = None,
        class_loss: Optional[nn.Module] = None,
        weight_dict: Optional[Dict[str, float]] = None,
        aux_loss: bool = True,
        extra_stage_weights: Optional[Dict[str, float]] = None,
        extra_class_loss: Optional[nn.Module] = None,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.assigner = assigner if assigner is not None else HungarianAssigner()
        self.class_loss = class_loss if class_loss is not None else FocalLoss()
        self.extra_class_loss = extra_class_loss if extra_class_loss is not None else FocalLoss()
        self.weight_dict = dict(DEFAULT_WEIGHTS if weight_dict is None else weight_dict)
        unknown = set(self.weight_dict) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise KeyError(f"SetCriterion: unknown loss names in weight_dict: {sorted(unknown)}; "
                           f"expected {sorted(DEFAULT_WEIGHTS)}")
        self.aux_loss = aux_loss
        self.extra_stage_weights = dict(extra_stage_weights or {})

    @staticmethod
    def num_boxes(targets: List[dict], device) -> float:
        """Number of ground-truth boxes in the batch, averaged over workers, at least 1."""
        n = torch.as_tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
        if comm.get_world_size() > 1:
            torch.distributed.all_reduce(n)
        return torch.clamp(n / comm.get_world_size(), min=1).item()

    def stage_losses(self, out: dict, assignment: Assignment, num_boxes: float, class_loss,
                     class_num_boxes: Optional[float] = None,
                     box_num_boxes: Optional[float] = None) -> Dict[str, Tensor]:
        """Weighted losses of one stage; ``class_num_boxes`` / ``box_num_boxes`` override ``num_boxes`` as
        the divisor of the classification / box losses (assigners with their own normaliser)."""
        class_n = num_boxes if class_num_boxes is None else class_num_boxes
        box_n = num_boxes if box_num_boxes is None else box_num_boxes
        losses = {"loss_class": class_loss(out["pred_logits"], out["pred_boxes"], assignment, class_n)}
        losses.update(box_losses(out["pred_boxes"], assignment, box_n))
        return {k: v * self.weight_dict.get(k, 1.0) for k, v in losses.items()}

    def loss_normalizers(self, assignments: List[Assignment], targets: List[dict], num_boxes: float) -> list:
        """Per stage (classification, box) divisor: ``num_boxes`` for both, unless the assigner defines
        ``loss_normalizers(assignments, targets, num_boxes)`` (e.g. :class:`CrossStageAssigner`)."""
        hook = getattr(self.assigner, "loss_normalizers", None)
        if hook is None:
            return [(num_boxes, num_boxes)] * len(assignments)
        return hook(assignments, targets, num_boxes)

    def layer_losses(self, stages: List[dict], assignments: List[Assignment], num_boxes: float,
                     normalizers: Optional[list] = None, prefix: str = "") -> Dict[str, Tensor]:
        """Losses of the decoder layers ``stages`` (the last one last) under their ``assignments``:
        ``loss_*{prefix}`` for the last layer, ``loss_*{prefix}_{i}`` for layer i (with ``aux_loss``);
        ``normalizers``: per layer (classification, box) divisors, default ``num_boxes``."""
        normalizers = normalizers or [(num_boxes, num_boxes)] * len(stages)
        losses = {}
        last = len(stages) - 1
        for i, (out, assignment, (class_n, box_n)) in enumerate(zip(stages, assignments, normalizers)):
            if i < last and not self.aux_loss:
                continue
            suffix = prefix + ("" if i == last else f"_{i}")
            for k, v in self.stage_losses(out, assignment, num_boxes, self.class_loss, class_n, box_n).items():
                losses[k + suffix] = v
        return losses

    def forward(self, outputs: dict, targets: List[dict]) -> Dict[str, Tensor]:
        final = {"pred_logits": outputs["pred_logits"], "pred_boxes": outputs["pred_boxes"]}
        stages = list(outputs.get("aux_outputs", [])) + [final]
        num_boxes = self.num_boxes(targets, outputs["pred_logits"].device)
        extra = outputs.get("extra_outputs", {})
        matcher = self.matcher
        if extra and hasattr(matcher, "match_stages"):  # the extra heads matched in the stages' host round trip
            matcher = _WithExtraStages(matcher, [(o["pred_logits"], o["pred_boxes"], 1) for o in extra.values()])
        assignments = self.assigner(stages, targets, matcher)
        normalizers = self.loss_normalizers(assignments, targets, num_boxes)
        losses = self.layer_losses(stages, assignments, num_boxes, normalizers)
        known = outputs.get("known_outputs")
        if known is not None:  # queries with a known assignment (denoising): the same in every layer
            losses.update(self.layer_losses(known["stages"], [known["assignment"]] * len(known["stages"]),
                                            num_boxes, prefix=f"_{known['name']}"))
        extra_matches = getattr(matcher, "extra_matches", None)  # None: the assigner did not call match_stages
        for k, (name, out) in enumerate(extra.items()):
            matches = self.matcher(out["pred_logits"], out["pred_boxes"], targets) if extra_matches is None \
                else extra_matches[k]
            assignment = Assignment.from_matches(matches, targets)
            weight = self.extra_stage_weights.get(name, 1.0)
            for k, v in self.stage_losses(out, assignment, num_boxes, self.extra_class_loss).items():
                losses[f"{k}_{name}"] = v * weight
        return losses


class _WithExtraStages:
    """The matcher as the assigner sees it when extra heads are matched too: its ``match_stages`` also
    matches ``extra`` ((logits, boxes, num_repeats) per extra head), so that all costs of a batch go to
    the host in one copy (issue 24), and keeps their matches in ``extra_matches``; anything else is the
    matcher's own."""

    def __init__(self, matcher, extra):
        self.matcher = matcher
        self.extra = extra
        self.extra_matches = None

    def match_stages(self, requests, targets):
        out = self.matcher.match_stages(list(requests) + self.extra, targets)
        self.extra_matches = out[len(requests):]
        return out[:len(requests)]

    def __call__(self, *args, **kwargs):
        return self.matcher(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.matcher, name)
