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

from ...layers import (MLP, Linear, box_cxcywh_to_xyxy, branch_layer_norm, branch_linear, branch_mlp, same_layer_norms,
                       same_mlps)
from ..structures import EncoderMemory, Queries
from .mini_detector import feature_valid_sizes, masked_memory


def boxes_to_feature_cells(boxes: Tensor, valid_sizes: Tensor) -> Tensor:
    """[B, Q, 4] normalised cxcywh (of the unpadded image) -> [B, Q, 4] xyxy in feature cells.
    ``valid_sizes``: [B, 2] (valid width, valid height) in cells."""
    return box_cxcywh_to_xyxy(boxes) * valid_sizes.repeat(1, 2).unsqueeze(1)


def _roi_axis_weights(start: Tensor, end: Tensor, bins: int, size: int, sampling_ratio: int):
    """One axis of torchvision's aligned RoIAlign as weights: [R, bins, size] with entry (r, p, i) the
    summed bilinear weight of map row/column i over the samples of bin p of RoI r, and the number of
    samples per bin on this axis [R].

    ``start``/``end``: [R] the RoI's edges in cells, already shifted by -0.5 (``aligned=True``). Sample
    positions, the out-of-map test and the edge clamping follow torchvision's CPU kernel
    (``roi_align_kernel.cpp``: ``roi_align_forward_kernel_impl``, ``bilinear_interpolate_gradient``) in the
    same float32 operations, so the weights are those the kernel uses.
    """
    length = end - start
    bin_size = length / bins
    if sampling_ratio > 0:
        grid = torch.full_like(start, sampling_ratio, dtype=torch.int64)
    else:
        grid = torch.ceil(length / bins).to(torch.int64)
    num = max(int(grid.max()), 1) if grid.numel() else 1
    gridf = grid.clamp(min=1).to(start.dtype)[:, None, None]
    p = torch.arange(bins, device=start.device, dtype=start.dtype)[None, :, None]
    k = torch.arange(num, device=start.device, dtype=start.dtype)[None, None, :]
    # y = roi_start + p * bin_size + (k + .5) * bin_size / grid, evaluated left to right as the kernel
    pos = (start[:, None, None] + p * bin_size[:, None, None]) + ((k + 0.5) * bin_size[:, None, None]) / gridf
    used = k < grid[:, None, None].to(start.dtype)  # adaptive grids differ per RoI
    inside = (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0.0)
    low = pos.to(torch.int64)
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    pos = torch.where(at_edge, low.to(pos.dtype), pos)
    high = torch.where(at_edge, low, low + 1)
    frac = pos - low.to(pos.dtype)
    keep = (used & inside).to(pos.dtype)
    weights = torch.zeros(start.shape[0], bins, size + 1, device=start.device, dtype=start.dtype)
    weights.scatter_add_(2, low, (1 - frac) * keep)
    weights.scatter_add_(2, high.clamp(max=size), frac * keep)  # at the edge high = low and frac = 0
    return weights[..., :size], grid.clamp(min=0)


