"""SMCA's multi-scale encoder (Gao et al., ICCV 2021, Sec. 3.3 "SMCA with multi-scale visual features"):
a stack of DETR encoder layers, each either

- intra-scale: self-attention within each feature level separately, the same weights for every level
  (the paper's choice; "weight sharing across scales enhances the generalization"), or
- multi-scale: self-attention over the locations of all levels together.

The paper's design is 2 intra, 1 multi, 2 intra (``num_layers=5, multi_scale_layers=(2,)``), FFN 1024.
The released multi-scale code (Multi_scale_SMCA.zip) replaces these attentions by depthwise
convolutions; this module is the paper's version.
"""
import copy
from typing import List, Sequence

import torch
from torch import Tensor, nn

from .encoder import TransformerEncoderLayer


class IntraMultiScaleEncoder(nn.Module):
    """Intra-scale and multi-scale self-attention layers over a list of feature levels.

    Args:
        num_layers: encoder layers (5 in the paper).
        multi_scale_layers: indices of the layers that attend across levels (``(2,)``: the third).
        d_model, nhead, dim_feedforward, dropout, activation: of :class:`TransformerEncoderLayer`.

    forward: srcs, pos: per level [B, N_j, C] (pos includes any level embedding), key_padding_masks: per
    level [B, N_j] (True = padding) -> per level [B, N_j, C].
    """

    def __init__(self, num_layers: int = 5, d_model: int = 256, nhead: int = 8, dim_feedforward: int = 1024,
                 dropout: float = 0.1, activation="relu", multi_scale_layers: Sequence[int] = (2,)):
        super().__init__()
        bad = [i for i in multi_scale_layers if not 0 <= i < num_layers]
        if bad:
            raise ValueError(f"multi_scale_layers {list(multi_scale_layers)} must index the {num_layers} layers")
        layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.multi_scale_layers = frozenset(int(i) for i in multi_scale_layers)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, srcs: List[Tensor], pos: List[Tensor], key_padding_masks: List[Tensor]) -> List[Tensor]:
        sizes = [s.shape[1] for s in srcs]
        out = list(srcs)
        for i, layer in enumerate(self.layers):
            if i in self.multi_scale_layers:
                joint = layer(torch.cat(out, 1), torch.cat(pos, 1), torch.cat(key_padding_masks, 1))
                out = list(joint.split(sizes, 1))
            else:
                out = [layer(s, p, m) for s, p, m in zip(out, pos, key_padding_masks)]
        return out
