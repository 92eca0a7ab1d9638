from .conditional import (ConditionalCrossAttention, ConditionalSelfAttention, branch_cross_attention,
                          can_batch_cross_attention)
from .core import multi_head_attention, split_heads
from .multihead import MultiheadAttention
from .gaussian import GaussianCrossAttention, feature_grid, gaussian_log_weights
from .scale_selection import ScaleSelectionAttention

__all__ = [
    "ConditionalCrossAttention",
    "ConditionalSelfAttention",
    "GaussianCrossAttention",
    "MultiheadAttention",
    "ScaleSelectionAttention",
    "branch_cross_attention",
    "can_batch_cross_attention",
    "feature_grid",
    "gaussian_log_weights",
    "multi_head_attention",
    "split_heads",
]
