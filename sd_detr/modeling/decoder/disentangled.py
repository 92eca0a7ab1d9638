"""SD-DETR's disentangled feature learning (DFL, Sec. 3.2.1, Eq. 3) and the decoders of its ablations.

One layer class covers the three decoders of the paper's Tables 2 and 3, by two choices and a width:
- ``branches``: one query branch read by both heads (the baseline, Conditional DETR's decoder with
  mini-detector queries) or two, "cls" and "loc", read by the class and the box head;
- ``shared_self_attn``: with two branches, one self-attention over the channel concatenation of the
  two queries (2C channels per query; SD-DETR), or one per branch (two complete decoders, Table 3's
  "split decoder");
- ``self_attn_width`` (only changes the shared self-attention over two branches): ``"model"`` (default)
  runs its attention at C channels, 8 heads of C/8 (projections 2C -> C, output C -> 2C), the paper's
  "We keep the number of multi-head to 8 and the attention channel to 256" (Sec. 4.1); ``"full"`` runs it
  at 2C, 8 heads of 2C/8, as DESTR (``models/transformer.py:348-354``: ``MultiheadAttention(d_model *
  2, nhead)``). One-branch and per-branch self-attentions are C wide either way.
Each branch has its own conditional cross-attention (:class:`~sd_detr.attention.ConditionalCrossAttention`:
content query concatenated with the spatial query from its own reference, keys with the image
position embedding), FFN, norms and residuals.

Where the paper is silent this follows DESTR (helq2612/destr @13c1b95, ``models/transformer.py``),
the split-cross-attention detector SD-DETR builds on:
- l. 229-241: the references are the mini-detector's (not re-predicted from the queries); the
  spatial query is the sine embedding of the reference centre times ``query_scale(output)``, and
  ``pos_transformation`` is applied from the first layer on there, here from the second as in
  Conditional DETR (its first layer has no decoder output to scale with);
- l. 464-493: the shared self-attention reads and writes the 2C concatenation, with one LayerNorm(2C)
  after the residual (in both widths), then l. 545-555 split it into the two C-channel halves;
- l. 509-520: the cross-attention does not add the object query to the content query in the first
  layer (Conditional DETR's ``ca_qpos_proj``), since the queries come from the mini-detector;
- the self-attention's positional embedding is the sine embedding of the reference
  (``destr.py:233``), here per branch (its own task-aware reference) and concatenated like the content.
Box refinement between layers (optional) is two-stage Deformable DETR's (detrex
``projects/deformable_detr/modeling/deformable_transformer.py:187-197``): the next layer's anchors are
this layer's predicted boxes, detached.
"""
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn

from ...attention import (ConditionalCrossAttention, ConditionalSelfAttention, branch_cross_attention,
                          can_batch_cross_attention)
from ...layers import (FFN, MLP, branch_ffn, branch_layer_norm, branch_mlp, inverse_sigmoid, same_ffns,
                       same_layer_norms, same_mlps, sine_embedding)
from ..structures import DecoderOutput, EncoderMemory, Queries, self_attn_bias

# width of the attention inside a self-attention: C ("model") or that of its input ("full": 2C when shared)
SELF_ATTN_WIDTHS = ("model", "full")


