"""SD-DETR's disentangled decoder: the shared self-attention mixes the branches (the split decoder does
not), one branch is exactly Conditional DETR's layer, references come from the anchors and offsets,
optional anchor refinement, and the heads read their own branch."""
import pytest
import torch

from sd_detr.layers import MLP, inverse_sigmoid, sine_embedding
from sd_detr.modeling import EncoderMemory
from sd_detr.modeling.decoder import ConditionalDecoderLayer, DisentangledDecoder, DisentangledDecoderLayer

C, H, F = 16, 2, 32


def _memory(bsz=2, h=3, w=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    memory = torch.randn(bsz, h * w, C, generator=g)
    mask = torch.zeros(bsz, h * w, dtype=torch.bool)
    mask[1, -2:] = True
    return EncoderMemory(memory=memory, pos=torch.randn(bsz, h * w, C, generator=g), mask=mask, spatial_shape=(h, w),
                         stride=32, image_sizes=torch.tensor([[96.0, 128.0], [96.0, 96.0]]))


def _queries(branches, bsz=2, nq=5, seed=1, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    anchors = torch.cat([torch.rand(bsz, nq, 2, generator=g) * 0.6 + 0.2, torch.rand(bsz, nq, 2, generator=g) * 0.3 + 0.1], -1)
    content = {b: torch.randn(bsz, nq, C, generator=g, requires_grad=requires_grad) for b in branches}
    return {"anchors": anchors, "content": content}


def _decoder(branches=("cls", "loc"), shared_self_attn=True, refine=False, layers=2):
    torch.manual_seed(0)
    return DisentangledDecoder(num_layers=layers, d_model=C, nhead=H, dim_feedforward=F, dropout=0.0,
                               branches=branches, shared_self_attn=shared_self_attn, refine_anchors=refine).eval()


def _box_head():
    torch.manual_seed(5)
    return MLP(C, C, 4, 3)


def test_box_output_gradient_reaches_the_classification_query_through_the_shared_self_attention():
    q = _queries(("cls", "loc"), requires_grad=True)
    out = _decoder()(_memory(), q)
    _box_head()(out.box_hidden[-1]).sum().backward()
    assert q["content"]["cls"].grad.abs().sum() > 0
    assert q["content"]["loc"].grad.abs().sum() > 0


def test_split_decoder_keeps_the_branches_apart():
    q = _queries(("cls", "loc"), requires_grad=True)
    out = _decoder(shared_self_attn=False)(_memory(), q)
    _box_head()(out.box_hidden[-1]).sum().backward()
    assert q["content"]["cls"].grad is None or torch.all(q["content"]["cls"].grad == 0)
    assert q["content"]["loc"].grad.abs().sum() > 0


def test_shared_self_attention_is_one_attention_over_the_2c_concatenation():
    layer = DisentangledDecoderLayer(C, H, F, 0.0, num_branches=2, shared_self_attn=True)
    assert len(layer.self_attn) == 1 and layer.self_attn[0].qcontent_proj.in_features == 2 * C
    assert layer.norm1[0].normalized_shape == (2 * C,)
    assert len(layer.cross_attn) == 2 and len(layer.ffn) == 2 and len(layer.norm2) == 2
    split = DisentangledDecoderLayer(C, H, F, 0.0, num_branches=2, shared_self_attn=False)
    assert len(split.self_attn) == 2 and split.self_attn[0].qcontent_proj.in_features == C


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
    q["offsets"] = {"cls": torch.full((2, 5, 2), 0.05), "loc": torch.full((2, 5, 2), -0.03)}
    out = _decoder()(_memory(), q)
    assert out.references.shape == (2, 2, 5, 4)
    assert torch.equal(out.references[0], q["anchors"]) and torch.equal(out.references[1], q["anchors"])
    pts = out.extra["reference_points"]
    assert torch.allclose(pts["cls"][0], (q["anchors"][..., :2] + 0.05).clamp(0, 1))
    assert torch.allclose(pts["loc"][1], (q["anchors"][..., :2] - 0.03).clamp(0, 1))


def test_offsets_change_the_branch_outputs_through_the_positional_embedding():
    q = _queries(("cls", "loc"))
    dec, mem = _decoder(), _memory()
    base = dec(mem, q)
    q["offsets"] = {"cls": torch.zeros(2, 5, 2), "loc": torch.full((2, 5, 2), 0.1)}
    moved = dec(mem, q)
    assert not torch.allclose(base.box_hidden, moved.box_hidden)


def test_first_layer_spatial_query_is_the_sine_embedding_of_the_reference():
    q = _queries(("cls", "loc"))
    dec = _decoder(layers=1)
    seen = {}
    dec.layers[0].cross_attn[1].register_forward_hook(lambda m, args, out: seen.setdefault("spatial", args[3]))
    dec(_memory(), q)
    assert torch.allclose(seen["spatial"], sine_embedding(q["anchors"][..., :2], C // 2))


def test_anchor_refinement_uses_each_layers_predicted_boxes():
    q = _queries(("cls", "loc"))
    head = _box_head()
    out = _decoder(refine=True, layers=3)(_memory(), q, box_head=head)
    assert torch.equal(out.references[0], q["anchors"])
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
