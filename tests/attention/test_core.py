import fvcore.nn
import torch
from torch import nn

from sd_detr.attention import multi_head_attention
from sd_detr.attention.core import _pad_values_for_fused_kernel
from sd_detr.utils.flops import sdpa_flop_jit


def _explicit_attention(q, k, v, heads, mask=None, bias=None):
    b, nq, ck = q.shape
    dk, dv = ck // heads, v.shape[-1] // heads
    qh = q.view(b, nq, heads, dk).transpose(1, 2)
    kh = k.view(b, -1, heads, dk).transpose(1, 2)
    vh = v.view(b, -1, heads, dv).transpose(1, 2)
    logits = qh @ kh.transpose(-1, -2) / dk ** 0.5
    if bias is not None:
        logits = logits + bias
    if mask is not None:
        logits = logits.masked_fill(mask[:, None, None, :], float("-inf"))
    return (logits.softmax(-1) @ vh).transpose(1, 2).reshape(b, nq, heads * dv)


def test_values_narrower_than_query_heads_give_the_explicit_attention_output_and_width():
    # Conditional DETR's cross-attention: 2 x 4-d query/key heads, 4-d value heads (padded internally
    # with pad_values=True, as the attention modules ask once optimize_for_cpu has set their flag).
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 16), torch.randn(2, 7, 16), torch.randn(2, 7, 8)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[1, 4:] = True
    bias = torch.randn(2, 2, 3, 7)
    assert _pad_values_for_fused_kernel(q.view(2, 3, 2, 8).transpose(1, 2), v.view(2, 7, 2, 4).transpose(1, 2), 0.0,
                                        True)
    for kwargs in ({}, {"key_padding_mask": mask}, {"attn_bias": bias}, {"key_padding_mask": mask, "attn_bias": bias}):
        out, _ = multi_head_attention(q, k, v, 2, pad_values=True, **kwargs)
        assert out.shape == (2, 3, 8)
        expected = _explicit_attention(q, k, v, 2, kwargs.get("key_padding_mask"), kwargs.get("attn_bias"))
        assert torch.allclose(out, expected, atol=1e-6), kwargs


def test_value_padding_is_skipped_with_dropout_equal_widths_and_when_tracing():
    qh, vh = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 7, 4)
    assert not _pad_values_for_fused_kernel(qh, vh, 0.0, False)  # plain unless the caller asks
    assert _pad_values_for_fused_kernel(qh, vh, 0.0, True)
    assert not _pad_values_for_fused_kernel(qh, vh, 0.1, True)
    assert not _pad_values_for_fused_kernel(qh, torch.randn(1, 2, 7, 8), 0.0, True)
    seen = []

    def traced(q):
        seen.append(_pad_values_for_fused_kernel(q, vh, 0.0, True))
        return q * 2

    torch.jit.trace(traced, (qh,), check_trace=False)
    assert seen == [False]


class _Attention(nn.Module):
    def forward(self, q, k, v):
        return multi_head_attention(q, k, v, 2, pad_values=True)[0]  # tracing: not padded anyway


def test_fvcore_counts_the_unpadded_attention_products():
    q, k, v = torch.randn(1, 3, 16), torch.randn(1, 7, 16), torch.randn(1, 7, 8)
    analysis = fvcore.nn.FlopCountAnalysis(_Attention(), (q, k, v))
    analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
    analysis.unsupported_ops_warnings(False)
    # per head: 3 queries x 7 keys x (8 query/key channels + 4 value channels), 2 heads
    assert analysis.total() == 2 * 3 * 7 * (8 + 4)
