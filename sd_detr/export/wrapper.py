"""A tensor-in / tensors-out view of a :class:`~sd_detr.modeling.meta_arch.detr.DETRDetector` for export.

Why a wrapper of the project's own rather than Detectron2's ``TracingAdapter``: ``TracingAdapter``
flattens the model's list-of-dicts input and its ``Instances`` output, so the exported graph keeps the
detector's Python preprocessing (``ImageList`` padding, a per-image padding-mask loop) and its output
depends on how many boxes ``detector_postprocess`` drops. DETR's inference needs neither: one image (or a
batch of equal-size images) has no padding, so the mask is all False, and the top-k over queries x classes
has a fixed size. This wrapper runs the detector's own parts (``encode`` -> ``query_init`` -> ``decoder``
-> ``predict``) on that input and returns fixed-size tensors, which every runtime can consume.
"""
import dataclasses
from typing import Tuple

import torch
from detectron2.structures import ImageList
from torch import Tensor, nn

from ..layers import box_cxcywh_to_xyxy
from ..modeling.meta_arch.detr import DETRDetector


class ExportableDetector(nn.Module):
    """``image -> (boxes, scores, labels)`` for a DETR detector in eval mode.

    Args:
        model: a :class:`DETRDetector` (any detector of the project), as built from its config; the CPU
            accelerations (channels-last backbone, oneDNN linear layers, value padding of the attention)
            stay in place: under ``torch.jit.trace`` (both ONNX and TorchScript export trace) the linear
            layers and the attention take their plain paths (``sd_detr/layers/linear.py``,
            ``sd_detr/attention/core.py``), and channels-last is a memory layout, not an op.

    Forward:
        image: [3, H, W] or [B, 3, H, W], uint8 or float, 0-255, channels in the model's
            ``input_format`` order (RGB for every config of the project), no padding.

    Returns:
        boxes [N, 4] (or [B, N, 4]): absolute (x0, y0, x1, y1) in the input's pixel coordinates, clipped to
            the image if the model clips (``model.clip_boxes``; a clipped box may then be empty: Detectron2's
            ``detector_postprocess`` drops those, :class:`~sd_detr.export.OnnxPredictor` does too);
        scores [N] (or [B, N]) float32 sigmoid scores, descending;
        labels [N] (or [B, N]) int64 class indices (0..K-1);
        N = ``model.num_select`` (top-k over queries x classes, at most Q * K).
    """

    def __init__(self, model: DETRDetector):
        super().__init__()
        if not isinstance(model, DETRDetector):
            raise TypeError(f"ExportableDetector: expected a DETRDetector, got {type(model).__name__}")
        if model.size_divisibility > 1:
            # eager inference pads the image to a multiple and masks the padding; the wrapper feeds the
            # unpadded image, which would change the outputs
            raise ValueError(f"ExportableDetector: model.size_divisibility={model.size_divisibility} is not supported "
                             "(export feeds the unpadded image); set model.size_divisibility=0")
        self.model = model
        # eval as a whole: torch.onnx.export restores the wrapper's own mode afterwards, and a wrapper left
        # in training mode would switch the detector (its BatchNorm) to training with it
        self.eval()

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        single = image.dim() == 3
        x = image[None] if single else image
        if x.dim() != 4 or x.shape[1] != self.model.pixel_mean.shape[0]:
            raise ValueError(f"ExportableDetector: image must be [3, H, W] or [B, 3, H, W], got {tuple(image.shape)}")
        m = self.model
        x = (x.to(m.pixel_mean.device).float() - m.pixel_mean) / m.pixel_std
        h, w = x.shape[-2], x.shape[-1]
        images = ImageList(x, [(h, w)] * x.shape[0])
        mask = torch.zeros_like(x[:, 0], dtype=torch.bool)  # no padding: every pixel is image
        mem = m.encode(images, mask)
        # encode() builds image_sizes with int() (a constant under tracing); take them from the input's
        # traced shape so that an export with dynamic height/width stays correct (SMCA's Gaussian prior
        # reads them)
        sizes = torch.stack([torch.as_tensor(h), torch.as_tensor(w)]).to(torch.float32)
        mem = dataclasses.replace(mem, image_sizes=sizes[None].expand(x.shape[0], 2))
        queries = m.query_init(mem)
        dec = m.decoder(mem, queries, box_head=m.bbox_embed)
        pred = m.predict(dec)
        boxes, scores, labels = topk_detections(pred["pred_logits"][-1], pred["pred_boxes"][-1], h, w,
                                                m.num_select, m.clip_boxes)
        if single:
            return boxes[0], scores[0], labels[0]
        return boxes, scores, labels


def topk_detections(logits: Tensor, boxes: Tensor, height, width, num_select: int, clip: bool):
    """The detector's inference (``DETRDetector.inference`` + the clipping of ``detector_postprocess``)
    on a batch of equal-size images, as tensors.

    logits: [B, Q, K]; boxes: [B, Q, 4] normalised cxcywh; height, width: the input size in pixels (ints
    or traced 0-dim tensors). Returns boxes [B, N, 4] absolute xyxy, scores [B, N], labels [B, N] int64.
    """
    bsz, nq, k = logits.shape
    prob = logits.sigmoid().reshape(bsz, nq * k)
    scores, index = prob.topk(min(num_select, nq * k), dim=1)
    query = torch.div(index, k, rounding_mode="floor")
    labels = index % k
    picked = torch.gather(boxes, 1, query[..., None].expand(-1, -1, 4))
    w = torch.as_tensor(width).to(boxes.dtype)
    h = torch.as_tensor(height).to(boxes.dtype)
    scale = torch.stack([w, h, w, h])
    xyxy = box_cxcywh_to_xyxy(picked) * scale
    if clip:
        # Boxes.clip: x to [0, width], y to [0, height]
        xyxy = torch.minimum(xyxy.clamp(min=0), scale)
    return xyxy, scores, labels
