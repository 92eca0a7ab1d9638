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
import torch.nn.functional as F
from torch import Tensor, nn

from .core import multi_head_attention


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


class GaussianCrossAttention(nn.Module):
    """DETR's decoder co-attention with an additive logit bias (SMCA's log G).

    Parameters have :class:`torch.nn.MultiheadAttention`'s names and layout (packed ``in_proj_weight``
    [3C, C] with rows q, k, v; ``in_proj_bias``; ``out_proj``), which the official
    ``GaussianMultiheadAttention`` subclasses (``models/attention_layer.py:278``).

    forward: query [B, Q, C] (content + query position), key [B, N, C] (memory + position), value
    [B, N, C] (memory), key_padding_mask [B, N] (True = padding), attn_bias broadcastable to
    [B, H, Q, N] -> [B, Q, C] (before residual and norm). With ``record_attention`` the last softmax
    weights [B, H, Q, N] are kept in ``last_attention``.
    """

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0):
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model {d_model} is not divisible by nhead {nhead}")
        self.nhead = nhead
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        # nn.MultiheadAttention's initialisation
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)
        self.record_attention = False
        self.last_attention = None

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Optional[Tensor] = None,
                attn_bias: Optional[Tensor] = None) -> Tensor:
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        out, weights = multi_head_attention(
            F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v), self.nhead,
            key_padding_mask=key_padding_mask, attn_bias=attn_bias,
            dropout_p=self.dropout if self.training else 0.0, need_weights=self.record_attention,
        )
        if self.record_attention:
            self.last_attention = weights
        return self.out_proj(out)
