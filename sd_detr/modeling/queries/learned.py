"""Learned object queries (DETR, Conditional DETR, SMCA-DETR)."""
import torch
from torch import nn

from ..structures import EncoderMemory, Queries


class LearnedQueries(nn.Module):
    """``num_queries`` learned positional queries and zero content queries.

    forward(mem, targets=None) -> :class:`Queries` with ``content`` [B, Q, C] zeros and ``pos`` [B, Q, C]
    the learned embeddings.
    """

    def __init__(self, num_queries: int = 300, d_model: int = 256):
        super().__init__()
        self.num_queries = num_queries
        self.query_embed = nn.Embedding(num_queries, d_model)

    def forward(self, mem: EncoderMemory, targets=None) -> Queries:
        bsz = mem.memory.shape[0]
        query_pos = self.query_embed.weight.unsqueeze(0).expand(bsz, -1, -1)
        return Queries(content=torch.zeros_like(query_pos), pos=query_pos)
