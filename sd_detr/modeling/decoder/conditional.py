"""Conditional DETR's decoder (Meng et al., ICCV 2021, Sec. 3.3).

Official reference: Atten4Vis/ConditionalDETR ``models/transformer.py``:
- reference point s = sigmoid(MLP(o_q)) from the object query, computed once, never refined (l. 141);
- spatial query p_q = lambda_q * PE(s), lambda_q = MLP(f) of the decoder embedding, identity in the
  first layer (l. 151-156);
- every layer output (intermediate too) goes through the shared final LayerNorm (l. 166-174).
"""
import copy
from typing import Optional

import torch
from torch import Tensor, nn

from ...attention import ConditionalCrossAttention, ConditionalSelfAttention
from ...layers import FFN, MLP, sine_embedding
from ..structures import DecoderOutput, EncoderMemory, Queries, self_attn_bias


class ConditionalDecoderLayer(nn.Module):
    """Self-attention, conditional cross-attention and FFN; post-norm. Shapes [B, Q, C];
    ``self_attn_bias`` [Q, Q] additive (0 / -inf) or None."""

    def __init__(self, d_model: int = 256, nhead: int = 8, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation="relu", add_query_pos: bool = False):
        super().__init__()
        self.self_attn = ConditionalSelfAttention(d_model, nhead, dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = ConditionalCrossAttention(d_model, nhead, dropout, add_query_pos=add_query_pos)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FFN(d_model, dim_feedforward, dropout, activation)

    def forward(self, tgt: Tensor, query_pos: Tensor, query_sine_embed: Tensor, mem: EncoderMemory,
                self_attn_bias: Optional[Tensor] = None) -> Tensor:
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(tgt, query_pos, self_attn_bias)))
        ca = self.cross_attn(tgt, mem.memory, mem.pos, query_sine_embed, query_pos, key_padding_mask=mem.mask)
        tgt = self.norm2(tgt + self.dropout2(ca))
        return self.ffn(tgt)


class ConditionalDecoder(nn.Module):
    """L :class:`ConditionalDecoderLayer` with reference points from the object queries.

    Input :class:`Queries` (from :class:`~sd_detr.modeling.queries.LearnedQueries`): ``content`` [B, Q, C]
    (zeros), ``pos`` [B, Q, C] (the learned object queries o_q), optional ``self_attn_mask``.
    Output: :class:`DecoderOutput` with ``references`` [L, B, Q, 2] (the same points in every layer).
    """

    def __init__(self, num_layers: int = 6, d_model: int = 256, nhead: int = 8,
                 dim_feedforward: int = 2048, dropout: float = 0.1, activation="relu"):
        super().__init__()
        # Only the first layer adds the object query to the content query (official l. 116-117).
        self.layers = nn.ModuleList(
            ConditionalDecoderLayer(d_model, nhead, dim_feedforward, dropout, activation, add_query_pos=(i == 0))
            for i in range(num_layers)
        )
        self.d_model = d_model
        self.query_scale = MLP(d_model, d_model, d_model, 2)
        self.ref_point_head = MLP(d_model, d_model, 2, 2)
        self.norm = nn.LayerNorm(d_model)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, mem: EncoderMemory, queries: Queries, box_head: Optional[nn.Module] = None) -> DecoderOutput:
        tgt, query_pos = queries.require(type(self).__name__, "content", "pos")
        bias = self_attn_bias(queries.self_attn_mask, tgt.dtype)
        reference = self.ref_point_head(query_pos).sigmoid()  # [B, Q, 2] (cx, cy)
        pos_embed = sine_embedding(reference, self.d_model // 2)  # [B, Q, C]
        hidden = []
        for i, layer in enumerate(self.layers):
            scale = 1.0 if i == 0 else self.query_scale(tgt)
            tgt = layer(tgt, query_pos, pos_embed * scale, mem, bias)
            hidden.append(self.norm(tgt))
        hidden = torch.stack(hidden)
        return DecoderOutput(hidden=hidden, references=reference.unsqueeze(0).expand(len(self.layers), -1, -1, -1))
