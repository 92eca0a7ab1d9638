"""DAB-DETR's decoder (Liu et al., ICLR 2022, Sec. 4): dynamic anchor boxes as positional queries.

Per layer, from the anchor A_q = (x, y, w, h) it received and the content query C_q:
- positional query P_q = MLP(PE(A_q)) (Eq. 1-2; the MLP ``ref_point_head`` is shared by the layers),
  used by the self-attention and, in the first layer, added to the cross-attention content;
- spatial query of the conditional cross-attention: PE(x, y) * MLP_csq(C_q) (Eq. 4; x1 in the first
  layer as officially), then width/height modulated (Eq. 6-7): its x half times w_ref / w, its y half
  times h_ref / h, with (w_ref, h_ref) = sigmoid(MLP(C_q));
- after the layer the shared box head refines the anchor (Sec. 4.3):
  A' = sigmoid(box_head(out) + inverse_sigmoid(A)), detached before it is used by the next layer.

Official reference: IDEA-Research/DAB-DETR ``models/DAB_DETR/transformer.py`` (TransformerDecoder
l. 164-288). The layers are :class:`ConditionalDecoderLayer` (same projections and attention as
Conditional DETR's, ``transformer.py:329-452``).
"""
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from ...layers import MLP, inverse_sigmoid, sine_embedding
from ..structures import DecoderOutput, EncoderMemory, Queries, self_attn_bias
from .conditional import ConditionalDecoderLayer


def modulate_spatial_query(spatial: Tensor, anchors: Tensor, ref_wh: Tensor) -> Tensor:
    """Width/height-modulated positional attention (paper Eq. 6) applied to the spatial query.

    Scaling the query's x embedding by w_ref / w scales the x term PE(x) . PE(x_ref) of every
    positional logit by the same factor (the key position is untouched), and likewise for y.

    Args:
        spatial: [..., C] spatial query, channels (y half, x half) as :func:`sine_embedding` orders them.
        anchors: [..., 4] normalised (cx, cy, w, h) the query's embedding was computed from.
        ref_wh: [..., 2] (w_ref, h_ref) in (0, 1).
    Returns:
        [..., C]: y half x h_ref / h, x half x w_ref / w (official ``transformer.py:241-244``).
    """
    half = spatial.shape[-1] // 2
    y_scale = (ref_wh[..., 1] / anchors[..., 3]).unsqueeze(-1)
    x_scale = (ref_wh[..., 0] / anchors[..., 2]).unsqueeze(-1)
    return torch.cat([spatial[..., :half] * y_scale, spatial[..., half:] * x_scale], dim=-1)