class _RoIAlignSeparableGrad(torch.autograd.Function):
    """torchvision's aligned ``roi_align`` (its own forward, so the same output) with the input gradient
    computed as two matrix products instead of torchvision's CPU backward.

    Every sample of a bin is a bilinear lookup at (y, x) on a grid of y and x positions, so a bin's
    weights over the map are an outer product ``Ay[r, ph, :] x Ax[r, pw, :] / count`` and the gradient
    of image b is ``sum_r Ay_r^T (G_r Ax_r) / count_r``. torchvision's CPU backward recomputes the
    interpolation for every channel and scatters one sample at a time on one thread (about 120 ms of a
    320x320 batch-4 SD-DETR step); these products cost a few ms. Equal to the kernel's gradient to
    float rounding (tests/modeling/test_task_aware_queries.py).
    """

    @staticmethod
    def forward(ctx, feature_map: Tensor, cells: Tensor, output_size: int, sampling_ratio: int) -> Tensor:
        ctx.save_for_backward(cells)
        ctx.output_size, ctx.sampling_ratio = output_size, sampling_ratio
        ctx.map_shape, ctx.map_dtype = feature_map.shape, feature_map.dtype
        return roi_align(feature_map, list(cells.unbind(0)), output_size=output_size, spatial_scale=1.0,
                         sampling_ratio=sampling_ratio, aligned=True)

    MAX_GRID = 64  # samples per bin side beyond which the weights would be large: torchvision's backward

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (cells,) = ctx.saved_tensors
        bsz, channels, h, w = ctx.map_shape
        s = ctx.output_size
        boxes = cells.reshape(-1, 4).to(ctx.map_dtype) - 0.5  # aligned=True: the kernel's -0.5 offset
        side = (boxes[:, 2:] - boxes[:, :2]) / s
        if not (torch.isfinite(boxes).all() and (ctx.sampling_ratio > 0 or side.max() <= _RoIAlignSeparableGrad.MAX_GRID)):
            rois = torch.cat([torch.arange(bsz, device=cells.device).repeat_interleave(cells.shape[1])[:, None].to(cells),
                              cells.reshape(-1, 4)], dim=1)
            grad = torch.ops.torchvision._roi_align_backward(grad_out.contiguous(), rois, 1.0, s, s, bsz, channels, h, w,
                                                              ctx.sampling_ratio, True)
            return grad, None, None, None
        ay, grid_y = _roi_axis_weights(boxes[:, 1], boxes[:, 3], s, h, ctx.sampling_ratio)  # [R, S, H]
        ax, grid_x = _roi_axis_weights(boxes[:, 0], boxes[:, 2], s, w, ctx.sampling_ratio)  # [R, S, W]
        count = (grid_y * grid_x).clamp(min=1).to(ay.dtype)
        ax = ax / count[:, None, None]
        nq = boxes.shape[0] // bsz
        # [R, C, S(ph), S(pw)] @ [R, 1, S(pw), W] -> [R, C, S(ph), W]
        t = grad_out.to(ax.dtype).matmul(ax.unsqueeze(1))
        # per image: [C * W, Q * S(ph)] @ [Q * S(ph), H] -> [C, W, H]
        t = t.view(bsz, nq, channels, s, w).permute(0, 2, 4, 1, 3).reshape(bsz, channels * w, nq * s)
        grad = t.bmm(ay.view(bsz, nq * s, h)).view(bsz, channels, w, h).transpose(2, 3)
        return grad.to(ctx.map_dtype), None, None, None


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


def can_batch_point_heads(heads) -> bool:
    """Whether :class:`DiscriminativePointHead` heads can run as one :func:`batched_point_heads`."""
    h0 = heads[0]
    return all(type(h) is DiscriminativePointHead and len(h.reduce) == 2 and type(h.reduce[0]) is nn.Conv2d
               and type(h.reduce[1]) is nn.ReLU and h.reduce[0].weight.shape == h0.reduce[0].weight.shape
               and h.reduce[0].bias is not None and h.num_points == h0.num_points for h in heads) and same_mlps(
        [h.mlp for h in heads])


