"""SMCA's scale-selection attention (Gao et al., ICCV 2021, Sec. 3.3, Eq. 7-9).

Each object query attends to every feature level j with the level's own key and value projections and
the same spatial modulation log G_i, and the per-level results are mixed by the query's scale weights
alpha = softmax(FC(O_q)):

    C_i = sum_j alpha_j * softmax(K_i,j^T Q_i / sqrt(d) + log G_i,j) V_i,j.

The query projection and the output projection are shared by the levels. With a one-hot alpha this is
single-level :class:`~sd_detr.attention.gaussian.GaussianCrossAttention` on that level.

This is the paper's design; the released multi-scale code (Multi_scale_SMCA.zip) shares one key/value
projection between the levels and takes alpha of the first image of the batch for the whole batch.
"""
from typing import Optional, Sequence

from torch import Tensor, nn

from ..layers.linear import Linear
from .core import multi_head_attention


class ScaleSelectionAttention(nn.Module):
    """Co-attention over ``num_levels`` feature levels mixed by per-query scale weights.

    forward:
        query [B, Q, C] (content + query position);
        keys, values: per level [B, N_j, C] (memory + position, memory);
        scale_weights [B, Q, L] (alpha, summing to 1 over the levels);
        key_padding_masks: per level [B, N_j] (True = padding) or None;
        attn_biases: per level, broadcastable to [B, H, Q, N_j] (log G on that level's keys) or None.
    -> [B, Q, C] (before residual and norm).
    """

    def __init__(self, d_model: int, nhead: int, num_levels: int, dropout: float = 0.0):
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model {d_model} is not divisible by nhead {nhead}")
        if num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {num_levels}")
        self.nhead = nhead
        self.num_levels = num_levels
        self.dropout = dropout
        self.q_proj = Linear(d_model, d_model)
        self.k_projs = nn.ModuleList(Linear(d_model, d_model) for _ in range(num_levels))
        self.v_projs = nn.ModuleList(Linear(d_model, d_model) for _ in range(num_levels))
        self.out_proj = Linear(d_model, d_model)
        nn.init.zeros_(self.out_proj.bias)
        self.value_padding = False  # this module's own switch, set by optimize_for_cpu (engine/accel.py)

    def forward(self, query: Tensor, keys: Sequence[Tensor], values: Sequence[Tensor], scale_weights: Tensor,
                key_padding_masks: Optional[Sequence[Optional[Tensor]]] = None,
                attn_biases: Optional[Sequence[Optional[Tensor]]] = None) -> Tensor:
        n = self.num_levels
        if len(keys) != n or len(values) != n or scale_weights.shape[-1] != n:
            raise ValueError(f"expected {n} levels, got {len(keys)} keys, {len(values)} values and "
                             f"scale weights of shape {tuple(scale_weights.shape)}")
        masks = key_padding_masks if key_padding_masks is not None else [None] * n
        biases = attn_biases if attn_biases is not None else [None] * n
        q = self.q_proj(query)
        out = 0
        for j in range(n):
            o_j, _ = multi_head_attention(
                q, self.k_projs[j](keys[j]), self.v_projs[j](values[j]), self.nhead,
                key_padding_mask=masks[j], attn_bias=biases[j],
                dropout_p=self.dropout if self.training else 0.0, pad_values=self.value_padding,
            )
            # alpha scales the softmax of level j, so it scales that level's output (Eq. 8)
            out = out + scale_weights[..., j:j + 1] * o_j
        return self.out_proj(out)