class DABDecoder(nn.Module):
    """L :class:`ConditionalDecoderLayer` driven by anchor boxes that are refined layer by layer.

    Args:
        num_layers, d_model, nhead, dim_feedforward, dropout, activation: as the Conditional DETR decoder
            (DAB-DETR's official defaults: dropout 0, PReLU, ``main.py:79, 89``).
        query_temperature: temperature of the anchors' sine embedding. The official code hard-codes 10000
            here (``gen_sineembed_for_position``, ``transformer.py:38-43``); the paper's T = 20 (Sec. 4.5) is
            the temperature of the image position embedding (``--pe_temperatureH/W``, ``main.py:59-62``,
            ``position_encoding.py:140-146``).
        modulate_hw_attn: width/height-modulated attention (Table 3 row 3 ablates it).
        update_anchors: refine the anchors after every layer with the box head passed to ``forward``
            (Table 3 row 2 ablates it); off, every layer uses the initial anchors.
        anchor_eps: eps of ``inverse_sigmoid`` in the update (official ``util/misc.py:575``: 1e-3).

    forward(mem, queries, box_head): ``queries`` from :class:`~sd_detr.modeling.queries.AnchorQueries`:
    "tgt" [B, Q, C] content queries, "anchors" [B, Q, 4] normalised (cx, cy, w, h); ``box_head`` maps
    [..., C] -> [..., 4] box logit offsets (the detector's shared ``bbox_embed``, applied here to the
    layer output before the final norm, as officially).
    Returns :class:`DecoderOutput`: ``hidden`` [L, B, Q, C] (after the shared final norm) and
    ``references`` [L, B, Q, 4] = the anchor each layer received. References after the first are not
    detached: a layer's box loss reaches the previous layer's output and box head through its anchor,
    as officially (``transformer.py:257-265``, ``DABDETR.py:170-175``); the anchor chain itself is cut.
    """

    def __init__(self, num_layers: int = 6, d_model: int = 256, nhead: int = 8, dim_feedforward: int = 2048,
                 dropout: float = 0.0, activation="prelu", query_temperature: float = 10000.0,
                 modulate_hw_attn: bool = True, update_anchors: bool = True, anchor_eps: float = 1e-3):
        super().__init__()
        # Only the first layer adds the positional query to the cross-attention content (official
        # keep_query_pos=False, transformer.py:202-204).
        self.layers = nn.ModuleList(
            ConditionalDecoderLayer(d_model, nhead, dim_feedforward, dropout, activation, add_query_pos=(i == 0))
            for i in range(num_layers)
        )
        self.d_model = d_model
        self.query_temperature = query_temperature
        self.update_anchors = update_anchors
        self.anchor_eps = anchor_eps
        self.query_scale = MLP(d_model, d_model, d_model, 2)  # MLP_csq (query_scale_type 'cond_elewise')
        self.ref_point_head = MLP(2 * d_model, d_model, d_model, 2)  # PE(A) [2C] -> P_q [C]
        self.ref_anchor_head = MLP(d_model, d_model, 2, 2) if modulate_hw_attn else None
        self.norm = nn.LayerNorm(d_model)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)  # official Transformer._reset_parameters covers the decoder

    def positional_queries(self, tgt: Tensor, anchors: Tensor, layer_index: int) -> Tuple[Tensor, Tensor]:
        """(query_pos [B, Q, C], spatial query [B, Q, C]) of a layer from its content and anchors."""
        sine = sine_embedding(anchors, self.d_model // 2, self.query_temperature).to(tgt.dtype)  # (y, x, w, h)
        query_pos = self.ref_point_head(sine)
        spatial = sine[..., : self.d_model]  # PE(x, y): the (y, x) quarters
        if layer_index > 0:
            spatial = spatial * self.query_scale(tgt)
        if self.ref_anchor_head is not None:
            spatial = modulate_spatial_query(spatial, anchors, self.ref_anchor_head(tgt).sigmoid())
        return query_pos, spatial

    def forward(self, mem: EncoderMemory, queries: Queries, box_head: Optional[nn.Module] = None) -> DecoderOutput:
        tgt, anchors = queries.require(type(self).__name__, "content", "anchors")
        bias = self_attn_bias(queries.self_attn_mask, tgt.dtype)
        if anchors.shape[-1] != 4:
            raise ValueError(f"DABDecoder needs 4-D anchors (cx, cy, w, h), got shape {tuple(anchors.shape)}")
        if self.update_anchors and box_head is None:
            raise ValueError("DABDecoder(update_anchors=True) needs the detector's box head as `box_head`")
        hidden, references = [], []
        reference = anchors  # what this layer's boxes are predicted relative to (keeps its graph)
        for i, layer in enumerate(self.layers):
            references.append(reference)
            query_pos, spatial = self.positional_queries(tgt, anchors, i)
            tgt = layer(tgt, query_pos, spatial, mem, bias)
            hidden.append(self.norm(tgt))
            if self.update_anchors and i < len(self.layers) - 1:
                reference = (box_head(tgt) + inverse_sigmoid(anchors, self.anchor_eps)).sigmoid()
                anchors = reference.detach()  # the next layers' queries do not backpropagate into it
        return DecoderOutput(hidden=torch.stack(hidden), references=torch.stack(references))
