"""Box utilities. Inside the models boxes are normalised ``(cx, cy, w, h)`` in [0, 1] relative to the
unpadded image; :class:`~detectron2.structures.Instances` carry absolute ``(x0, y0, x1, y1)`` pixels.
Built on :mod:`torchvision.ops`."""
import torch
from torch import Tensor
from torchvision.ops import box_convert, box_iou
from torchvision.ops import generalized_box_iou as _tv_generalized_box_iou


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """[..., 4] (cx, cy, w, h) -> [..., 4] (x0, y0, x1, y1), same units."""
    return box_convert(boxes, "cxcywh", "xyxy")


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """[..., 4] (x0, y0, x1, y1) -> [..., 4] (cx, cy, w, h), same units."""
    return box_convert(boxes, "xyxy", "cxcywh")


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise GIoU of [N, 4] and [M, 4] xyxy boxes -> [N, M]."""
    return _tv_generalized_box_iou(boxes1, boxes2)


def _elementwise_inter_union(boxes1: Tensor, boxes2: Tensor):
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    lt = torch.max(boxes1[..., :2], boxes2[..., :2])
    rb = torch.min(boxes1[..., 2:], boxes2[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter, area1 + area2 - inter


def elementwise_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of matching rows of two [..., 4] xyxy box tensors -> [...]. Avoids the N x M matrix of
    :func:`torchvision.ops.box_iou` when only the diagonal is needed (matched pairs)."""
    inter, union = _elementwise_inter_union(boxes1, boxes2)
    return inter / union


def elementwise_generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """GIoU of matching rows of two [..., 4] xyxy box tensors -> [...] in [-1, 1]."""
    inter, union = _elementwise_inter_union(boxes1, boxes2)
    iou = inter / union
    lt = torch.min(boxes1[..., :2], boxes2[..., :2])
    rb = torch.max(boxes1[..., 2:], boxes2[..., 2:])
    wh = (rb - lt).clamp(min=0)
    hull = wh[..., 0] * wh[..., 1]
    return iou - (hull - union) / hull


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """log(x / (1 - x)) with x clamped to [0, 1] and both terms to >= eps, as the official DETR
    variants do (Conditional DETR uses eps 1e-5, DAB-DETR 1e-3 for its anchor update)."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


__all__ = [
    "box_cxcywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "box_iou",
    "generalized_box_iou",
    "elementwise_box_iou",
    "elementwise_generalized_box_iou",
    "inverse_sigmoid",
]
