import torch

from sd_detr.attention import ConditionalCrossAttention, multi_head_attention


def _reference_cross_attention(m, query, memory, memory_pos, sine, query_pos, mask):
    """Per-head logits c_q.c_k + p_q.p_k written out explicitly (paper Eq. 2)."""
    h = m.nhead
    b, nq, c = query.shape
    d = c // h
    qc = m.qcontent_proj(query) + (m.qpos_proj(query_pos) if m.qpos_proj is not None else 0)
    kp = m.kpos_proj(memory_pos)
    kc = m.kcontent_proj(memory) + (kp if m.qpos_proj is not None else 0)
    qs = m.qpos_sine_proj(sine)
    v = m.v_proj(memory)
    out = []
    for head in range(h):
        sl = slice(head * d, (head + 1) * d)
        logits = (qc[..., sl] @ kc[..., sl].transpose(1, 2) + qs[..., sl] @ kp[..., sl].transpose(1, 2)) / (2 * d) ** 0.5
        logits = logits.masked_fill(mask[:, None, :], float("-inf"))
        out.append(logits.softmax(-1) @ v[..., sl])
    return m.out_proj(torch.cat(out, -1))


def test_conditional_cross_attention_is_content_plus_spatial_logits_per_head():
    torch.manual_seed(0)
    for first in (True, False):
        m = ConditionalCrossAttention(d_model=16, nhead=4, add_query_pos=first).eval()
        q, qp, s = torch.randn(2, 3, 16), torch.randn(2, 3, 16), torch.randn(2, 3, 16)
        mem, pos = torch.randn(2, 7, 16), torch.randn(2, 7, 16)
        mask = torch.zeros(2, 7, dtype=torch.bool)
        mask[1, 5:] = True
        got = m(q, mem, pos, s, qp, key_padding_mask=mask)
        assert torch.allclose(got, _reference_cross_attention(m, q, mem, pos, s, qp, mask), atol=1e-5)


def test_recorded_attention_maps_are_distributions_that_ignore_padding():
    torch.manual_seed(0)
    m = ConditionalCrossAttention(d_model=16, nhead=4).eval()
    m.record_attention = True
    mask = torch.zeros(1, 6, dtype=torch.bool)
    mask[0, 4:] = True
    m(torch.randn(1, 2, 16), torch.randn(1, 6, 16), torch.randn(1, 6, 16), torch.randn(1, 2, 16), key_padding_mask=mask)
    for name in ("combined", "content", "spatial"):
        w = m.last_attention[name]
        assert w.shape == (1, 4, 2, 6)
        assert torch.allclose(w.sum(-1), torch.ones(1, 4, 2))
        assert torch.all(w[..., 4:] == 0)


def test_attention_bias_is_added_to_the_logits_before_the_softmax():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 2, 8), torch.randn(1, 5, 8), torch.randn(1, 5, 4)
    bias = torch.randn(1, 2, 2, 5)  # [B, H, Q, N]
    out, w = multi_head_attention(q, k, v, 2, attn_bias=bias, need_weights=True)
    fused, _ = multi_head_attention(q, k, v, 2, attn_bias=bias)
    qh, kh = q.view(1, 2, 2, 4).transpose(1, 2), k.view(1, 5, 2, 4).transpose(1, 2)
    expected = (qh @ kh.transpose(-1, -2) / 2 + bias).softmax(-1)
    assert torch.allclose(w, expected, atol=1e-6)
    assert torch.allclose(out, fused, atol=1e-6)