def batched_point_heads(heads, roi_features: Tensor) -> Tensor:
    """G :class:`DiscriminativePointHead` on the same RoI features as one computation: [R, C, S, S] ->
    [G, R, M, 2], slice g equal to ``heads[g](roi_features)`` to float rounding.

    The 1x1 convolutions share their input: one convolution with the heads' weights concatenated
    (G x ``point_channels`` outputs); the MLPs are batched products over the head dimension.
    """
    g, r = len(heads), roi_features.shape[0]
    convs = [h.reduce[0] for h in heads]
    x = F.relu(F.conv2d(roi_features, torch.cat([c.weight for c in convs]), torch.cat([c.bias for c in convs])))
    x = x.view(r, g, -1).transpose(0, 1)  # [G, R, point_channels * S * S] in each head's flatten order
    return branch_mlp(x, [h.mlp for h in heads]).view(g, r, heads[0].num_points, 2).tanh()


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
        # the branches' point heads, sampling and content updates as one computation (issue 24); False:
        # one branch after the other, the tests' reference (sd_detr.modeling.meta_arch.sd_detr.set_batched_branches)
        self.batched_branches = True

    def _can_batch(self) -> bool:
        return (self.batched_branches and len(self.branches) > 1
                and can_batch_point_heads([self.point_heads[b] for b in self.branches])
                and same_layer_norms([self.content_norm[b] for b in self.branches])
                and len({self.content_proj[b].weight.shape for b in self.branches}) == 1
                and len({self.content_proj[b].onednn_linear for b in self.branches}) == 1)

    def roi_features(self, feature_map: Tensor, anchors: Tensor, valid_sizes: Tensor) -> Tensor:
        """[B, C, H, W], [B, Q, 4] -> [B * Q, C, S, S] RoIAlign features of the anchor boxes."""
        cells = boxes_to_feature_cells(anchors, valid_sizes)
        if (feature_map.requires_grad and torch.is_grad_enabled() and feature_map.device.type == "cpu"
                and feature_map.dtype in (torch.float32, torch.float64) and not torch.is_autocast_enabled("cpu")
                and not (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling())):
            # training on CPU: the same forward, a faster input gradient (_RoIAlignSeparableGrad)
            return _RoIAlignSeparableGrad.apply(feature_map, cells.detach(), self.roi_size, self.sampling_ratio)
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
        if self._can_batch():
            return dataclasses.replace(queries, **self._branches_batched(feature_map, rois, anchors, content, valid, out))
        for b in self.branches:
            delta = self.point_heads[b](rois).view(bsz, nq, self.num_points, 2)  # (-1, 1) half sides
            offsets = delta * half
            points = centre + offsets
            sampled = bilinear_sample(feature_map, points, valid).mean(dim=2)  # [B, Q, C]
            out["branch_content"][b] = self.content_norm[b](content[b] + self.content_proj[b](sampled))
            out["offsets"][b] = offsets.mean(dim=2)
            out["points"][b] = points
        return dataclasses.replace(queries, **out)

    def _branches_batched(self, feature_map: Tensor, rois: Tensor, anchors: Tensor, content, valid: Tensor, out):
        """The per-branch part of :meth:`forward` for all branches at once: point heads
        (:func:`batched_point_heads`), one bilinear lookup of all branches' points (the branches folded
        into the queries: [B, G * Q, M, 2]), batched content projections and norms."""
        g, (bsz, nq), m = len(self.branches), anchors.shape[:2], self.num_points
        heads = [self.point_heads[b] for b in self.branches]
        delta = batched_point_heads(heads, rois).view(g, bsz, nq, m, 2)  # (-1, 1) half sides
        offsets = delta * (anchors[..., None, 2:] / 2)
        points = anchors[..., None, :2] + offsets  # [G, B, Q, M, 2]
        folded = points.transpose(0, 1).reshape(bsz, g * nq, m, 2)
        sampled = bilinear_sample(feature_map, folded, valid).mean(dim=2)  # [B, G * Q, C]
        sampled = sampled.view(bsz, g, nq, -1).transpose(0, 1)  # [G, B, Q, C]
        onednn = self.content_proj[self.branches[0]].onednn_linear
        proj = branch_linear(sampled, [self.content_proj[b].weight for b in self.branches],
                             [self.content_proj[b].bias for b in self.branches], onednn)
        updated = branch_layer_norm(torch.stack([content[b] for b in self.branches]) + proj,
                                    [self.content_norm[b] for b in self.branches])
        mean_offsets = offsets.mean(dim=3)
        for i, b in enumerate(self.branches):
            out["branch_content"][b] = updated[i]
            out["offsets"][b] = mean_offsets[i]
            out["points"][b] = points[i]
        return out
