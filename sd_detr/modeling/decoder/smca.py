"""SMCA-DETR's decoder (Gao et al., "Fast Convergence of DETR with Spatially Modulated Co-Attention",
ICCV 2021, Sec. 3.3): a DETR decoder (content query + learned query position, post-norm) whose
co-attention is modulated by a Gaussian-like map around a centre predicted from each object query.

Official reference: gaopengcuhk/SMCA-DETR ``models/transformer.py`` (the 50-epoch README command:
``--dynamic_scale type3 --num_queries 300``, smooth 8):
- each layer normalises ``tgt + query_pos`` with its own LayerNorm (``norm4``, l. 259); from it the first
  layer predicts the normalised centre sigmoid(MLP(.)) (``point1``, a 3-layer MLP, l. 231 and 269-270; the
  paper says 2 layers), shared by all layers (l. 274); every layer predicts per-head centre offsets
  (``point2``, l. 260) and per-head x / y scales (``point3``, l. 289), both before its self-attention;
- the centre is in feature cells: ``image (w, h) * sigmoid / 32`` from each image's unpadded size
  (l. 271; 32 is hard-coded there, here it is the feature stride of the memory, the same for R50; for
  DC5 (stride 16) the official code would still divide by 32);
- log G is added to the co-attention logits of each head (l. 300-306), see
  :mod:`sd_detr.attention.gaussian`;
- the boxes of every layer are sigmoid(bbox_embed(hs) + [centre logits, 0, 0]) with the first layer's
  pre-sigmoid centre (``models/detr.py:82-85``): the decoder returns them as ``reference_logits``.

Variants by argument: ``head_specific`` (multi-head modulation, Eq. 6) or head-shared (basic SMCA,
Eq. 5: one centre and one scale per query for all heads); ``scale_mode`` "indep" (x and y scales),
"single" (one scale) or "fixed" (scale 1), the rows of the paper's Table 2; ``num_levels`` > 1 uses
scale-selection attention over the levels of a multi-scale memory (Eq. 7-9).
"""
from typing import List, NamedTuple, Optional

import torch
from torch import Tensor, nn

from ...attention.gaussian import GaussianCrossAttention, feature_grid, gaussian_log_weights
from ...attention.multihead import MultiheadAttention
from ...attention.scale_selection import ScaleSelectionAttention
from ...layers import FFN, MLP, Linear
from ..structures import DecoderOutput, EncoderMemory, Queries, self_attn_bias

SCALE_MODES = ("indep", "single", "fixed")


class MemoryLevel(NamedTuple):
    """One feature level of the memory: memory, pos [B, N_j, C], mask [B, N_j], grid [N_j, 2]."""

    memory: Tensor
    pos: Tensor
    mask: Tensor
    grid: Tensor


def memory_levels(mem: EncoderMemory) -> List[MemoryLevel]:
    """Split an :class:`EncoderMemory` into its levels.

    A multi-level memory (``SMCADETR`` with several ``in_features``) concatenates its levels along N and
    lists them in ``extra["level_shapes"]`` ([(H_j, W_j)]) and ``extra["level_strides"]``; a plain memory is
    one level of ``spatial_shape``. Key positions (``grid``) are the (x, y) cell indices of each level in
    units of ``mem.stride`` pixels (integer indices on the level of stride ``mem.stride``), so one map G
    over the image is sampled on every level.
    """
    shapes = mem.extra.get("level_shapes", [mem.spatial_shape])
    strides = mem.extra.get("level_strides", [mem.stride])
    sizes = [h * w for h, w in shapes]
    if sum(sizes) != mem.memory.shape[1]:
        raise ValueError(f"memory has {mem.memory.shape[1]} locations but its levels {list(shapes)} have {sum(sizes)}")
    memories, poss, masks = (t.split(sizes, dim=1) for t in (mem.memory, mem.pos, mem.mask))
    return [
        MemoryLevel(m, p, k, feature_grid(h, w, s / mem.stride, device=mem.memory.device))
        for m, p, k, (h, w), s in zip(memories, poss, masks, shapes, strides)
    ]


