from .conditional import ConditionalCrossAttention, ConditionalSelfAttention
from .core import multi_head_attention, split_heads

__all__ = [
    "ConditionalCrossAttention",
    "ConditionalSelfAttention",
    "multi_head_attention",
    "split_heads",
]
