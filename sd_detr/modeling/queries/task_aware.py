"""SD-DETR's task-aware query generation (TAQ, Sec. 3.2.2).

For each anchor box of the mini-detector: RoIAlign 7x7 on the encoder feature map, a small ConvNet and
an MLP predict M discriminative points inside the box for each branch (classification, localisation);
the encoder features at the points (bilinear) are averaged and update that branch's content query; the
mean offset of the points from the anchor centre moves that branch's reference point, whose sine
embedding is the branch's positional embedding in the decoder.

SD-DETR adapts SAM-DETR's semantic-aligned matching (Zhang et al., CVPR 2022); where the paper is
silent this follows the official SAM-DETR code (ZhangGongjie/SAM-DETR @df4e567,
``models/transformer_decoder.py``):
- l. 219-231: RoIAlign 7x7, ``aligned=True``, boxes in feature cells of the unpadded image;
- l. 136-163: the ConvNet is a 1x1 conv to C/4 channels + ReLU, the MLP reads the flattened 7x7 map;
- l. 246, 255-258: a point is ``centre + tanh(offset) * wh / 2``, so it lies inside its box.
SAM-DETR predicts one point per attention head (8); M = 8 is the default here for the same coverage of
the box, averaged as SD-DETR describes.
"""
import dataclasses
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from ...layers import MLP, Linear, box_cxcywh_to_xyxy
from ..structures import EncoderMemory, Queries
from .mini_detector import feature_valid_sizes, masked_memory


def boxes_to_feature_cells(boxes: Tensor, valid_sizes: Tensor) -> Tensor:
    """[B, Q, 4] normalised cxcywh (of the unpadded image) -> [B, Q, 4] xyxy in feature cells.
    ``valid_sizes``: [B, 2] (valid width, valid height) in cells."""
    return box_cxcywh_to_xyxy(boxes) * valid_sizes.repeat(1, 2).unsqueeze(1)


def bilinear_sample(feature_map: Tensor, points: Tensor, valid_sizes: Tensor) -> Tensor:
    """Bilinear lookup of a feature map at normalised points.

    Args:
        feature_map: [B, C, H, W]; cell (i, j) covers [j, j + 1) x [i, i + 1) and its value sits at the
            cell centre (j + 0.5, i + 0.5).
        points: [B, Q, M, 2] (x, y) normalised to the unpadded image.
        valid_sizes: [B, 2] (valid width, valid height) of the unpadded image in cells.
    Returns:
        [B, Q, M, C]; outside the map the features are 0.
    """
    h, w = feature_map.shape[-2:]
    cells = points * valid_sizes[:, None, None, :]
    # the map size as a tensor built from the sizes (not new_tensor of ints) so that a traced/exported
    # graph follows the input size
    map_size = torch.stack([torch.as_tensor(w), torch.as_tensor(h)]).to(cells)
    grid = cells / map_size * 2 - 1  # align_corners=False: -1 is the map's left edge
    return F.grid_sample(feature_map, grid, mode="bilinear", padding_mode="zeros", align_corners=False).permute(0, 2, 3, 1)


class DiscriminativePointHead(nn.Module):
    """RoI features [R, C, S, S] -> M point offsets [R, M, 2] in (-1, 1), in units of half the box
    width/height: conv1x1 (C -> ``point_channels``) + ReLU, flatten, MLP.

    The MLP's last layer starts at weight 0 with the points on a ring of radius ``init_radius``
    (Deformable DETR starts its sampling offsets on rings the same way, detrex
    ``detrex/layers/multi_scale_deform_attn.py:204-217``): points that started equal would get equal
    gradients through their mean and never separate.
    """

    def __init__(self, d_model: int, num_points: int, roi_size: int, point_channels: int, mlp_hidden: int,
                 mlp_layers: int, init_radius: float):
        super().__init__()
        self.num_points = num_points
        self.reduce = nn.Sequential(nn.Conv2d(d_model, point_channels, kernel_size=1), nn.ReLU(inplace=True))
        self.mlp = MLP(point_channels * roi_size * roi_size, mlp_hidden, 2 * num_points, mlp_layers)
        angles = torch.arange(num_points, dtype=torch.float32) * (2 * math.pi / num_points)
        ring = init_radius * torch.stack([angles.cos(), angles.sin()], dim=-1)
        with torch.no_grad():
            self.mlp.layers[-1].weight.zero_()
            self.mlp.layers[-1].bias.copy_(torch.atanh(ring).flatten())

    def forward(self, roi_features: Tensor) -> Tensor:
        x = self.reduce(roi_features).flatten(1)
        return self.mlp(x).view(-1, self.num_points, 2).tanh()


