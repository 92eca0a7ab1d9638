"""Multi-head attention with :class:`torch.nn.MultiheadAttention`'s parameters, on the project's kernel.

Same names and layout as ``nn.MultiheadAttention`` (packed ``in_proj_weight`` [3C, C] with rows q, k, v;
``in_proj_bias``; ``out_proj``), so official DETR-family checkpoints load unchanged, but batch-first,
with an optional additive logit bias, projections through :func:`sd_detr.layers.linear` and the fused
kernel of :func:`~sd_detr.attention.core.multi_head_attention`. Used by the DETR encoder, SMCA-DETR's
decoder self-attention and (as :class:`~sd_detr.attention.GaussianCrossAttention`) its co-attention.
"""
from typing import Optional

import torch
from torch import Tensor, nn

from ..layers.linear import Linear, linear
from .core import multi_head_attention


class MultiheadAttention(nn.Module):
    """forward: query [B, Q, C], key [B, N, C], value [B, N, C], key_padding_mask [B, N] (True =
    padding), attn_bias broadcastable to [B, H, Q, N] -> [B, Q, C] (after ``out_proj``, before residual
    and norm). With ``record_attention`` the last softmax weights [B, H, Q, N] are kept in
    ``last_attention``. Dropout (training only) is on the attention weights, as in ``nn.MultiheadAttention``.
    """

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0):
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model {d_model} is not divisible by nhead {nhead}")
        self.nhead = nhead
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = Linear(d_model, d_model)
        # nn.MultiheadAttention's initialisation
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)
        self.record_attention = False
        self.last_attention = None
        self.value_padding = False  # this module's own switch, set by optimize_for_cpu (engine/accel.py)
        self.onednn_linear = False  # the in-projections' (out_proj is a Linear with its own flag)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Optional[Tensor] = None,
                attn_bias: Optional[Tensor] = None) -> Tensor:
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        out, weights = multi_head_attention(
            linear(query, w_q, b_q, self.onednn_linear), linear(key, w_k, b_k, self.onednn_linear),
            linear(value, w_v, b_v, self.onednn_linear), self.nhead,
            key_padding_mask=key_padding_mask, attn_bias=attn_bias,
            dropout_p=self.dropout if self.training else 0.0, need_weights=self.record_attention,
            pad_values=self.value_padding,
        )
        if self.record_attention:
            self.last_attention = weights
        return self.out_proj(out)
