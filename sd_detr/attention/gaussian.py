"""SMCA's spatially modulated co-attention (Gao et al., ICCV 2021, Sec. 3.3): DETR's co-attention with
the log of a Gaussian-like weight map G added to the logits before the softmax (paper Eq. 5 / 6):

    C_i = softmax(K_i^T Q_i / sqrt(d) + log G_i) V_i,
    log G_i(x, y) = -(s_x,i^2 (x - c_x,i)^2 + s_y,i^2 (y - c_y,i)^2) / beta.

The paper writes the scale in the denominator (``(x - c_x)^2 / (beta s_x^2)``); the official code
predicts its inverse: ``distance = sum_xy point3(out)^2 * (c - g)^2`` and ``logits += -distance / smooth``
(gaopengcuhk/SMCA-DETR ``models/transformer.py:288-300``), so here ``s`` is what the scale head outputs
and the weight of each axis is ``s^2``. Centres and key positions share one unit (feature cells in the
official single-scale code, where the grid is the integer cell index, without +0.5:
``models/transformer.py:61-63``).
"""
from typing import Optional

import torch
from torch import Tensor

from .multihead import MultiheadAttention


def feature_grid(height: int, width: int, step: float = 1.0, device=None, dtype=torch.float32) -> Tensor:
    """(x, y) positions of the cells of an ``height x width`` map, row-major (the order of
    ``flatten(2)``): ``[H * W, 2]`` = integer cell indices times ``step`` (no +0.5, as officially)."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                            torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack((xs, ys), dim=-1).reshape(-1, 2) * step


def gaussian_log_weights(centers: Tensor, scales: Optional[Tensor], grid: Tensor, beta: float) -> Tensor:
    """log G of every query (and head) at every key position.

    Args:
        centers: [B, Q, Hc, 2] (x, y) centres, Hc = 1 (head-shared) or H (one per head).
        scales: [B, Q, Hs, 2] per-axis scales s (independent x / y), [B, Q, Hs, 1] (one scale for both
            axes), or None (fixed scale 1); Hs = 1 or H.
        grid: [N, 2] (x, y) key positions, in the unit of ``centers``.
        beta: bandwidth; larger = flatter map (the official ``smooth``, 8).
    Returns:
        [B, H', Q, N] additive logit bias, H' = max(Hc, Hs); broadcastable to [B, H, Q, N].
    """
    sq = (centers[:, :, :, None, :] - grid[None, None, None]).pow(2)  # [B, Q, Hc, N, 2]
    if scales is not None:
        sq = sq * scales.pow(2)[:, :, :, None, :]
    return (-sq.sum(-1) / beta).transpose(1, 2)


class GaussianCrossAttention(MultiheadAttention):
    """DETR's decoder co-attention with an additive logit bias (SMCA's log G): a
    :class:`~sd_detr.attention.multihead.MultiheadAttention`, whose parameters have
    :class:`torch.nn.MultiheadAttention`'s names and layout, which the official
    ``GaussianMultiheadAttention`` subclasses (``models/attention_layer.py:278``).

    forward: query [B, Q, C] (content + query position), key [B, N, C] (memory + position), value
    [B, N, C] (memory), key_padding_mask [B, N] (True = padding), attn_bias = log G broadcastable to
    [B, H, Q, N] -> [B, Q, C] (before residual and norm). With ``record_attention`` the last softmax
    weights [B, H, Q, N] are kept in ``last_attention``.
    """