class TaskAwareQueryGenerator(nn.Module):
    """Task-aware content queries and reference offsets of each decoder branch.

    Args:
        d_model: C.
        branches: branch names, e.g. ("cls", "loc"); each gets its own point head and content update.
        num_points: M discriminative points per box and branch.
        roi_size: RoIAlign output size (paper: 7).
        point_channels: channels of the 1x1 conv (None: C / 4, as SAM-DETR).
        mlp_hidden, mlp_layers: the point MLP (None: hidden C).
        init_radius: initial ring of points, in half box sides.
        sampling_ratio: RoIAlign samples per bin (-1: adaptive, torchvision's default, as SAM-DETR).

    forward(mem, queries) -> the :class:`Queries` with, per branch, ``branch_content`` replaced by
    LayerNorm(content + Linear(mean point feature)), ``offsets`` [B, Q, 2] the mean point offset from
    the anchor centre (normalised image units) and ``points`` [B, Q, M, 2] the points (normalised (x, y)).
    Reads ``queries.anchors`` [B, Q, 4] normalised cxcywh and ``queries.branch_content``.
    """

    def __init__(self, d_model: int = 256, branches: Sequence[str] = ("cls", "loc"), num_points: int = 8,
                 roi_size: int = 7, point_channels: int = None, mlp_hidden: int = None, mlp_layers: int = 3,
                 init_radius: float = 0.5, sampling_ratio: int = -1):
        super().__init__()
        self.branches = tuple(branches)
        self.num_points = num_points
        self.roi_size = roi_size
        self.sampling_ratio = sampling_ratio
        point_channels = point_channels or d_model // 4
        mlp_hidden = mlp_hidden or d_model
        self.point_heads = nn.ModuleDict({
            b: DiscriminativePointHead(d_model, num_points, roi_size, point_channels, mlp_hidden, mlp_layers, init_radius)
            for b in self.branches
        })
        self.content_proj = nn.ModuleDict({b: Linear(d_model, d_model) for b in self.branches})
        self.content_norm = nn.ModuleDict({b: nn.LayerNorm(d_model) for b in self.branches})

    def roi_features(self, feature_map: Tensor, anchors: Tensor, valid_sizes: Tensor) -> Tensor:
        """[B, C, H, W], [B, Q, 4] -> [B * Q, C, S, S] RoIAlign features of the anchor boxes."""
        cells = boxes_to_feature_cells(anchors, valid_sizes)
        return roi_align(feature_map, list(cells.unbind(0)), output_size=self.roi_size, spatial_scale=1.0,
                         sampling_ratio=self.sampling_ratio, aligned=True)

    def forward(self, mem: EncoderMemory, queries: Queries) -> Queries:
        anchors, content = queries.require(type(self).__name__, "anchors", "branch_content")
        bsz, nq = anchors.shape[:2]
        feature_map = mem.as_map(masked_memory(mem))
        valid = feature_valid_sizes(mem).to(feature_map.dtype)
        rois = self.roi_features(feature_map, anchors, valid)
        centre, half = anchors[..., None, :2], anchors[..., None, 2:] / 2
        out = {"branch_content": dict(content), "offsets": {}, "points": {}}
        for b in self.branches:
            delta = self.point_heads[b](rois).view(bsz, nq, self.num_points, 2)  # (-1, 1) half sides
            offsets = delta * half
            points = centre + offsets
            sampled = bilinear_sample(feature_map, points, valid).mean(dim=2)  # [B, Q, C]
            out["branch_content"][b] = self.content_norm[b](content[b] + self.content_proj[b](sampled))
            out["offsets"][b] = offsets.mean(dim=2)
            out["points"][b] = points
        return dataclasses.replace(queries, **out)
