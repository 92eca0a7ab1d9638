"""SD-DETR's disentangled decoder: the shared self-attention mixes the branches (the split decoder does
not) and attends in C channels by default (2C with ``self_attn_width="full"``), one branch is exactly
Conditional DETR's layer, references come from the anchors and offsets,
optional anchor refinement, and the heads read their own branch."""
import pytest
import torch

from sd_detr.layers import MLP, inverse_sigmoid, sine_embedding
from sd_detr.modeling.decoder import ConditionalDecoderLayer, DisentangledDecoder, DisentangledDecoderLayer
from sd_detr.modeling.meta_arch.sd_detr import set_batched_branches
from sd_detr.modeling.structures import Queries

from ..utils import random_encoder_memory

C, H, F = 16, 2, 32


def _memory(seed=0):
    return random_encoder_memory(C, seed=seed)


def _queries(branches, bsz=2, nq=5, seed=1, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    anchors = torch.cat([torch.rand(bsz, nq, 2, generator=g) * 0.6 + 0.2, torch.rand(bsz, nq, 2, generator=g) * 0.3 + 0.1], -1)
    content = {b: torch.randn(bsz, nq, C, generator=g, requires_grad=requires_grad) for b in branches}
    return Queries(anchors=anchors, branch_content=content)


def _decoder(branches=("cls", "loc"), shared_self_attn=True, refine=False, layers=2, width="model"):
    torch.manual_seed(0)
    return DisentangledDecoder(num_layers=layers, d_model=C, nhead=H, dim_feedforward=F, dropout=0.0,
                               branches=branches, shared_self_attn=shared_self_attn, self_attn_width=width,
                               refine_anchors=refine).eval()


def _box_head():
    torch.manual_seed(5)
    return MLP(C, C, 4, 3)


def test_box_output_gradient_reaches_the_classification_query_through_the_shared_self_attention():
    q = _queries(("cls", "loc"), requires_grad=True)
    out = _decoder()(_memory(), q)
    _box_head()(out.box_hidden[-1]).sum().backward()
    assert q.branch_content["cls"].grad.abs().sum() > 0
    assert q.branch_content["loc"].grad.abs().sum() > 0


def test_split_decoder_keeps_the_branches_apart():
    q = _queries(("cls", "loc"), requires_grad=True)
    out = _decoder(shared_self_attn=False)(_memory(), q)
    _box_head()(out.box_hidden[-1]).sum().backward()
    assert q.branch_content["cls"].grad is None or torch.all(q.branch_content["cls"].grad == 0)
    assert q.branch_content["loc"].grad.abs().sum() > 0


def test_shared_self_attention_is_one_attention_over_the_2c_concatenation():
    layer = DisentangledDecoderLayer(C, H, F, 0.0, num_branches=2, shared_self_attn=True)
    assert len(layer.self_attn) == 1 and layer.self_attn[0].qcontent_proj.in_features == 2 * C
    assert layer.norm1[0].normalized_shape == (2 * C,)
    assert len(layer.cross_attn) == 2 and len(layer.ffn) == 2 and len(layer.norm2) == 2
    split = DisentangledDecoderLayer(C, H, F, 0.0, num_branches=2, shared_self_attn=False)
    assert len(split.self_attn) == 2 and split.self_attn[0].qcontent_proj.in_features == C


def _params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("width", ["model", "full"])
def test_shared_self_attention_width_sets_the_projections_heads_and_parameter_count(width):
    """Default "model": 5 projections 2C -> C, output C -> 2C, heads of C/H; "full": all 2C -> 2C, heads
    of 2C/H. Catches the option being ignored, the output projection left at C (the split into halves
    would then fail) or the LayerNorm after the residual moved to C."""
    layer = DisentangledDecoderLayer(C, H, F, 0.0, num_branches=2, shared_self_attn=True, self_attn_width=width)
    sa = layer.self_attn[0]
    attn = C if width == "model" else 2 * C
    assert sa.attn_dim == attn and sa.nhead == H and sa.attn_dim // sa.nhead == (C // H if width == "model" else 2 * C // H)
    for proj in (sa.qcontent_proj, sa.qpos_proj, sa.kcontent_proj, sa.kpos_proj, sa.v_proj):
        assert (proj.in_features, proj.out_features) == (2 * C, attn)
    assert (sa.out_proj.in_features, sa.out_proj.out_features) == (attn, 2 * C)
    assert layer.norm1[0].normalized_shape == (2 * C,)
    expected = 5 * (2 * C * C + C) + (C * 2 * C + 2 * C) if width == "model" else 6 * (2 * C * 2 * C + 2 * C)
    assert _params(sa) == expected


def _reference_self_attention(sa, x, pos):
    """Conditional DETR's self-attention written out: H heads of attn_dim / H, logits scaled by
    1 / sqrt(attn_dim / H)."""
    lin = lambda m, t: t @ m.weight.reshape(m.out_features, m.in_features).T + m.bias  # noqa: E731
    q = lin(sa.qcontent_proj, x) + lin(sa.qpos_proj, pos)
    k = lin(sa.kcontent_proj, x) + lin(sa.kpos_proj, pos)
    v = lin(sa.v_proj, x)
    b, n, a = q.shape
    d = a // sa.nhead
    heads = lambda t: t.reshape(b, n, sa.nhead, d).transpose(1, 2)  # noqa: E731
    weights = (heads(q) @ heads(k).transpose(-2, -1) / d ** 0.5).softmax(-1)
    return lin(sa.out_proj, (weights @ heads(v)).transpose(1, 2).reshape(b, n, a))


@pytest.mark.parametrize("width", ["model", "full"])
def test_shared_self_attention_is_multi_head_attention_with_heads_of_attn_dim_over_nhead(width):
    """Catches a wrong head split or scale at the reduced width (e.g. heads of 2C/H on C channels, or
    1/sqrt(2C/H) scaling): the output must equal the written-out attention."""
    layer = DisentangledDecoderLayer(C, H, F, 0.0, num_branches=2, self_attn_width=width).eval()
    sa = layer.self_attn[0]
    g = torch.Generator().manual_seed(3)
    x, pos = torch.randn(2, 5, 2 * C, generator=g), torch.randn(2, 5, 2 * C, generator=g)
    with torch.no_grad():
        for m in (sa.qcontent_proj, sa.kcontent_proj, sa.out_proj):
            m.bias.normal_(generator=g)  # non-zero biases so a missing one shows
        assert torch.allclose(sa(x, pos), _reference_self_attention(sa, x, pos), atol=1e-5)


@pytest.mark.parametrize("branches,shared", [(("shared",), True), (("cls", "loc"), False)])
def test_self_attention_width_does_not_change_the_one_branch_or_split_decoders(branches, shared):
    """Their self-attentions are C wide in both settings: same parameters (same seed) and outputs.
    Catches "full" widening a one-branch or per-branch self-attention."""
    model, full = _decoder(branches, shared, width="model"), _decoder(branches, shared, width="full")
    a, b = model.state_dict(), full.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    q = _queries(branches)
    assert torch.equal(model(_memory(), q).hidden, full(_memory(), q).hidden)


def test_unknown_self_attention_width_is_rejected_with_its_value():
    with pytest.raises(ValueError, match="'half'"):
        _decoder(width="half")


def test_one_branch_layer_is_conditional_detrs_decoder_layer():
    torch.manual_seed(0)
    ours = DisentangledDecoderLayer(C, H, F, 0.0, num_branches=1).eval()
    ref = ConditionalDecoderLayer(C, H, F, 0.0, add_query_pos=False).eval()
    state = {k.replace(".0.", ".", 1) if k.split(".")[1] == "0" else k: v for k, v in ours.state_dict().items()}
    ref.load_state_dict(state, strict=True)
    mem = _memory()
    g = torch.Generator().manual_seed(2)
    tgt, pos, spatial = (torch.randn(2, 5, C, generator=g) for _ in range(3))
    assert torch.allclose(ours([tgt], [pos], [spatial], mem)[0], ref(tgt, pos, spatial, mem), atol=1e-6)


def test_references_are_the_anchors_and_each_branch_reference_is_shifted_by_its_offset():
    q = _queries(("cls", "loc"))
    q.offsets = {"cls": torch.full((2, 5, 2), 0.05), "loc": torch.full((2, 5, 2), -0.03)}
    out = _decoder()(_memory(), q)
    assert out.references.shape == (2, 2, 5, 4)
    assert torch.equal(out.references[0], q.anchors) and torch.equal(out.references[1], q.anchors)
    pts = out.extra["reference_points"]
    assert torch.allclose(pts["cls"][0], (q.anchors[..., :2] + 0.05).clamp(0, 1))
    assert torch.allclose(pts["loc"][1], (q.anchors[..., :2] - 0.03).clamp(0, 1))


def test_offsets_change_the_branch_outputs_through_the_positional_embedding():
    q = _queries(("cls", "loc"))
    dec, mem = _decoder(), _memory()
    base = dec(mem, q)
    q.offsets = {"cls": torch.zeros(2, 5, 2), "loc": torch.full((2, 5, 2), 0.1)}
    moved = dec(mem, q)
    assert not torch.allclose(base.box_hidden, moved.box_hidden)


def test_first_layer_spatial_query_is_the_sine_embedding_of_the_reference():
    q = _queries(("cls", "loc"))
    dec = _decoder(layers=1)
    set_batched_branches(dec, False)  # the hook reads the loc branch's cross-attention call
    seen = {}
    dec.layers[0].cross_attn[1].register_forward_hook(lambda m, args, out: seen.setdefault("spatial", args[3]))
    dec(_memory(), q)
    assert torch.allclose(seen["spatial"], sine_embedding(q.anchors[..., :2], C // 2))


def test_anchor_refinement_uses_each_layers_predicted_boxes():
    q = _queries(("cls", "loc"))
    head = _box_head()
    out = _decoder(refine=True, layers=3)(_memory(), q, box_head=head)
    assert torch.equal(out.references[0], q.anchors)
    for i in range(2):
        expected = (head(out.box_hidden[i]) + inverse_sigmoid(out.references[i])).sigmoid()
        assert torch.allclose(out.references[i + 1], expected, atol=1e-6)
    assert not out.references.requires_grad


def test_without_refinement_box_head_is_not_needed_and_with_it_is_required():
    q = _queries(("cls", "loc"))
    with pytest.raises(ValueError):
        _decoder(refine=True)(_memory(), q)


def test_heads_read_their_own_branch_and_one_branch_feeds_both():
    q = _queries(("cls", "loc"))
    out = _decoder()(_memory(), q)
    assert out.hidden.shape == out.box_hidden.shape == (2, 2, 5, C)
    assert not torch.allclose(out.hidden, out.box_hidden)
    shared = _decoder(branches=("shared",))(_memory(), _queries(("shared",)))
    assert shared.box_hidden is None and shared.hidden.shape == (2, 2, 5, C)
