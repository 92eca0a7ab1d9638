"""SD-DETR's anchor boxes R_box: a dense mini-detector on the encoder memory and the top-N selection
that turns it into decoder queries (SD-DETR Sec. 3.2, "we use the mini-detector module proposed in
[DESTR, Deformable DETR] to initialize those anchor boxes").

Official references (helq2612/destr @13c1b95 and IDEA-Research/detrex):
- DESTR ``models/destr.py:66-128, 174-201``: classification and regression towers of 4 conv3x3 + GroupNorm(32)
  + ReLU on the encoder memory, a class and a box prediction per location;
- DESTR ``models/destr.py:186-189``: zero padded locations of the memory first (as detrex
  ``projects/deformable_detr/modeling/deformable_transformer.py:303``);
- DESTR ``models/destr.py:209-234, 277-308``: the top-N locations by maximum class score among the
  non-padded ones give the initial query features (the towers' outputs) and the reference, detached;
- DESTR ``models/destr.py:484-487``: the mini-detector's loss is an auxiliary output weighted 0.1;
- two-stage Deformable DETR (detrex ``deformable_transformer.py:262-307, 432-443``): each location's
  box is predicted relative to a prior box centred on the cell, of size 0.05 at stride 8 doubling with
  the stride, by its own heads; the selected boxes are detached.
"""
import math
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...layers import MLP, Linear, inverse_sigmoid
from ..structures import EncoderMemory, Queries


def feature_valid_sizes(mem: EncoderMemory) -> Tensor:
    """[B, 2] (valid width, valid height) of each image on the feature map, in feature cells (the
    unpadded part; as detrex ``deformable_transformer.py:271-273``)."""
    h, w = mem.spatial_shape
    valid = ~mem.mask.view(-1, h, w)
    return torch.stack([valid[:, 0, :].sum(1), valid[:, :, 0].sum(1)], dim=-1).to(mem.memory.dtype)


def masked_memory(mem: EncoderMemory) -> Tensor:
    """[B, N, C] encoder memory with padded locations set to 0 (DESTR ``destr.py:186-189``)."""
    return mem.memory.masked_fill(mem.mask.unsqueeze(-1), 0.0)


