"""The attention kernel shared by every attention module of the project.

It runs :func:`torch.nn.functional.scaled_dot_product_attention` (no ``[B, H, Nq, Nk]`` weight tensor is
kept) unless the caller asks for the weights, e.g. to draw attention maps.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """[B, N, H * D] -> [B, H, N, D]."""
    b, n, c = x.shape
    return x.view(b, n, num_heads, c // num_heads).transpose(1, 2)


def _additive_mask(key_padding_mask: Optional[Tensor], attn_bias: Optional[Tensor], dtype) -> Optional[Tensor]:
    """Combine a [B, Nk] padding mask (True = ignore) and an additive logit bias into one SDPA mask."""
    if key_padding_mask is None:
        return attn_bias
    if attn_bias is None:
        # Boolean form (True = attend) lets SDPA pick its fused kernels.
        return ~key_padding_mask[:, None, None, :]
    return attn_bias.to(dtype).masked_fill(key_padding_mask[:, None, None, :], float("-inf"))


_VALUE_PADDING = False  # set by optimize_for_cpu (sd_detr/engine/accel.py)


def set_value_padding(enabled: bool) -> bool:
    """Zero-pad narrow value heads for SDPA's fused CPU kernel (see :func:`_pad_values_for_fused_kernel`);
    returns the previous setting. Off by default; :func:`sd_detr.engine.accel.optimize_for_cpu` turns it on."""
    global _VALUE_PADDING
    previous, _VALUE_PADDING = _VALUE_PADDING, bool(enabled)
    return previous


def value_padding_enabled() -> bool:
    return _VALUE_PADDING


def _pad_values_for_fused_kernel(qh: Tensor, vh: Tensor, dropout_p: float) -> bool:
    """Whether to zero-pad the values to the query/key head width before SDPA.

    PyTorch's fused CPU (flash) kernel needs one head width for q, k and v; Conditional DETR's
    cross-attention has 2 x 32-d query/key heads and 32-d value heads, so SDPA falls back to its
    unfused math path (and its NaN guard for fully masked rows). Zero value channels give zero output
    channels, which are sliced off: the result is unchanged (to float rounding) and the cross-attention
    of Conditional DETR-R50 at 800x1216 runs ~1.5x faster on 2 CPU threads (7.3 -> 4.3-4.8 ms a call;
    docs/benchmarks.md). Not done when tracing (fvcore counts the model's FLOPs, not the padding), with
    dropout (the fused CPU kernel has none, so nothing is gained), on CUDA (its memory-efficient kernel
    takes unequal widths), under ``torch.compile``, or unless switched on (:func:`set_value_padding`).
    """
    return (_VALUE_PADDING and not torch.jit.is_tracing() and not torch.compiler.is_compiling()
            and vh.shape[-1] < qh.shape[-1] and dropout_p == 0.0 and qh.device.type == "cpu")


def multi_head_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    num_heads: int,
    key_padding_mask: Optional[Tensor] = None,
    attn_bias: Optional[Tensor] = None,
    dropout_p: float = 0.0,
    need_weights: bool = False,
) -> Tuple[Tensor, Optional[Tensor]]:
    """Scaled dot-product attention over already projected inputs.

    Args:
        q: [B, Nq, H * Dk]; k: [B, Nk, H * Dk]; v: [B, Nk, H * Dv] (Dv may differ from Dk).
        key_padding_mask: [B, Nk] bool, True where the key is padding.
        attn_bias: additive bias on the logits before the softmax, broadcastable to [B, H, Nq, Nk]
            (SMCA's log Gaussian map).
        dropout_p: dropout on the attention weights (pass 0 in eval).
        need_weights: also return the softmax weights [B, H, Nq, Nk].

    Logits are scaled by 1 / sqrt(Dk), Dk the per-head query/key width (so Conditional DETR's
    concatenated 2 x 32-d content/spatial heads get 1/8, as in the official code).

    Returns:
        out [B, Nq, H * Dv], weights or None.
    """
    qh, kh, vh = split_heads(q, num_heads), split_heads(k, num_heads), split_heads(v, num_heads)
    mask = _additive_mask(key_padding_mask, attn_bias, q.dtype)
    if not need_weights:
        dv = vh.shape[-1]
        if _pad_values_for_fused_kernel(qh, vh, dropout_p):
            vh = F.pad(vh, (0, qh.shape[-1] - dv))
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, dropout_p=dropout_p)[..., :dv]
        weights = None
    else:
        logits = (qh @ kh.transpose(-2, -1)) * qh.shape[-1] ** -0.5
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else logits + mask
        weights = logits.softmax(-1)
        out = F.dropout(weights, dropout_p) @ vh
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d), weights
