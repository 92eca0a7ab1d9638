"""Learned object queries (DETR, Conditional DETR, SMCA-DETR)."""
import torch
from torch import nn

from ..decoder.base import EncoderMemory


class LearnedQueries(nn.Module):
    """``num_queries`` learned positional queries and zero content queries.

    forward(mem) -> {"tgt": [B, Q, C] zeros, "query_pos": [B, Q, C] learned embeddings}.
    """

    def __init__(self, num_queries: int = 300, d_model: int = 256):
        super().__init__()
        self.num_queries = num_queries
        self.query_embed = nn.Embedding(num_queries, d_model)

    def forward(self, mem: EncoderMemory) -> dict:
        bsz = mem.memory.shape[0]
        query_pos = self.query_embed.weight.unsqueeze(0).expand(bsz, -1, -1)
        return {"tgt": torch.zeros_like(query_pos), "query_pos": query_pos}