def conv_tower(channels: int, num_convs: int, norm_groups: int) -> nn.Sequential:
    """``num_convs`` x (conv3x3 without bias, GroupNorm, ReLU): mmcv's ConvModule as DESTR uses it
    (``destr.py:79-94``: bias='auto' drops the bias before a norm; ReLU is ConvModule's default)."""
    layers = []
    for _ in range(num_convs):
        conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # mmcv ConvModule.init_weights
        layers += [conv, nn.GroupNorm(norm_groups, channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _tower_layers(tower: nn.Sequential):
    """[(conv, norm)] of a :func:`conv_tower`, or None if it is not one (then it runs as it is)."""
    mods = list(tower)
    if len(mods) % 3 or not mods:
        return None
    out = []
    for conv, norm, act in zip(mods[0::3], mods[1::3], mods[2::3]):
        if not (type(conv) is nn.Conv2d and type(norm) is nn.GroupNorm and type(act) is nn.ReLU and conv.bias is None
                and conv.groups == 1 and conv.kernel_size == (3, 3) and conv.padding == (1, 1)
                and conv.stride == (1, 1) and conv.dilation == (1, 1) and norm.affine):
            return None
        out.append((conv, norm))
    return out


def can_batch_towers(towers) -> bool:
    """Whether :func:`conv_tower` towers can run as one :func:`batched_towers` (same depth, widths,
    GroupNorm groups and eps)."""
    layers = [_tower_layers(t) for t in towers]
    if any(ls is None for ls in layers) or len({len(ls) for ls in layers}) != 1:
        return False
    return all(len({(c.weight.shape, n.num_groups, n.eps) for c, n in step}) == 1 for step in zip(*layers))


def batched_towers(towers, x: Tensor) -> Tensor:
    """G :func:`conv_tower` towers on the same input as one stack of convolutions: x [B, C, H, W] ->
    [B, G * C, H, W], channels [g C, (g + 1) C) tower g's output.

    The first convolution is one with the towers' weights concatenated (G C output channels, shared
    input); the later ones are grouped (``groups=G``: group g reads and writes tower g's channels).
    GroupNorm over the G C channels with G x the groups: a group is ``C / groups`` consecutive
    channels, so each group lies inside one tower and its statistics are that tower's GroupNorm's; the
    affine parameters are the towers' concatenated. The towers keep their modules and parameters.
    """
    g = len(towers)
    for step, pairs in enumerate(zip(*[_tower_layers(t) for t in towers])):
        convs, norms = zip(*pairs)
        x = F.conv2d(x, torch.cat([c.weight for c in convs]), None, padding=1, groups=1 if step == 0 else g)
        x = F.group_norm(x, g * norms[0].num_groups, torch.cat([n.weight for n in norms]),
                         torch.cat([n.bias for n in norms]), norms[0].eps)
        x = F.relu(x)
    return x


@dataclass
class DenseDetections:
    """The mini-detector's prediction at every location of the feature map (N = H * W).

    Attributes:
        logits: [B, N, K] class logits; boxes: [B, N, 4] normalised cxcywh;
        features: {"cls": [B, N, C] classification-tower output, "loc": [B, N, C] box-tower output,
            "memory": [B, N, C] the (zero-padded) encoder memory}.
    """

    logits: Tensor
    boxes: Tensor
    features: Dict[str, Tensor] = field(default_factory=dict)


class MiniDetector(nn.Module):
    """A dense detection head on the encoder memory.

    Per location: ``logits = class_head(cls_tower(memory))`` and
    ``box = sigmoid(box_head(box_tower(memory)) + inverse_sigmoid(prior))``, with ``prior`` the cell's
    centre in the unpadded image and a width/height of ``anchor_size * stride / anchor_stride``
    (normalised).

    Args:
        d_model: channels C of the memory and the towers.
        num_classes: K.
        num_convs: conv layers per tower (DESTR: 4).
        norm_groups: GroupNorm groups (DESTR: 32).
        box_head_layers: layers of the box MLP (as the decoder's box head).
        anchor_size, anchor_stride: prior box side ``anchor_size`` (normalised) at stride
            ``anchor_stride``, proportional to the stride (two-stage Deformable DETR: 0.05 at stride 8).
        prior_prob: initial class probability of the focal-loss prior.
        reference_eps: eps of ``inverse_sigmoid`` of the prior.
    """

    def __init__(self, d_model: int = 256, num_classes: int = 80, num_convs: int = 4, norm_groups: int = 32,
                 box_head_layers: int = 3, anchor_size: float = 0.05, anchor_stride: int = 8,
                 prior_prob: float = 0.01, reference_eps: float = 1e-5):
        super().__init__()
        self.cls_tower = conv_tower(d_model, num_convs, norm_groups)
        self.box_tower = conv_tower(d_model, num_convs, norm_groups)
        self.class_head = Linear(d_model, num_classes)
        self.box_head = MLP(d_model, d_model, 4, box_head_layers)
        self.anchor_size = anchor_size
        self.anchor_stride = anchor_stride
        self.reference_eps = reference_eps
        # both towers as one stack of convolutions (:func:`batched_towers`); False: one after the other,
        # the reference of the tests (sd_detr.modeling.meta_arch.sd_detr.set_batched_branches)
        self.batched_branches = True
        nn.init.constant_(self.class_head.bias, -math.log((1 - prior_prob) / prior_prob))
        nn.init.zeros_(self.box_head.layers[-1].weight)
        nn.init.zeros_(self.box_head.layers[-1].bias)

    def priors(self, mem: EncoderMemory) -> Tensor:
        """[B, N, 4] normalised cxcywh prior box of each location (cells of padding lie beyond 1)."""
        h, w = mem.spatial_shape
        device = mem.memory.device
        ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                                torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
        grid = torch.stack([xs, ys], dim=-1).view(1, h * w, 2) + 0.5
        centre = grid / feature_valid_sizes(mem).float().clamp(min=1).unsqueeze(1)
        size = self.anchor_size * mem.stride / self.anchor_stride
        return torch.cat([centre, torch.full_like(centre, size)], dim=-1)

    def forward(self, mem: EncoderMemory) -> DenseDetections:
        memory = masked_memory(mem)
        x = mem.as_map(memory)
        towers = (self.cls_tower, self.box_tower)
        if self.batched_branches and can_batch_towers(towers):
            cls_feat, loc_feat = batched_towers(towers, x).flatten(2).transpose(1, 2).chunk(2, dim=-1)
        else:
            cls_feat = self.cls_tower(x).flatten(2).transpose(1, 2)
            loc_feat = self.box_tower(x).flatten(2).transpose(1, 2)
        logits = self.class_head(cls_feat)
        prior = inverse_sigmoid(self.priors(mem), self.reference_eps).to(loc_feat.dtype)
        boxes = (self.box_head(loc_feat) + prior).sigmoid()
        return DenseDetections(logits, boxes, {"cls": cls_feat, "loc": loc_feat, "memory": memory})


class MiniDetectorQueries(nn.Module):
    """Query initialiser of SD-DETR: mini-detector -> top-N anchors and per-branch content queries,
    optionally refined by task-aware query generation.

    The N = ``num_queries`` locations of largest maximum class score among the non-padded ones give
    the anchor boxes R_box and the initial content query of each decoder branch, all detached
    (DESTR ``destr.py:227-232``): branch "cls" starts from the classification tower's feature, branch
    "loc" from the box tower's, any other branch name (the one branch of a shared decoder) from the
    encoder memory at the location. If fewer non-padded locations than ``num_queries`` exist in an
    image of the batch, the batch gets that many queries (DESTR ``destr.py:219-225``).

    Args:
        mini_detector: :class:`MiniDetector`.
        num_queries: N.
        branches: the decoder's branch names, in its order (first: classification head, last: box head).
        task_aware: optional :class:`~sd_detr.modeling.queries.TaskAwareQueryGenerator`.
        name: key of the mini-detector's predictions in ``"extra_outputs"`` (its loss weight is the
            criterion's ``extra_stage_weights[name]``).

    forward(mem, targets=None) -> :class:`Queries` with ``anchors`` [B, N, 4] normalised cxcywh,
    ``branch_content`` {branch: [B, N, C]}, ``offsets`` {branch: [B, N, 2]} and ``points`` {branch:
    [B, N, M, 2]} (task-aware, only with ``task_aware``), ``extra["index"]`` [B, N] the selected
    locations, ``extra_outputs`` {name: {"pred_logits": [B, H*W, K], "pred_boxes": [B, H*W, 4]}}.
    """

    CONTENT_SOURCES = {"cls": "cls", "loc": "loc"}

    def __init__(self, mini_detector: MiniDetector, num_queries: int = 300, branches: Sequence[str] = ("cls", "loc"),
                 task_aware: Optional[nn.Module] = None, name: str = "mini_detector"):
        super().__init__()
        self.mini_detector = mini_detector
        self.num_queries = num_queries
        self.branches = tuple(branches)
        self.task_aware = task_aware
        self.name = name
        if task_aware is not None and tuple(task_aware.branches) != self.branches:
            raise ValueError(f"MiniDetectorQueries: task_aware branches {tuple(task_aware.branches)} differ from "
                             f"the query branches {self.branches}")

    def select(self, logits: Tensor, mask: Tensor) -> Tensor:
        """[B, N, K] logits, [B, N] padding mask -> [B, k] indices of the top-k non-padded locations by
        maximum class score, k = min(num_queries, fewest non-padded locations of an image)."""
        score = logits.detach().max(dim=-1).values.masked_fill(mask, float("-inf"))
        k = min(self.num_queries, int((~mask).sum(1).min()))
        return score.topk(max(k, 1), dim=1).indices

    def forward(self, mem: EncoderMemory, targets=None) -> Queries:
        dense = self.mini_detector(mem)
        index = self.select(dense.logits, mem.mask)

        def gather(x: Tensor) -> Tensor:
            return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1])).detach()

        anchors = gather(dense.boxes)
        content = {b: gather(dense.features[self.CONTENT_SOURCES.get(b, "memory")]) for b in self.branches}
        queries = Queries(anchors=anchors, branch_content=content, extra={"index": index},
                          extra_outputs={self.name: {"pred_logits": dense.logits, "pred_boxes": dense.boxes}})
        if self.task_aware is not None:
            queries = self.task_aware(mem, queries)
        return queries
