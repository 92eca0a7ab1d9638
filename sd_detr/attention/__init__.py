from .conditional import ConditionalCrossAttention, ConditionalSelfAttention
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
    "feature_grid",
    "gaussian_log_weights",
    "multi_head_attention",
    "split_heads",
]
