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


def _pad_values_for_fused_kernel(qh: Tensor, vh: Tensor, dropout_p: float, enabled: bool) -> bool:
    """Whether to zero-pad the values to the query/key head width before SDPA.

    PyTorch's fused CPU (flash) kernel needs one head width for q, k and v; Conditional DETR's
    cross-attention has 2 x 32-d query/key heads and 32-d value heads, so SDPA falls back to its
    unfused math path (and its NaN guard for fully masked rows). Zero value channels give zero output
    channels, which are sliced off: the result is unchanged (to float rounding) and the cross-attention
    of Conditional DETR-R50 at 800x1216 runs ~1.5x faster on 2 CPU threads (7.3 -> 4.3-4.8 ms a call;
    docs/benchmarks.md). Not done when tracing (fvcore counts the model's FLOPs, not the padding), with
    dropout (the fused CPU kernel has none, so nothing is gained), on CUDA (its memory-efficient kernel
    takes unequal widths), under ``torch.compile``, or unless the caller asks for it (``enabled``: the
    ``value_padding`` attribute of the attention module, which :func:`sd_detr.engine.accel.optimize_for_cpu`
    sets on the modules of its model; off by default).
    """
    return (enabled and not torch.jit.is_tracing() and not torch.compiler.is_compiling()
            and vh.shape[-1] < qh.shape[-1] and dropout_p == 0.0 and qh.device.type == "cpu")


def _sdpa_with_padded_values(qh: Tensor, kh: Tensor, vh: Tensor, mask: Optional[Tensor], dropout_p: float) -> Tensor:
    """SDPA with the values [B, H, Nk, Dv] zero-padded to the query/key width and the padding sliced off
    again: [B, H, Nq, Dv]."""
    dv = vh.shape[-1]
    vh = F.pad(vh, (0, qh.shape[-1] - dv))
    return F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, dropout_p=dropout_p)[..., :dv]


def multi_head_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    num_heads: int,
    key_padding_mask: Optional[Tensor] = None,
    attn_bias: Optional[Tensor] = None,
    dropout_p: float = 0.0,
    need_weights: bool = False,
    pad_values: bool = False,
) -> Tuple[Tensor, Optional[Tensor]]:
    """Scaled dot-product attention over already projected inputs.

    Args:
        q: [B, Nq, H * Dk]; k: [B, Nk, H * Dk]; v: [B, Nk, H * Dv] (Dv may differ from Dk).
        key_padding_mask: [B, Nk] bool, True where the key is padding.
        attn_bias: additive bias on the logits before the softmax, broadcastable to [B, H, Nq, Nk]
            (SMCA's log Gaussian map).
        dropout_p: dropout on the attention weights (pass 0 in eval).
        need_weights: also return the softmax weights [B, H, Nq, Nk].
        pad_values: allow the value padding of :func:`_pad_values_for_fused_kernel` (same result; the
            caller's own ``value_padding`` attribute, so that it is per model, never process-wide).

    Logits are scaled by 1 / sqrt(Dk), Dk the per-head query/key width (so Conditional DETR's
    concatenated 2 x 32-d content/spatial heads get 1/8, as in the official code).

    Returns:
        out [B, Nq, H * Dv], weights or None.
    """
    qh, kh, vh = split_heads(q, num_heads), split_heads(k, num_heads), split_heads(v, num_heads)
    mask = _additive_mask(key_padding_mask, attn_bias, q.dtype)
    if not need_weights:
        if _pad_values_for_fused_kernel(qh, vh, dropout_p, pad_values):
            out = _sdpa_with_padded_values(qh, kh, vh, mask, dropout_p)
        else:
            out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, dropout_p=dropout_p)
        weights = None
    else:
        logits = (qh @ kh.transpose(-2, -1)) * qh.shape[-1] ** -0.5
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else logits + mask
        weights = logits.softmax(-1)
        out = F.dropout(weights, dropout_p) @ vh
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d), weights
