"""Conditional DETR's decoder attention (Meng et al., ICCV 2021, Sec. 3.3), written once and used by
Conditional DETR, DAB-DETR (with its width/height modulation applied to the spatial query beforehand)
and both branches of SD-DETR.

Official reference: Atten4Vis/ConditionalDETR ``models/transformer.py:226-330``. The attention module
there has no input projections of its own: separate linear layers project content and position, and
only ``out_proj`` belongs to the attention.
"""
from typing import Optional

import torch
from torch import Tensor, nn

from ..layers.linear import Linear, branch_linear, linear
from .core import multi_head_attention, split_heads


class ConditionalSelfAttention(nn.Module):
    """Decoder self-attention with separately projected content and position:
    ``q = Wqc x + Wqp p``, ``k = Wkc x + Wkp p``, ``v = Wv x``, output ``Wo attn(q, k, v)``.

    The attention runs at ``attn_dim`` channels (``nhead`` heads of ``attn_dim / nhead``): the five input
    projections map ``d_model -> attn_dim`` and ``out_proj`` maps ``attn_dim -> d_model``. The default
    ``attn_dim = d_model`` is Conditional DETR's (official reference above). SD-DETR's shared
    self-attention over the 2C concatenation ``[q_cls | q_loc]`` uses ``d_model = 2C, attn_dim = C``
    (the paper's "attention channel 256", Sec. 4.1; projects/sd_detr/README.md).

    Shapes: x, pos [B, Q, d_model] -> [B, Q, d_model] (before residual and norm).
    """

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, attn_dim: Optional[int] = None):
        super().__init__()
        attn_dim = d_model if attn_dim is None else attn_dim
        if attn_dim <= 0 or attn_dim % nhead:
            raise ValueError(f"ConditionalSelfAttention: attn_dim={attn_dim} must be a positive multiple of nhead={nhead}")
        self.nhead = nhead
        self.dropout = dropout
        self.attn_dim = attn_dim
        self.qcontent_proj = Linear(d_model, attn_dim)
        self.qpos_proj = Linear(d_model, attn_dim)
        self.kcontent_proj = Linear(d_model, attn_dim)
        self.kpos_proj = Linear(d_model, attn_dim)
        self.v_proj = Linear(d_model, attn_dim)
        self.out_proj = Linear(attn_dim, d_model)
        nn.init.constant_(self.out_proj.bias, 0.0)
        self.value_padding = False  # this module's own switch, set by optimize_for_cpu (engine/accel.py)

    def forward(self, x: Tensor, pos: Tensor, attn_mask: Optional[Tensor] = None) -> Tensor:
        q = self.qcontent_proj(x) + self.qpos_proj(pos)
        k = self.kcontent_proj(x) + self.kpos_proj(pos)
        out, _ = multi_head_attention(
            q, k, self.v_proj(x), self.nhead, attn_bias=attn_mask,
            dropout_p=self.dropout if self.training else 0.0, pad_values=self.value_padding,
        )
        return self.out_proj(out)