class DisentangledDecoderLayer(nn.Module):
    """Self-attention (shared over the concatenated branches, or per branch), then per branch
    conditional cross-attention and FFN; post-norm.

    forward(tgts: list of [B, Q, C] per branch, query_pos: list of [B, Q, C] (self-attention
    positional embeddings), spatial: list of [B, Q, C] (cross-attention spatial queries before their
    projection), mem, self_attn_bias [Q, Q] additive or None) -> list of [B, Q, C].

    ``self_attn_width``: ``"model"`` (attention at C channels) or ``"full"`` (at the width of the
    self-attention's input: 2C for the shared one); see the module docstring.

    ``batched_branches`` (attribute, default True; :func:`sd_detr.modeling.meta_arch.sd_detr.set_batched_branches`): with
    two branches the cross-attentions, residual norms and FFNs of both run as one batched computation
    ([2, B, Q, C] stacks, the per-branch weights stacked at each call; issue 24), equal to the per-branch
    loop (False, the reference the tests compare with) to float rounding. With dropout in training the
    stack draws one mask for both branches, so the random masks, not their distribution, differ from
    the loop's. The per-branch modules and their parameters are those of the loop.
    """

    def __init__(self, d_model: int = 256, nhead: int = 8, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation="relu", num_branches: int = 2, shared_self_attn: bool = True,
                 self_attn_width: str = "model"):
        super().__init__()
        if self_attn_width not in SELF_ATTN_WIDTHS:
            raise ValueError(f"DisentangledDecoderLayer: self_attn_width must be one of {SELF_ATTN_WIDTHS}, "
                             f"got {self_attn_width!r}")
        self.d_model = d_model
        self.num_branches = num_branches
        self.shared_self_attn = shared_self_attn or num_branches == 1
        self.self_attn_width = self_attn_width
        # the self-attention reads and writes sa_width channels (2C when shared over two branches) and
        # attends in attn_dim of them
        sa_width = num_branches * d_model if self.shared_self_attn else d_model
        attn_dim = d_model if self_attn_width == "model" else sa_width
        num_sa = 1 if self.shared_self_attn else num_branches
        self.self_attn = nn.ModuleList(
            ConditionalSelfAttention(sa_width, nhead, dropout, attn_dim=attn_dim) for _ in range(num_sa)
        )
        self.dropout1 = nn.ModuleList(nn.Dropout(dropout) for _ in range(num_sa))
        self.norm1 = nn.ModuleList(nn.LayerNorm(sa_width) for _ in range(num_sa))
        self.cross_attn = nn.ModuleList(ConditionalCrossAttention(d_model, nhead, dropout) for _ in range(num_branches))
        self.dropout2 = nn.ModuleList(nn.Dropout(dropout) for _ in range(num_branches))
        self.norm2 = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(num_branches))
        self.ffn = nn.ModuleList(FFN(d_model, dim_feedforward, dropout, activation) for _ in range(num_branches))
        self.batched_branches = True

    def _can_batch(self) -> bool:
        """Two or more branches whose cross-attention, dropout, norm and FFN settings agree (always so
        when built here; a changed module, e.g. one recording its attention maps, takes the loop)."""
        return (self.batched_branches and self.num_branches > 1 and can_batch_cross_attention(self.cross_attn)
                and len({d.p for d in self.dropout2}) == 1 and same_layer_norms(self.norm2) and same_ffns(self.ffn))

    def _branches_batched(self, tgts: List[Tensor], spatial: List[Tensor], mem: EncoderMemory) -> List[Tensor]:
        """The per-branch part of the layer (cross-attention, residual + norm, FFN) on [G, B, Q, C] stacks."""
        x = torch.stack(tgts)
        ca = branch_cross_attention(self.cross_attn, x, mem.memory, mem.pos, torch.stack(spatial),
                                    key_padding_mask=mem.mask)
        x = branch_layer_norm(x + self.dropout2[0](ca), self.norm2)
        return list(branch_ffn(x, self.ffn).unbind(0))

    def _self_attention(self, i: int, x: Tensor, pos: Tensor, bias: Optional[Tensor]) -> Tensor:
        return self.norm1[i](x + self.dropout1[i](self.self_attn[i](x, pos, bias)))

    def forward(self, tgts: List[Tensor], query_pos: List[Tensor], spatial: List[Tensor], mem: EncoderMemory,
                self_attn_bias: Optional[Tensor] = None) -> List[Tensor]:
        if self.shared_self_attn:
            joint = self._self_attention(0, torch.cat(tgts, dim=-1), torch.cat(query_pos, dim=-1), self_attn_bias)
            tgts = list(joint.split(self.d_model, dim=-1))
        else:
            tgts = [self._self_attention(b, t, p, self_attn_bias) for b, (t, p) in enumerate(zip(tgts, query_pos))]
        if self._can_batch():
            return self._branches_batched(tgts, spatial, mem)
        out = []
        for b, tgt in enumerate(tgts):
            ca = self.cross_attn[b](tgt, mem.memory, mem.pos, spatial[b], key_padding_mask=mem.mask)
            tgt = self.norm2[b](tgt + self.dropout2[b](ca))
            out.append(self.ffn[b](tgt))
        return out


