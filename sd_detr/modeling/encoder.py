"""DETR transformer encoder (post-norm), batch-first.

Official reference: Atten4Vis/ConditionalDETR ``models/transformer.py:152-212`` (packed q/k/v
projections, position added to queries and keys only).
"""
import copy
from typing import Optional

from torch import Tensor, nn

from ..attention.multihead import MultiheadAttention
from ..layers import FFN, MLP


class TransformerEncoderLayer(nn.Module):
    """Self-attention + FFN, each followed by residual and LayerNorm. Shapes: [B, N, C] -> [B, N, C]."""

    def __init__(self, d_model: int = 256, nhead: int = 8, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation="relu"):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.ffn = FFN(d_model, dim_feedforward, dropout, activation)

    def forward(self, src: Tensor, pos: Tensor, key_padding_mask: Optional[Tensor] = None) -> Tensor:
        q = k = src + pos
        out = self.self_attn(q, k, src, key_padding_mask=key_padding_mask)
        src = self.norm1(src + self.dropout1(out))
        return self.ffn(src)


class TransformerEncoder(nn.Module):
    """A stack of :class:`TransformerEncoderLayer`.

    Args:
        scale_pos_by_content: DAB-DETR's encoder option: before each layer the position embedding is
            multiplied by ``MLP(features)`` (``models/DAB_DETR/transformer.py`` ``query_scale``); the first
            layer uses it too.

    forward: src [B, N, C] flattened features, pos [B, N, C], key_padding_mask [B, N] (True = padding)
    -> memory [B, N, C].
    """

    def __init__(self, num_layers: int = 6, d_model: int = 256, nhead: int = 8,
                 dim_feedforward: int = 2048, dropout: float = 0.1, activation="relu",
                 scale_pos_by_content: bool = False):
        super().__init__()
        layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.d_model = d_model
        self.query_scale = MLP(d_model, d_model, d_model, 2) if scale_pos_by_content else None
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: Tensor, pos: Tensor, key_padding_mask: Optional[Tensor] = None) -> Tensor:
        out = src
        for layer in self.layers:
            layer_pos = pos if self.query_scale is None else pos * self.query_scale(out)
            out = layer(out, layer_pos, key_padding_mask)
        return out
