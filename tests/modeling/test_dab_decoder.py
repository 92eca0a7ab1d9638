"""DAB-DETR's decoder: width/height-modulated positional attention by hand, layer-by-layer anchor
refinement and where its gradient is cut."""
import math

import pytest
import torch
from torch import nn

from sd_detr.layers import MLP, inverse_sigmoid
from sd_detr.modeling.decoder import DABDecoder, EncoderMemory, modulate_spatial_query
from sd_detr.modeling.structures import Queries


def _memory(bsz=1, n=6, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return EncoderMemory(memory=torch.randn(bsz, n, d, generator=g), pos=torch.randn(bsz, n, d, generator=g),
                         mask=torch.zeros(bsz, n, dtype=torch.bool), spatial_shape=(2, n // 2), stride=16,
                         image_sizes=torch.full((bsz, 2), 32.0))


def _pe(v):
    """Sine embedding of one coordinate with 2 channels: both channels have frequency T^0 = 1."""
    return [math.sin(2 * math.pi * v), math.cos(2 * math.pi * v)]


def test_modulated_positional_logits_equal_the_hand_computed_ones():
    # 1 head, d_model 4: PE(v) = (sin 2 pi v, cos 2 pi v), so PE(a) . PE(b) = cos(2 pi (a - b)) and paper
    # Eq. 6 reads: logit_k = (w_ref / w cos 2pi(x_k - x) + h_ref / h cos 2pi(y_k - y)) / sqrt(2 * 4)
    torch.manual_seed(0)
    dec = DABDecoder(num_layers=1, d_model=4, nhead=1, dim_feedforward=8).eval()
    x, y, w, h = 0.3, 0.6, 0.2, 0.5
    w_ref, h_ref = 0.4, 0.25
    with torch.no_grad():
        head = dec.ref_anchor_head.layers[-1]
        head.weight.zero_()
        head.bias.copy_(inverse_sigmoid(torch.tensor([w_ref, h_ref])))
    anchors = torch.tensor([[[x, y, w, h]]])
    tgt = torch.zeros(1, 1, 4)
    query_pos, spatial = dec.positional_queries(tgt, anchors, layer_index=0)
    expected = [v * h_ref / h for v in _pe(y)] + [v * w_ref / w for v in _pe(x)]  # (y half, x half)
    assert torch.allclose(spatial[0, 0], torch.tensor(expected), atol=1e-6)

    # through the layer's conditional cross-attention, projections set so only the spatial term remains
    ca = dec.layers[0].cross_attn
    with torch.no_grad():
        for lin in (ca.qcontent_proj, ca.qpos_proj, ca.kcontent_proj):
            lin.weight.zero_()
            lin.bias.zero_()
        for lin in (ca.qpos_sine_proj, ca.kpos_proj):
            lin.weight.copy_(torch.eye(4))
            lin.bias.zero_()
    keys = [(0.1, 0.2), (0.3, 0.6), (0.9, 0.5), (0.5, 0.0), (0.35, 0.7)]  # (x_k, y_k)
    key_pos = torch.tensor([[_pe(yk) + _pe(xk) for xk, yk in keys]])
    ca.record_attention = True
    ca(tgt, torch.randn(1, len(keys), 4), key_pos, spatial, query_pos)
    logits = torch.tensor([(w_ref / w * math.cos(2 * math.pi * (xk - x)) + h_ref / h * math.cos(2 * math.pi * (yk - y)))
                           / math.sqrt(8) for xk, yk in keys])
    assert torch.allclose(ca.last_attention["combined"][0, 0, 0], logits.softmax(0), atol=1e-6)


def test_modulation_scales_the_y_half_by_h_ratio_and_the_x_half_by_w_ratio():
    spatial = torch.arange(1.0, 9.0).view(1, 8)
    out = modulate_spatial_query(spatial, torch.tensor([[0.5, 0.5, 0.25, 0.5]]), torch.tensor([[0.5, 0.1]]))
    assert torch.allclose(out, torch.tensor([[0.2, 0.4, 0.6, 0.8, 10.0, 12.0, 14.0, 16.0]]))


def test_without_modulation_the_spatial_query_is_the_anchor_centre_embedding():
    dec = DABDecoder(num_layers=1, d_model=4, nhead=1, dim_feedforward=8, modulate_hw_attn=False)
    assert dec.ref_anchor_head is None
    _, spatial = dec.positional_queries(torch.zeros(1, 1, 4), torch.tensor([[[0.3, 0.6, 0.2, 0.5]]]), 0)
    assert torch.allclose(spatial[0, 0], torch.tensor(_pe(0.6) + _pe(0.3)), atol=1e-6)


class _StepTowards(nn.Module):
    """A box head whose output moves every anchor's logits 1/steps of the way from start to target."""

    def __init__(self, start, target, steps):
        super().__init__()
        self.register_buffer("delta", (inverse_sigmoid(target) - inverse_sigmoid(start)) / steps)

    def forward(self, x):
        return self.delta.expand(*x.shape[:-1], 4)


def test_each_layer_receives_an_anchor_closer_to_the_target_than_the_previous():
    torch.manual_seed(0)
    layers = 4
    dec = DABDecoder(num_layers=layers, d_model=16, nhead=2, dim_feedforward=32).eval()
    start = torch.rand(1, 5, 4) * 0.8 + 0.1
    target = torch.rand(1, 5, 4) * 0.8 + 0.1
    head = _StepTowards(start, target, layers)
    out = dec(_memory(), Queries(content=torch.zeros(1, 5, 16), anchors=start), box_head=head)
    assert out.references.shape == (layers, 1, 5, 4) and out.hidden.shape == (layers, 1, 5, 16)
    assert torch.equal(out.references[0], start)
    dist = (out.references - target).abs()  # [L, 1, Q, 4]
    assert torch.all(dist[1:] < dist[:-1])
    # the last layer's box (the detector adds the head to its anchor the same way) lands on the target
    final = (head(out.hidden[-1]) + inverse_sigmoid(out.references[-1], dec.anchor_eps)).sigmoid()
    assert torch.allclose(final, target, atol=1e-5)


class _ShiftedHead(nn.Module):
    """A box head that adds its own learnable shift at each call: shift[k] moves only the anchor that
    the refinement after layer k produces."""

    def __init__(self, mlp, calls):
        super().__init__()
        self.mlp = mlp
        self.shift = nn.Parameter(torch.zeros(calls, 4))
        self.calls = 0

    def forward(self, x):
        out = self.mlp(x) + self.shift[self.calls]
        self.calls += 1
        return out


def test_anchor_chain_is_detached_between_layers():
    torch.manual_seed(0)
    layers = 4
    dec = DABDecoder(num_layers=layers, d_model=16, nhead=2, dim_feedforward=32)
    head = _ShiftedHead(MLP(16, 16, 4, 3), calls=layers - 1)
    anchor_logits = nn.Parameter(torch.randn(1, 5, 4))
    out = dec(_memory(), Queries(content=torch.zeros(1, 5, 16), anchors=anchor_logits.sigmoid()), box_head=head)
    assert head.calls == layers - 1  # one refinement after every layer but the last
    # the last layer's box loss, its box relative to the anchor it received (as the detector computes it)
    last_box = (head.mlp(out.hidden[-1]) + inverse_sigmoid(out.references[-1], dec.anchor_eps)).sigmoid()
    loss = (last_box - 0.5).abs().sum()
    grad = torch.autograd.grad(loss, head.shift, retain_graph=True)[0]
    # it trains the refinement that produced its own anchor (official: that anchor is not detached) ...
    assert grad[layers - 2].abs().sum() > 0
    # ... but reaches no earlier refinement: each layer's anchor enters the next ones detached
    assert torch.all(grad[: layers - 2] == 0)
    # the first refinement is relative to the learned anchors themselves (official transformer.py:261)
    assert torch.autograd.grad(out.references[1].sum(), anchor_logits)[0].abs().sum() > 0


def test_without_anchor_update_every_layer_uses_the_initial_anchors():
    dec = DABDecoder(num_layers=3, d_model=16, nhead=2, dim_feedforward=32, update_anchors=False)
    anchors = torch.rand(2, 5, 4) * 0.8 + 0.1
    out = dec(_memory(bsz=2), Queries(content=torch.zeros(2, 5, 16), anchors=anchors))
    assert torch.equal(out.references, anchors.expand(3, -1, -1, -1))


def test_anchor_update_needs_the_box_head():
    dec = DABDecoder(num_layers=2, d_model=16, nhead=2, dim_feedforward=32)
    with pytest.raises(ValueError, match="box_head"):
        dec(_memory(), Queries(content=torch.zeros(1, 5, 16), anchors=torch.rand(1, 5, 4)))