class DisentangledDecoder(nn.Module):
    """L :class:`DisentangledDecoderLayer` on anchor-box queries.

    Input :class:`Queries` (from :class:`~sd_detr.modeling.queries.MiniDetectorQueries`): ``anchors``
    [B, Q, 4] normalised cxcywh, ``branch_content`` {branch: [B, Q, C]}, optional ``offsets`` {branch:
    [B, Q, 2]} (task-aware reference offsets from the anchor centre, normalised image units) and
    ``self_attn_mask``.

    Per layer and branch the reference point is ``anchor centre + offset`` (clamped to [0, 1]), its sine
    embedding PE is the self-attention positional embedding, and ``PE * query_scale(branch output)``
    (x1 in the first layer) the cross-attention spatial query (Conditional DETR).

    Args:
        branches: names; the first feeds the class head, the last the box head (one name: shared).
        shared_self_attn: with two branches, one self-attention over their concatenation (SD-DETR)
            instead of one per branch (two complete decoders).
        self_attn_width: "model" (default): the shared self-attention over the 2C concatenation attends
            in C channels (8 heads of C/8; projections 2C -> C, output C -> 2C), the paper's Sec. 4.1
            reading; "full": in 2C channels (8 heads of 2C/8), as DESTR. No effect with one branch or
            without the shared self-attention (C wide either way).
        refine_anchors: replace the anchors after each layer by that layer's predicted boxes (detached;
            needs the detector's ``box_head``). False keeps the mini-detector's anchors in every layer.
        reference_eps: eps of ``inverse_sigmoid`` in the refinement (the detector's ``reference_eps``).

    Output: :class:`DecoderOutput` with ``hidden`` [L, B, Q, C] of the first branch, ``box_hidden`` of the
    last (None with one branch), ``references`` [L, B, Q, 4] the anchors each layer's boxes are relative
    to, ``extra["reference_points"]`` {branch: [L, B, Q, 2]}.
    """

    def __init__(self, num_layers: int = 6, d_model: int = 256, nhead: int = 8, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation="relu", branches: Sequence[str] = ("cls", "loc"),
                 shared_self_attn: bool = True, self_attn_width: str = "model", refine_anchors: bool = False,
                 reference_eps: float = 1e-5):
        super().__init__()
        self.branches = tuple(branches)
        if not 1 <= len(self.branches) <= 2 or len(set(self.branches)) != len(self.branches):
            raise ValueError(f"DisentangledDecoder: branches must be one or two distinct names, got {branches}")
        nb = len(self.branches)
        self.layers = nn.ModuleList(
            DisentangledDecoderLayer(d_model, nhead, dim_feedforward, dropout, activation, nb, shared_self_attn,
                                     self_attn_width)
            for _ in range(num_layers)
        )
        self.d_model = d_model
        self.refine_anchors = refine_anchors
        self.reference_eps = reference_eps
        self.query_scale = nn.ModuleList(MLP(d_model, d_model, d_model, 2) for _ in range(nb))
        self.norm = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(nb))
        self.batched_branches = True  # the branches' query scales and norms batched (see the layer)
        # Xavier for every matrix of the decoder, as the official DETR-family transformers.
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, mem: EncoderMemory, queries: Queries, box_head: Optional[nn.Module] = None) -> DecoderOutput:
        if self.refine_anchors and box_head is None:
            raise ValueError("DisentangledDecoder: refine_anchors needs the detector's box_head")
        anchors, content = queries.require(type(self).__name__, "anchors", "branch_content")
        missing = [b for b in self.branches if b not in content]
        if missing:
            raise ValueError(f"DisentangledDecoder: no content queries for branch(es) {missing}; the query "
                             f"initialiser made {sorted(content)}")
        offsets = queries.offsets
        tgts = [content[b] for b in self.branches]
        bias = self_attn_bias(queries.self_attn_mask, anchors.dtype)
        batched = (self.batched_branches and len(self.branches) > 1 and same_mlps(self.query_scale)
                   and same_layer_norms(self.norm))
        hidden = [[] for _ in self.branches]
        references, points = [], [[] for _ in self.branches]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            centres = [anchors[..., :2] + offsets[b] if b in offsets else anchors[..., :2] for b in self.branches]
            centres = [c.clamp(0.0, 1.0) for c in centres]
            if batched:  # the branches' embeddings, query scales and norms on [G, B, Q, C] stacks
                pos = sine_embedding(torch.stack(centres), self.d_model // 2).to(anchors.dtype)
                query_pos = list(pos.unbind(0))
                spatial = query_pos if i == 0 else list((pos * branch_mlp(torch.stack(tgts), self.query_scale)).unbind(0))
            else:
                query_pos = [sine_embedding(c, self.d_model // 2).to(anchors.dtype) for c in centres]
                if i == 0:
                    spatial = query_pos
                else:
                    spatial = [p * self.query_scale[b](t) for b, (p, t) in enumerate(zip(query_pos, tgts))]
            tgts = layer(tgts, query_pos, spatial, mem, bias)
            if batched:
                normed = list(branch_layer_norm(torch.stack(tgts), self.norm).unbind(0))
            else:
                normed = [self.norm[b](t) for b, t in enumerate(tgts)]
            for b in range(len(self.branches)):
                hidden[b].append(normed[b])
                points[b].append(centres[b])
            references.append(anchors)
            if self.refine_anchors and i < last:
                delta = box_head(normed[-1])
                anchors = (delta + inverse_sigmoid(anchors, self.reference_eps)).sigmoid().detach()
        hidden = [torch.stack(h) for h in hidden]
        return DecoderOutput(
            hidden=hidden[0],
            references=torch.stack(references),
            box_hidden=hidden[-1] if len(hidden) > 1 else None,
            extra={"reference_points": {b: torch.stack(p) for b, p in zip(self.branches, points)}},
        )
