"""Classification and box losses of the set criterion.

Every classification loss has the same call signature, so a criterion can swap them by config:
``loss(logits [B, Q, K], pred_boxes [B, Q, 4] normalised cxcywh, assignment, num_boxes) -> scalar``.
Under ``torch.autocast`` (bfloat16 / float16 predictions) every loss is computed in float32 (issue 24).
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from ..layers import box_cxcywh_to_xyxy, elementwise_box_iou, elementwise_generalized_box_iou
from .structures import Assignment


def at_least_float32(x: Tensor) -> Tensor:
    """``x`` in float32 if it is in a lower precision (bfloat16 / float16 under autocast), else as it is
    (float32, or float64 of the hand-computed tests)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def one_hot_targets(logits: Tensor, assignment: Assignment, values: Tensor = None) -> Tensor:
    """Dense [B, Q, K] classification targets: ``values`` [P] (>= 0, default 1) at each classification
    positive (batch, query, label), 0 elsewhere. A query may carry several labels (multi-hot bags); when
    the same (batch, query, label) appears more than once the largest value is kept."""
    target = torch.zeros_like(logits)
    if assignment.num_cls_positives:
        vals = torch.ones_like(assignment.cls_batch, dtype=logits.dtype) if values is None else values.to(logits.dtype)
        num_queries, num_classes = logits.shape[1:]
        flat_index = (assignment.cls_batch * num_queries + assignment.cls_query) * num_classes + assignment.cls_label
        target.view(-1).scatter_reduce_(0, flat_index, vals, reduce="amax", include_self=True)
    return target


class FocalLoss(nn.Module):
    """Sigmoid focal loss (Lin et al. 2017) over all queries and classes, summed and divided by the
    number of ground-truth boxes, as the official Conditional/DAB-DETR ``loss_labels`` (their
    ``sigmoid_focal_loss(...) * num_queries`` is the same sum / num_boxes)."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0):
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma

    def forward(self, logits: Tensor, pred_boxes: Tensor, assignment: Assignment, num_boxes: float) -> Tensor:
        logits = at_least_float32(logits)  # under autocast: (1 - p_t)^gamma of bfloat16 scores is too coarse
        target = one_hot_targets(logits, assignment)
        return sigmoid_focal_loss(logits, target, alpha=self.alpha, gamma=self.gamma, reduction="sum") / num_boxes


def box_losses(pred_boxes: Tensor, assignment: Assignment, num_boxes: float) -> dict:
    """L1 and GIoU losses of the localisation positives, each summed and divided by ``num_boxes``.

    pred_boxes: [B, Q, 4] normalised cxcywh. Returns {"loss_bbox", "loss_giou"}.
    """
    src = at_least_float32(pred_boxes[assignment.box_batch, assignment.box_query])  # GIoU's ratios in float32
    tgt = assignment.box_target
    loss_bbox = F.l1_loss(src, tgt, reduction="sum") / num_boxes
    giou = elementwise_generalized_box_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt))
    loss_giou = (1 - giou).sum() / num_boxes
    return {"loss_bbox": loss_bbox, "loss_giou": loss_giou}


class TaskAlignmentLoss(nn.Module):
    """SD-DETR's task-alignment classification loss (Zhang et al., ICCV 2023, Sec. 3.2.3, Eq. 6-7).

    Each classification positive (row of the assignment) gets the soft target ``t = s^alpha * u^beta``:
    ``s`` the predicted probability of its label, ``u`` the IoU of the query's predicted box with the
    ground truth that gave the label (``assignment.cls_box``), both detached. With ``T`` the dense targets
    (``t`` at the positives, 0 elsewhere; a multi-hot bag gets one ``t`` per label, each from that label's
    own ground-truth box; a repeated (query, label) keeps its largest ``t``) and ``s`` the sigmoid scores::

        loss = sum_{queries, classes} |T - s|^gamma * BCE(s, T) / num_boxes

    which is Eq. 7: ``|t - s|^gamma BCE(s, t)`` over the positives plus ``s^gamma BCE(s, 0)`` over the
    negatives (a negative is a positive with ``t = 0``). Summed and divided by the number of ground-truth
    boxes, as :class:`FocalLoss`; the modulating factor is not detached (as the focal loss' is not).

    Args:
        alpha, beta: exponents of the score and of the IoU in ``t`` (paper: 0.25 and 0.75).
        gamma: the focusing parameter (paper: 2).

    forward(logits [B, Q, K], pred_boxes [B, Q, 4] normalised cxcywh, assignment, num_boxes) -> scalar.
    """

    def __init__(self, alpha: float = 0.25, beta: float = 0.75, gamma: float = 2.0):
        super().__init__()
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma

    @torch.no_grad()
    def alignment_targets(self, logits: Tensor, pred_boxes: Tensor, assignment: Assignment) -> Tensor:
        """``t`` of each classification positive: [P] = s^alpha * u^beta (no gradient)."""
        a = assignment
        s = logits[a.cls_batch, a.cls_query, a.cls_label].float().sigmoid()
        boxes = pred_boxes[a.cls_batch, a.cls_query].float()
        u = elementwise_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(a.cls_box.float()))
        u = torch.nan_to_num(u, nan=0.0).clamp(min=0.0, max=1.0)  # a degenerate predicted box overlaps nothing
        return s.pow(self.alpha) * u.pow(self.beta)

    def forward(self, logits: Tensor, pred_boxes: Tensor, assignment: Assignment, num_boxes: float) -> Tensor:
        logits = at_least_float32(logits)  # under autocast, as FocalLoss
        t = self.alignment_targets(logits, pred_boxes, assignment)
        target = one_hot_targets(logits, assignment, values=t)
        prob = logits.sigmoid()
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return ((target - prob).abs().pow(self.gamma) * bce).sum() / num_boxes
