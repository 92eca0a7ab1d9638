"""What every decoder returns, and what the encoder hands to query initialisers and decoders."""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from torch import Tensor


@dataclass
class EncoderMemory:
    """The encoded image, flattened.

    Attributes:
        memory: [B, N, C] encoder output (N = H * W).
        pos: [B, N, C] image position embedding.
        mask: [B, N] bool, True on padded locations.
        spatial_shape: (H, W) of the feature map.
        stride: feature stride in input pixels.
        image_sizes: [B, 2] (h, w) of each unpadded input image in pixels.
    """

    memory: Tensor
    pos: Tensor
    mask: Tensor
    spatial_shape: Tuple[int, int]
    stride: int
    image_sizes: Tensor
    extra: Dict[str, object] = field(default_factory=dict)

    def as_map(self, x: Optional[Tensor] = None) -> Tensor:
        """[B, N, C] (default: ``memory``) -> [B, C, H, W]."""
        x = self.memory if x is None else x
        h, w = self.spatial_shape
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


@dataclass
class DecoderOutput:
    """Per-layer decoder outputs; the detector's shared heads turn them into predictions.

    Attributes:
        hidden: [L, B, Q, C] features read by the classification head (after the final norm).
        references: [L, B, Q, R] normalised reference of each layer's boxes, R = 2 (cx, cy) or
            4 (cx, cy, w, h): box = sigmoid(box_head(box_hidden) + inverse_sigmoid(reference) padded with 0).
        box_hidden: [L, B, Q, C] features read by the box head; None means ``hidden``.
        reference_logits: optional [L, B, Q, R] pre-sigmoid references used instead of
            ``inverse_sigmoid(references)`` (SMCA adds its raw centre logits).
        extra: anything else a detector wants to pass to the criterion or to tools.
    """

    hidden: Tensor
    references: Tensor
    box_hidden: Optional[Tensor] = None
    reference_logits: Optional[Tensor] = None
    extra: Dict[str, object] = field(default_factory=dict)


__all__ = ["EncoderMemory", "DecoderOutput", "List"]
