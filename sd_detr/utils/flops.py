"""FLOP counting with fvcore (one multiply-add = one FLOP, as fvcore and the papers count).

- fvcore has no handle for the fused attention op, which would count every attention as zero: it is
  counted here as the two matrix products it replaces (softmax, scaling and masking are not counted,
  as fvcore does not count them on the unfused ``matmul``/``bmm`` path either).
- Detectron2 0.6's own ``FlopCountAnalysis`` needs ``detectron2.export`` (caffe2); the model is traced
  here through a small tensor-in/tensor-out adapter instead, from the input image to the last
  layer's predictions (the top-k post-processing has no multiply-adds).
- Batch norm is not counted: Detectron2's FrozenBatchNorm2d runs as ``aten::batch_norm`` or as a
  multiply + add depending on ``requires_grad`` (frozen stages vs trainable ones), and the official
  implementations' torchvision FrozenBatchNorm2d is always a multiply + add, which fvcore does not
  count; a per-channel affine is folded into the convolution at deployment anyway.
"""
from typing import List

import fvcore.nn
from fvcore.nn.jit_handles import get_shape
from torch import Tensor, nn


def sdpa_flop_jit(inputs: List, outputs: List) -> int:
    """aten::scaled_dot_product_attention(q [.., L, E], k [.., S, E], v [.., S, Ev]): L*S*(E + Ev) per batch x head."""
    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = 1
    for d in q[:-2]:
        batch *= d
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


class _ImageToPredictions(nn.Module):
    """[3, H, W] image -> (pred_logits [1, Q, K], pred_boxes [1, Q, 4]) of a DETRDetector."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, image: Tensor):
        outputs = self.detector.forward_outputs([{"image": image}])[0]
        return outputs["pred_logits"], outputs["pred_boxes"]


def flop_count_analysis(detector: nn.Module, image: Tensor) -> fvcore.nn.FlopCountAnalysis:
    """fvcore FlopCountAnalysis of a DETRDetector on one [3, H, W] image. ``.total()`` is the count,
    ``.by_module()["detector.backbone"]`` the backbone's, ``.unsupported_ops()`` what was not counted."""
    analysis = fvcore.nn.FlopCountAnalysis(_ImageToPredictions(detector).eval(), (image,))
    analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
    # a None handle does not remove fvcore's default batch-norm handle (fvcore 0.1.5): count it as 0
    analysis.set_op_handle("aten::batch_norm", lambda inputs, outputs: 0)
    return analysis
