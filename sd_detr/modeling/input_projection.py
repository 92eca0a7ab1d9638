"""Backbone features -> the transformer's feature levels: the multi-level input projection.

A single-level detector projects one backbone output with a 1x1 convolution (``DETRDetector``'s own
``input_proj``). :class:`MultiLevelProjection` is the part a detector takes instead (``DETRDetector(
in_features=[...], num_extra_levels=...)``) for several levels without an FPN, as SMCA-DETR's paper design
(Sec. 3.3): a 1x1 convolution of each of ``in_features`` and, for each extra level, a 3x3 stride-2
convolution, the first on the last backbone feature (the released code makes its stride-64 map this way:
Multi_scale_SMCA.zip ``models/detr.py:105,141``), the next on the previous extra level.
"""
from typing import Dict, List, Mapping, Sequence

from detectron2.layers import ShapeSpec
from torch import Tensor, nn


class MultiLevelProjection(nn.ModuleList):
    """The convolutions of every level, in order (state dict ``input_proj.<level>.*``).

    Args:
        input_shapes: the backbone's ``output_shape()`` (channels and stride of each output).
        in_features: backbone outputs to project, finest first (e.g. ``["res4", "res5"]``).
        out_channels: the transformer width C.
        num_extra_levels: stride-2 levels added on top of the last of ``in_features``.

    ``forward(features)``: the backbone's dict of [B, C_in, H, W] maps -> a list of [B, C, H_l, W_l], one
    per level; ``strides``: each level's stride in input pixels (e.g. 16, 32, 64).
    """

    def __init__(self, input_shapes: Mapping[str, ShapeSpec], in_features: Sequence[str], out_channels: int,
                 num_extra_levels: int = 0):
        missing = [f for f in in_features if f not in input_shapes]
        if missing:
            raise KeyError(f"MultiLevelProjection: in_features {missing} are not backbone outputs; "
                           f"available: {sorted(input_shapes)}")
        if not in_features:
            raise ValueError("MultiLevelProjection: in_features is empty")
        projs = [nn.Conv2d(input_shapes[f].channels, out_channels, kernel_size=1) for f in in_features]
        strides = [input_shapes[f].stride for f in in_features]
        channels = input_shapes[in_features[-1]].channels
        for _ in range(num_extra_levels):
            projs.append(nn.Conv2d(channels, out_channels, kernel_size=3, stride=2, padding=1))
            strides.append(strides[-1] * 2)
            channels = out_channels
        super().__init__(projs)
        self.in_features: List[str] = list(in_features)
        self.strides: List[int] = strides

    def forward(self, features: Dict[str, Tensor]) -> List[Tensor]:
        convs = list(self)  # slicing a ModuleList subclass would construct a new one
        n_in = len(self.in_features)
        maps = [proj(features[f]) for proj, f in zip(convs[:n_in], self.in_features)]
        x = features[self.in_features[-1]]
        for conv in convs[n_in:]:
            x = conv(x)
            maps.append(x)
        return maps
