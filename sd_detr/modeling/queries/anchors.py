"""Learned anchor boxes as queries (DAB-DETR, Liu et al., ICLR 2022, Sec. 4.2), optionally with Anchor
DETR's pattern embeddings (the paper's DAB-DETR*, Appendix A).

Official reference: IDEA-Research/DAB-DETR ``models/DAB_DETR/DABDETR.py:106-112`` (``refpoint_embed``,
``random_refpoints_xy``) and ``models/DAB_DETR/transformer.py:106-107, 126-129`` (``patterns``).
"""
import torch
from torch import nn

from ...layers import inverse_sigmoid
from ..structures import EncoderMemory, Queries


class AnchorQueries(nn.Module):
    """``num_queries`` learned 4-D anchors (cx, cy, w, h), stored before the sigmoid, and content queries.

    Args:
        num_queries: anchors (300 in the paper).
        d_model: content-query width C.
        num_patterns: 0 = zero content queries (DAB-DETR); P > 0 = P learned pattern embeddings, every
            anchor used once with each pattern, so the decoder sees P x num_queries queries, pattern-major
            (official ``transformer.py:128-129``).
        random_xy: initialise the anchor centres uniformly in [0, 1] (official ``--random_refpoints_xy``,
            README "fixxy"); otherwise the centres start from N(0, 1) logits like w and h (nn.Embedding).
        freeze_xy: with ``random_xy``, keep the centres out of the gradient (the README/paper intent:
            "do not update their parameters"). The official line meant to freeze them
            (``DABDETR.py:112``, ``weight.data[:, :2].requires_grad = False``) acts on a temporary
            tensor, so the released code does learn them: ``freeze_xy=False`` reproduces that.
            Weight decay still shrinks frozen centre logits (by x(1 - lr * wd) per step) since they
            share a parameter tensor with w, h.

    forward(mem, targets=None) -> :class:`Queries` with ``content`` [B, Q', C] (zeros, or the patterns)
    and ``anchors`` [B, Q', 4] normalised (cx, cy, w, h), Q' = num_queries * max(1, num_patterns).
    """

    def __init__(self, num_queries: int = 300, d_model: int = 256, num_patterns: int = 0,
                 random_xy: bool = False, freeze_xy: bool = True):
        super().__init__()
        if num_patterns < 0:
            raise ValueError(f"num_patterns must be >= 0, got {num_patterns}")
        self.num_queries = num_queries
        self.num_patterns = num_patterns
        self.d_model = d_model
        self.refpoint_embed = nn.Embedding(num_queries, 4)
        self.patterns = nn.Embedding(num_patterns, d_model) if num_patterns > 0 else None
        self.random_xy = random_xy
        self.freeze_xy = random_xy and freeze_xy
        if random_xy:
            with torch.no_grad():
                xy = self.refpoint_embed.weight[:, :2]
                xy.copy_(inverse_sigmoid(torch.rand_like(xy), eps=1e-3))  # official inverse_sigmoid eps

    def anchor_logits(self) -> torch.Tensor:
        """[num_queries, 4] anchors before the sigmoid (centres detached when frozen)."""
        w = self.refpoint_embed.weight
        if self.freeze_xy:
            w = torch.cat([w[:, :2].detach(), w[:, 2:]], dim=1)
        return w

    def forward(self, mem: EncoderMemory, targets=None) -> Queries:
        bsz = mem.memory.shape[0]
        anchors = self.anchor_logits().sigmoid()  # [Q, 4]
        if self.patterns is None:
            tgt = anchors.new_zeros(self.num_queries, self.d_model)
        else:
            # pattern-major: rows p * Q + q = (pattern p, anchor q)
            tgt = self.patterns.weight[:, None, :].expand(-1, self.num_queries, -1).flatten(0, 1)
            anchors = anchors.repeat(self.num_patterns, 1)
        return Queries(content=tgt.unsqueeze(0).expand(bsz, -1, -1).to(mem.memory.dtype),
                       anchors=anchors.unsqueeze(0).expand(bsz, -1, -1))
