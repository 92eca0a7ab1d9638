"""Sinusoidal position encodings: of image feature maps (DETR's 2-D sine embedding) and of
normalised query coordinates (Conditional DETR's spatial query, DAB-DETR's anchor embedding)."""
import math
from typing import Optional

import torch
from torch import Tensor, nn


def _interleave_sin_cos(x: Tensor) -> Tensor:
    """[..., F] -> [..., F]: sin of even and cos of odd frequencies, interleaved (sin0, cos1, sin2, ...)."""
    return torch.stack((x[..., 0::2].sin(), x[..., 1::2].cos()), dim=-1).flatten(-2)


def _frequencies(num_feats: int, temperature: float, device) -> Tensor:
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    return temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)


def sine_embedding(
    coords: Tensor, num_feats: int = 128, temperature: float = 10000.0, scale: float = 2 * math.pi
) -> Tensor:
    """Sine embedding of normalised coordinates.

    Args:
        coords: [..., 2] (x, y) or [..., 4] (x, y, w, h), in [0, 1].
        num_feats: frequencies per coordinate.
    Returns:
        [..., num_feats * D] in the official channel order: (y, x) for D = 2, (y, x, w, h) for D = 4
        (Conditional DETR ``models/transformer.py:33``; DAB-DETR ``models/DAB_DETR/transformer.py:38``).
    """
    if coords.shape[-1] not in (2, 4):
        raise ValueError(f"sine_embedding expects 2 or 4 coordinates, got shape {tuple(coords.shape)}")
    dim_t = _frequencies(num_feats, temperature, coords.device)
    emb = _interleave_sin_cos(coords.float()[..., None] * scale / dim_t)  # [..., D, F]
    order = [1, 0] if coords.shape[-1] == 2 else [1, 0, 2, 3]
    return emb[..., order, :].flatten(-2)


class PositionEmbeddingSine(nn.Module):
    """DETR's 2-D sine position embedding of a feature map, computed from its padding mask.

    Positions are the cumulative sums of the not-padded mask (1-based), normalised by the last value
    (+1e-6) and multiplied by ``scale``; channels are (y, x), each with sin/cos interleaved.

    Args:
        d_model: output channels, the detector's width C (C / 2 per axis; even).
        temperature: frequency base; DAB-DETR uses separate values for x and y (``temperature_w/h``).
    """

    def __init__(
        self,
        d_model: int = 256,
        temperature: float = 10000.0,
        normalize: bool = True,
        scale: Optional[float] = None,
        temperature_h: Optional[float] = None,
        temperature_w: Optional[float] = None,
        eps: float = 1e-6,
    ):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("PositionEmbeddingSine: `scale` requires normalize=True")
        if d_model <= 0 or d_model % 2:
            raise ValueError(f"PositionEmbeddingSine: d_model must be a positive even width, got {d_model}")
        self.d_model = d_model
        self.num_pos_feats = d_model // 2  # channels per axis
        self.temperature_h = temperature if temperature_h is None else temperature_h
        self.temperature_w = temperature if temperature_w is None else temperature_w
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        self.eps = eps

    def forward(self, mask: Tensor) -> Tensor:
        """mask: [B, H, W] bool, True on padding -> [B, d_model, H, W] float32."""
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            y_embed = y_embed / (y_embed[:, -1:, :] + self.eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + self.eps) * self.scale
        pos_x = _interleave_sin_cos(x_embed[..., None] / _frequencies(self.num_pos_feats, self.temperature_w, mask.device))
        pos_y = _interleave_sin_cos(y_embed[..., None] / _frequencies(self.num_pos_feats, self.temperature_h, mask.device))
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)
