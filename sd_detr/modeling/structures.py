"""The structures the parts of a detector hand to each other.

``backbone + input projection + encoder -> EncoderMemory -> query initialiser -> Queries -> decoder ->
DecoderOutput -> shared heads -> criterion (assigner -> Assignment per stage)``.

Units: boxes are normalised (cx, cy, w, h) in [0, 1] of the unpadded input image unless a docstring
says otherwise; B images, Q queries, C the detector's width, N = H * W encoder locations.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
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
class Queries:
    """The decoder's queries, as a query initialiser returns them (``query_init(memory, targets=None)``).

    A decoder reads the fields it needs and raises if one is missing; a query initialiser fills the ones
    it makes. Every tensor is [B, Q, ...] with one Q for all fields.

    Attributes:
        content: [B, Q, C] content queries of a one-branch decoder (zeros for Conditional DETR's and
            SMCA's learned queries, zeros or pattern embeddings for DAB-DETR).
        pos: [B, Q, C] learned positional queries (Conditional DETR's / SMCA's object queries o_q).
        anchors: [B, Q, 4] normalised cxcywh reference boxes (DAB-DETR's anchors, SD-DETR's
            mini-detector anchors R_box).
        branch_content: {branch: [B, Q, C]} content queries of a multi-branch decoder, in no particular
            order (the decoder names its branches).
        offsets: {branch: [B, Q, 2]} reference-point offsets of a branch from the anchor centre,
            normalised image units (SD-DETR's task-aware queries); a branch without one uses the centre.
        points: {branch: [B, Q, M, 2]} the normalised (x, y) points the offsets are the mean of (tools).
        self_attn_mask: [Q, Q] bool, True where query i must not attend to query j (e.g. between the
            groups of a denoising generator); None: every query sees every query. Every decoder's
            self-attention applies it.
        extra_outputs: {name: {"pred_logits": [B, N', K], "pred_boxes": [B, N', 4]}} predictions of the
            initialiser itself that the criterion supervises (SD-DETR's mini-detector, weight
            ``extra_stage_weights[name]``).
        known: queries whose targets the initialiser knows (:class:`KnownQueries`, e.g. DN-DETR's noised
            ground truth): the last ``Q - known.num_matching`` queries. The detector keeps them out of
            the matching and the inference and the criterion trains them with ``known.assignment``.
        extra: anything else, for tools and tests (e.g. "index": [B, Q] the locations a mini-detector
            selected).
    """

    content: Optional[Tensor] = None
    pos: Optional[Tensor] = None
    anchors: Optional[Tensor] = None
    branch_content: Dict[str, Tensor] = field(default_factory=dict)
    offsets: Dict[str, Tensor] = field(default_factory=dict)
    points: Dict[str, Tensor] = field(default_factory=dict)
    self_attn_mask: Optional[Tensor] = None
    extra_outputs: Dict[str, Dict[str, Tensor]] = field(default_factory=dict)
    known: Optional["KnownQueries"] = None
    extra: Dict[str, object] = field(default_factory=dict)

    def require(self, owner: str, *names: str):
        """The fields ``names``, in that order; a clear error naming ``owner`` and the field if one is
        None or empty (a decoder combined with a query initialiser that does not make its queries)."""
        def made(value) -> bool:
            return value is not None and not (isinstance(value, dict) and not value)

        values = []
        for n in names:
            v = getattr(self, n)
            if not made(v):
                made_fields = [f for f in ("content", "pos", "anchors", "branch_content", "offsets") if made(getattr(self, f))]
                raise ValueError(f"{owner} needs the queries' {n!r}, which the query initialiser did not make "
                                 f"(it made: {made_fields})")
            values.append(v)
        return values[0] if len(values) == 1 else tuple(values)


@dataclass
class KnownQueries:
    """Queries with a known assignment, appended after the ones the criterion matches.

    Attributes:
        num_matching: Q_m, the number of leading queries that are matched (and kept at inference); the
            known ones are queries Q_m .. Q-1.
        assignment: their :class:`Assignment`, with query indices counted from the first known query
            (0 .. Q - Q_m - 1); known queries without a row are negatives.
        name: suffix of their losses (``loss_class_{name}``, ``loss_bbox_{name}_{i}`` for layer i ...).
    """

    num_matching: int
    assignment: "Assignment"
    name: str = "dn"


def self_attn_bias(mask: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    """[Q, Q] bool mask (True: blocked) -> [Q, Q] additive bias (0 / -inf) for the attention logits, or None."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise TypeError(f"Queries.self_attn_mask must be bool (True = blocked), got {mask.dtype}")
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))


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


@dataclass
class Assignment:
    """Which ground truth supervises which prediction, for one stage.

    Classification positives (one row per (query, class) pair; a query may have several rows, a
    multi-hot bag):
        cls_batch, cls_query, cls_label: [P] long; cls_box: [P, 4] normalised cxcywh box of the ground
        truth that contributed the label (used by IoU-aware targets such as the task-alignment loss).
    Localisation positives (one row per supervised box):
        box_batch, box_query: [R] long; box_target: [R, 4] normalised cxcywh.
    Every query without a classification row is a negative for all classes.
    """

    cls_batch: Tensor
    cls_query: Tensor
    cls_label: Tensor
    cls_box: Tensor
    box_batch: Tensor
    box_query: Tensor
    box_target: Tensor

    @property
    def num_cls_positives(self) -> int:
        return int(self.cls_batch.numel())

    @classmethod
    def from_matches(cls, matches: Sequence[Tuple[Tensor, Tensor]], targets: List[dict]) -> "Assignment":
        """One-to-one (or k-to-one) assignment from per-image (query_idx, gt_idx) pairs: the matched query
        is a classification and a localisation positive of its ground truth."""
        device = targets[0]["boxes"].device if targets else torch.device("cpu")
        batch = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(matches)]).to(device)
        query = torch.cat([q for q, _ in matches]).to(device)
        labels = torch.cat([t["labels"][g.to(device)] for t, (_, g) in zip(targets, matches)])
        boxes = torch.cat([t["boxes"][g.to(device)] for t, (_, g) in zip(targets, matches)]).reshape(-1, 4)
        return cls(batch, query, labels, boxes, batch, query, boxes)


__all__ = ["EncoderMemory", "Queries", "KnownQueries", "DecoderOutput", "Assignment", "self_attn_bias"]