class SMCADecoderLayer(nn.Module):
    """Self-attention, spatially modulated co-attention, FFN; post-norm. Shapes [B, Q, C].

    Parameters named after the official layer: ``prior_norm`` = ``norm4``, ``offset_head`` = ``point2``,
    ``scale_head`` = ``point3``; ``scale_select`` (multi-level only) is the FC of Eq. 7.
    """

    def __init__(self, d_model: int = 256, nhead: int = 8, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation="relu", beta: float = 8.0, head_specific: bool = True, scale_mode: str = "indep",
                 num_levels: int = 1):
        super().__init__()
        if scale_mode not in SCALE_MODES:
            raise ValueError(f"scale_mode must be one of {SCALE_MODES}, got {scale_mode!r}")
        self.nhead = nhead
        self.beta = beta
        self.head_specific = head_specific
        self.scale_mode = scale_mode
        self.num_levels = num_levels
        self.self_attn = MultiheadAttention(d_model, nhead, dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        if num_levels == 1:
            self.cross_attn = GaussianCrossAttention(d_model, nhead, dropout)
        else:
            self.cross_attn = ScaleSelectionAttention(d_model, nhead, num_levels, dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FFN(d_model, dim_feedforward, dropout, activation)

        self.prior_norm = nn.LayerNorm(d_model)
        maps = nhead if head_specific else 1
        self.offset_head = Linear(d_model, 2 * nhead) if head_specific else None
        scale_dims = {"indep": 2 * maps, "single": maps, "fixed": 0}[scale_mode]
        self.scale_head = Linear(d_model, scale_dims) if scale_dims else None
        self.scale_select = Linear(d_model, num_levels) if num_levels > 1 else None

    def reset_scale_head(self):
        """Scales start at 1 for every query (official ``models/transformer.py:43-47``)."""
        if self.scale_head is not None:
            nn.init.zeros_(self.scale_head.weight)
            nn.init.ones_(self.scale_head.bias)

    def spatial_prior(self, tgt: Tensor, query_pos: Tensor, center: Tensor):
        """The modulation this layer applies, from ``norm(tgt + query_pos)`` before its self-attention.

        Args:
            tgt, query_pos: [B, Q, C]; center: [B, Q, 2] (x, y) shared centre in grid units.
        Returns:
            centers [B, Q, H or 1, 2], scales [B, Q, H or 1, 2 or 1] or None (fixed), scale weights
            [B, Q, L] (softmax over the levels) or None (one level).
        """
        b, q, _ = tgt.shape
        x = self.prior_norm(tgt + query_pos)
        centers = center[:, :, None, :]
        if self.offset_head is not None:
            centers = centers + self.offset_head(x).view(b, q, self.nhead, 2)
        scales = None
        if self.scale_head is not None:
            per_axis = 2 if self.scale_mode == "indep" else 1
            scales = self.scale_head(x).view(b, q, -1, per_axis)
        alpha = self.scale_select(x).softmax(-1) if self.scale_select is not None else None
        return centers, scales, alpha

    def forward(self, tgt: Tensor, query_pos: Tensor, center: Tensor, levels: List[MemoryLevel],
                self_attn_bias: Optional[Tensor] = None) -> Tensor:
        centers, scales, alpha = self.spatial_prior(tgt, query_pos, center)
        q = k = tgt + query_pos
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, tgt, attn_bias=self_attn_bias)))
        query = tgt + query_pos
        biases = [gaussian_log_weights(centers, scales, lvl.grid, self.beta) for lvl in levels]
        if self.num_levels == 1:
            lvl = levels[0]
            ca = self.cross_attn(query, lvl.memory + lvl.pos, lvl.memory, lvl.mask, biases[0])
        else:
            ca = self.cross_attn(query, [lvl.memory + lvl.pos for lvl in levels], [lvl.memory for lvl in levels],
                                 alpha, [lvl.mask for lvl in levels], biases)
        tgt = self.norm2(tgt + self.dropout2(ca))
        return self.ffn(tgt)


class SMCADecoder(nn.Module):
    """L :class:`SMCADecoderLayer` around one centre per object query.

    Input :class:`Queries` (from :class:`~sd_detr.modeling.queries.LearnedQueries`): ``content`` [B, Q, C]
    (zeros), ``pos`` [B, Q, C] (the learned object queries), optional ``self_attn_mask``. Needs ``mem.image_sizes`` (unpadded (h, w) of
    each image): the centre is normalised to the image, not to the padded batch.

    Output: :class:`DecoderOutput` with ``references`` [L, B, Q, 2] = the normalised centre (the same in
    every layer) and ``reference_logits`` its pre-sigmoid value (added to the box head's (cx, cy)).

    Args:
        beta: bandwidth of G (the official ``smooth`` 8; the paper's beta).
        head_specific: per-head centre offsets and scales (multi-head modulation) or one map for all heads.
        scale_mode: "indep" | "single" | "fixed" (see module doc).
        center_mlp_layers: layers of the centre MLP (official 3).
        num_levels: feature levels of the memory (1, or 3 for the multi-scale SMCA).
    """

    def __init__(self, num_layers: int = 6, d_model: int = 256, nhead: int = 8, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation="relu", beta: float = 8.0, head_specific: bool = True,
                 scale_mode: str = "indep", center_mlp_layers: int = 3, num_levels: int = 1):
        super().__init__()
        self.layers = nn.ModuleList(
            SMCADecoderLayer(d_model, nhead, dim_feedforward, dropout, activation, beta, head_specific, scale_mode,
                             num_levels)
            for _ in range(num_layers)
        )
        self.num_levels = num_levels
        self.center_head = MLP(d_model, d_model, 2, center_mlp_layers)
        self.norm = nn.LayerNorm(d_model)
        # official Transformer._reset_parameters (models/transformer.py:52-55), then the scale heads
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for layer in self.layers:
            layer.reset_scale_head()

    def forward(self, mem: EncoderMemory, queries: Queries, box_head: Optional[nn.Module] = None) -> DecoderOutput:
        tgt, query_pos = queries.require(type(self).__name__, "content", "pos")
        bias = self_attn_bias(queries.self_attn_mask, tgt.dtype)
        levels = memory_levels(mem)
        if len(levels) != self.num_levels:
            raise ValueError(f"SMCADecoder built for {self.num_levels} feature levels got a memory of {len(levels)}")
        # the centre comes from the first layer's normalised query (official l. 259 and 269)
        center_logits = self.center_head(self.layers[0].prior_norm(tgt + query_pos))  # [B, Q, 2] (x, y)
        image_wh = mem.image_sizes.flip(-1).to(center_logits.dtype)  # [B, 2] (w, h) pixels
        center = center_logits.sigmoid() * image_wh[:, None, :] / mem.stride  # grid units
        hidden = []
        for layer in self.layers:
            tgt = layer(tgt, query_pos, center, levels, bias)
            hidden.append(self.norm(tgt))
        n = len(self.layers)
        return DecoderOutput(
            hidden=torch.stack(hidden),
            references=center_logits.sigmoid().unsqueeze(0).expand(n, -1, -1, -1),
            reference_logits=center_logits.unsqueeze(0).expand(n, -1, -1, -1),
        )