class ConditionalCrossAttention(nn.Module):
    """Conditional cross-attention: per head, the query is ``[content | spatial]`` and the key
    ``[content | position]``, so the logit is ``c_q . c_k + p_q . p_k`` (paper Eq. 2).

    - content query ``Wqc f`` (+ ``Wqp o_q`` when ``add_query_pos=True``: the official first layer),
    - spatial query ``Wqs s`` with ``s = lambda_q * PE(ref)`` supplied by the decoder,
    - key content ``Wkc m`` (+ ``Wkp p`` when the query position is added, as officially),
    - key position ``Wkp p``; value ``Wv m``.
    Per head: 2 x d_model / nhead query/key channels (scale 1/sqrt of that), d_model / nhead value channels.

    When ``record_attention`` is set the last call stores ``last_attention``: softmax maps
    [B, H, Q, N] of the combined logits and of the content-only and spatial-only terms (Conditional
    DETR's Figure 4), for ``tools/visualize_attention.py``.
    """

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, add_query_pos: bool = False):
        super().__init__()
        self.nhead = nhead
        self.dropout = dropout
        self.qcontent_proj = Linear(d_model, d_model)
        self.qpos_proj = Linear(d_model, d_model) if add_query_pos else None
        self.kcontent_proj = Linear(d_model, d_model)
        self.kpos_proj = Linear(d_model, d_model)
        self.v_proj = Linear(d_model, d_model)
        self.qpos_sine_proj = Linear(d_model, d_model)
        self.out_proj = Linear(d_model, d_model)
        nn.init.constant_(self.out_proj.bias, 0.0)
        self.record_attention = False
        self.last_attention = None
        self.value_padding = False  # this module's own switch, set by optimize_for_cpu (engine/accel.py)

    def forward(
        self,
        query: Tensor,
        memory: Tensor,
        memory_pos: Tensor,
        query_sine_embed: Tensor,
        query_pos: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
        attn_bias: Optional[Tensor] = None,
    ) -> Tensor:
        """
        Args:
            query: [B, Q, C] decoder embeddings; memory, memory_pos: [B, N, C];
            query_sine_embed: [B, Q, C] spatial query before its projection;
            query_pos: [B, Q, C] object-query positional embedding, used when ``add_query_pos``;
            key_padding_mask: [B, N] True on padding; attn_bias: additive logit bias [B or 1, H, Q, N].
        Returns: [B, Q, C] (before residual and norm).
        """
        h = self.nhead
        q_content = self.qcontent_proj(query)
        k_content = self.kcontent_proj(memory)
        k_pos = self.kpos_proj(memory_pos)
        if self.qpos_proj is not None and query_pos is not None:
            q_content = q_content + self.qpos_proj(query_pos)
            k_content = k_content + k_pos
        q_spatial = self.qpos_sine_proj(query_sine_embed)
        q = _concat_heads(q_content, q_spatial, h)
        k = _concat_heads(k_content, k_pos, h)
        out, weights = multi_head_attention(
            q, k, self.v_proj(memory), h,
            key_padding_mask=key_padding_mask, attn_bias=attn_bias,
            dropout_p=self.dropout if self.training else 0.0,
            need_weights=self.record_attention, pad_values=self.value_padding,
        )
        if self.record_attention:
            self.last_attention = {
                "combined": weights,
                "content": _part_attention(q_content, k_content, h, q.shape[-1] // h, key_padding_mask),
                "spatial": _part_attention(q_spatial, k_pos, h, q.shape[-1] // h, key_padding_mask),
            }
        return self.out_proj(out)


def _concat_heads(a: Tensor, b: Tensor, num_heads: int) -> Tensor:
    """[B, N, C] x 2 -> [B, N, 2C] with each head's channels being [a_head | b_head]."""
    bsz, n, c = a.shape
    return torch.cat(
        [a.view(bsz, n, num_heads, c // num_heads), b.view(bsz, n, num_heads, c // num_heads)], dim=3
    ).view(bsz, n, 2 * c)


@torch.no_grad()
def _part_attention(q: Tensor, k: Tensor, num_heads: int, head_dim: int, key_padding_mask) -> Tensor:
    """Softmax of one term of the conditional logit, scaled as the combined logit is."""
    logits = split_heads(q, num_heads) @ split_heads(k, num_heads).transpose(-2, -1) * head_dim ** -0.5
    if key_padding_mask is not None:
        logits = logits.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    return logits.softmax(-1)


def can_batch_cross_attention(modules) -> bool:
    """Whether G :class:`ConditionalCrossAttention` can run as one :func:`branch_cross_attention`: same
    heads, width, dropout and speed-up flags, no query-position projection (SD-DETR's layers) and no
    attention recording (which keeps per-module maps)."""
    m0 = modules[0]
    return all(isinstance(m, ConditionalCrossAttention) and m.qpos_proj is None and not m.record_attention
               and m.nhead == m0.nhead and m.dropout == m0.dropout and m.value_padding == m0.value_padding
               and m.qcontent_proj.weight.shape == m0.qcontent_proj.weight.shape
               and m.qcontent_proj.onednn_linear == m0.qcontent_proj.onednn_linear for m in modules)


def branch_cross_attention(modules, query: Tensor, memory: Tensor, memory_pos: Tensor, query_sine_embed: Tensor,
                           key_padding_mask: Optional[Tensor] = None) -> Tensor:
    """G conditional cross-attentions (one per decoder branch, own weights) on one memory, as one
    computation: ``modules[g](query[g], memory, memory_pos, query_sine_embed[g], key_padding_mask=...)``
    for every g, stacked.

    - query-side projections (content, spatial, output): batched products over the branch dimension
      (:func:`~sd_detr.layers.branch_linear`);
    - memory-side projections (key content and value of every branch on ``memory``, key position on
      ``memory_pos``): one product each with the branches' weights concatenated along the output, since
      the branches share their input;
    - the attention: one SDPA call with the branches folded into the batch ([G * B, H, Q, N]).

    Args:
        modules: G :class:`ConditionalCrossAttention` (checked by :func:`can_batch_cross_attention`).
        query, query_sine_embed: [G, B, Q, C]; memory, memory_pos: [B, N, C]; key_padding_mask: [B, N].
    Returns: [G, B, Q, C] (before residual and norm), equal to the per-module calls to float rounding.
    """
    g, bsz, nq, c = query.shape
    n = memory.shape[1]
    m0 = modules[0]
    h, onednn = m0.nhead, m0.qcontent_proj.onednn_linear
    q_content = branch_linear(query, [m.qcontent_proj.weight for m in modules],
                              [m.qcontent_proj.bias for m in modules], onednn)
    q_spatial = branch_linear(query_sine_embed, [m.qpos_sine_proj.weight for m in modules],
                              [m.qpos_sine_proj.bias for m in modules], onednn)
    # memory side: [B, N, 2 G C] = [k_content of each branch | value of each branch], [B, N, G C] k_pos
    kv = linear(memory, torch.cat([m.kcontent_proj.weight for m in modules] + [m.v_proj.weight for m in modules]),
                torch.cat([m.kcontent_proj.bias for m in modules] + [m.v_proj.bias for m in modules]), onednn)
    k_pos = linear(memory_pos, torch.cat([m.kpos_proj.weight for m in modules]),
                   torch.cat([m.kpos_proj.bias for m in modules]), onednn)

    def fold(x: Tensor) -> Tensor:  # [B, N, G * C] -> [G * B, N, C], branch-major as the queries
        return x.view(bsz, n, g, c).permute(2, 0, 1, 3).reshape(g * bsz, n, c)

    k_content, v = kv.split(g * c, dim=-1)
    q = _concat_heads(q_content.reshape(g * bsz, nq, c), q_spatial.reshape(g * bsz, nq, c), h)
    k = _concat_heads(fold(k_content), fold(k_pos), h)
    mask = None if key_padding_mask is None else key_padding_mask.repeat(g, 1)
    out, _ = multi_head_attention(q, k, fold(v), h, key_padding_mask=mask,
                                  dropout_p=m0.dropout if m0.training else 0.0, pad_values=m0.value_padding)
    return branch_linear(out.view(g, bsz, nq, c), [m.out_proj.weight for m in modules],
                         [m.out_proj.bias for m in modules], onednn)
