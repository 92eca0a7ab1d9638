"""SD-DETR's two branches as one batched computation (issue 24 §1) equal the per-branch reference.

The batched path (default, ``batched_branches = True`` on the decoder, its layers, the mini-detector and
task-aware query generation) stacks the branches' weights at each call; the reference runs one branch
after the other through the same modules (``set_batched_branches(model, False)``). Both read the same
parameters, so a deep copy with the reference switched on is the same model.

- Every SD-DETR row of Tables 2 and 3 at the test size, in training (losses, every prediction the
  criterion receives, every parameter's gradient) and in eval (every prediction, the decoder's hidden
  states and references, the task-aware queries, the final detections): within 1e-5.
- Each batched piece against its modules: cross-attention (with a padding mask, with and without the
  CPU speed-ups), FFN + norm, the mini-detector's towers (and GroupNorm's per-group statistics), TAQ's
  point heads.

Dropout is set to 0 for the training comparisons: the stack draws one mask for both branches where the
loop draws one per branch, so only the masks' distribution is shared (checked separately).
"""
import copy
import os

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from torch import nn

from sd_detr.attention import ConditionalCrossAttention, branch_cross_attention, can_batch_cross_attention
from sd_detr.config import apply_size
from sd_detr.engine.accel import optimize_for_cpu
from sd_detr.layers import FFN, branch_ffn, branch_layer_norm, branch_linear
from sd_detr.modeling.meta_arch.sd_detr import set_batched_branches
from sd_detr.modeling.queries.mini_detector import MiniDetector, batched_towers, can_batch_towers, conv_tower
from sd_detr.modeling.queries.task_aware import DiscriminativePointHead, batched_point_heads, can_batch_point_heads

from ..utils import REPO, random_batch

TOL = dict(rtol=1e-5, atol=1e-5)
SD = os.path.join(REPO, "projects", "sd_detr", "configs")
# label -> config: the SD-DETR rows of Tables 2 and 3 (sd_detr/ablations/tables.py) at their full-size configs
ROWS = {
    "table2_baseline_shared_decoder": os.path.join(SD, "ablations", "table2_baseline.py"),
    "table2_dfl_split_cross_attention": os.path.join(SD, "ablations", "table2_dfl.py"),
    "table2_taq": os.path.join(SD, "ablations", "table2_taq.py"),
    "table2_sd_detr": os.path.join(SD, "sd_detr_r50_50ep.py"),
    "table3_split_decoder": os.path.join(SD, "ablations", "table3_split_decoder.py"),
}


def _no_dropout(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        elif isinstance(getattr(m, "dropout", None), float):  # attention modules: a rate, not a module
            m.dropout = 0.0
    return model


def _pair(config: str, self_attn_width=None):
    """(batched model, reference copy) of ``config`` at the test size, seeded, dropout off."""
    cfg = LazyConfig.load(config)
    apply_size(cfg.model, "test")
    if self_attn_width is not None:
        cfg.model.decoder.self_attn_width = self_attn_width
    torch.manual_seed(0)
    model = _no_dropout(instantiate(cfg.model))
    ref = copy.deepcopy(model)
    assert set_batched_branches(ref, False) > 0 or not _two_branches(model)
    return model, ref


def _two_branches(model) -> bool:
    return len(model.decoder.branches) > 1


def _flat(x, prefix=""):
    """{path: tensor} of every tensor in nested dicts / lists / dataclass-like objects."""
    out = {}
    if torch.is_tensor(x):
        out[prefix] = x
    elif isinstance(x, dict):
        for k, v in x.items():
            out.update(_flat(v, f"{prefix}.{k}"))
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            out.update(_flat(v, f"{prefix}[{i}]"))
    return out


def _assert_all_close(a: dict, b: dict, what: str):
    assert a.keys() == b.keys(), what
    assert a, what
    for k in a:
        torch.testing.assert_close(a[k], b[k], **TOL, msg=lambda m, k=k: f"{what} {k}: {m}")


def _train_step(model, batch):
    captured = []
    handle = model.criterion.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    torch.manual_seed(1)
    model.train()
    losses = model(batch)
    handle.remove()
    sum(losses.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return losses, captured[0], grads


@pytest.mark.parametrize("row", sorted(ROWS))
def test_training_step_equals_the_per_branch_reference(row):
    """Losses, every prediction the criterion receives (all layers, the mini-detector's dense ones) and
    every trainable parameter's gradient: batched = per-branch within 1e-5."""
    model, ref = _pair(ROWS[row])
    batch = random_batch(model.num_classes if hasattr(model, "num_classes") else 80)
    losses, outputs, grads = _train_step(model, batch)
    ref_losses, ref_outputs, ref_grads = _train_step(ref, batch)
    _assert_all_close(losses, ref_losses, f"{row} losses")
    _assert_all_close(_flat(outputs), _flat(ref_outputs), f"{row} outputs")
    assert all(g is not None for g in ref_grads.values())
    assert grads.keys() == ref_grads.keys()
    for n in grads:
        assert grads[n] is not None, f"{row}: {n} has no gradient in the batched path"
        torch.testing.assert_close(grads[n], ref_grads[n], **TOL, msg=lambda m, n=n: f"{row} grad {n}: {m}")


def _eval_outputs(model, batch):
    model.eval()
    with torch.no_grad():
        outputs, _, dec = model.forward_outputs(batch)
        detections = model(batch)
    q = dec.extra["queries"]
    flat = _flat(outputs, "outputs")
    flat.update(_flat({"hidden": dec.hidden, "box_hidden": dec.box_hidden, "references": dec.references,
                       "points": dec.extra["reference_points"]}, "decoder"))
    flat.update(_flat({"content": q.branch_content, "offsets": q.offsets, "points": q.points}, "queries"))
    for i, d in enumerate(detections):
        inst = d["instances"]
        flat[f"det[{i}].scores"], flat[f"det[{i}].boxes"] = inst.scores, inst.pred_boxes.tensor
    return flat


@pytest.mark.parametrize("row", sorted(ROWS))
def test_eval_outputs_equal_the_per_branch_reference(row):
    model, ref = _pair(ROWS[row])
    batch = random_batch(80, with_instances=False)
    _assert_all_close(_eval_outputs(model, batch), _eval_outputs(ref, batch), f"{row} eval")


def test_full_width_self_attention_and_cpu_speedups_equal_the_reference():
    """SD-DETR with DESTR's full-width self-attention, with ``optimize_for_cpu`` applied to both
    models (oneDNN linear, value padding): the batched path honours the flags and stays equal."""
    model, ref = _pair(ROWS["table2_sd_detr"], self_attn_width="full")
    optimize_for_cpu(model)
    optimize_for_cpu(ref)
    assert model.decoder.layers[0].cross_attn[1].value_padding and model.decoder.layers[0].ffn[0].linear1.onednn_linear
    batch = random_batch(80)
    losses, _, grads = _train_step(model, batch)
    ref_losses, _, ref_grads = _train_step(ref, batch)
    _assert_all_close(losses, ref_losses, "losses")
    _assert_all_close(grads, ref_grads, "grads")
    _assert_all_close(_eval_outputs(model, batch), _eval_outputs(ref, batch), "eval")


def test_the_switch_is_per_model_and_reaches_every_batched_part():
    model, ref = _pair(ROWS["table2_sd_detr"])
    flags = {n: m.batched_branches for n, m in model.named_modules() if hasattr(m, "batched_branches")}
    assert {"decoder", "decoder.layers.0", "query_init.mini_detector", "query_init.task_aware"} <= set(flags)
    assert all(flags.values())
    assert not any(m.batched_branches for m in ref.modules() if hasattr(m, "batched_branches"))
    assert model.state_dict().keys() == ref.state_dict().keys()


# ---- the pieces ---------------------------------------------------------------------------------------


def _randomise(module: nn.Module, seed: int):
    """Non-trivial values for every parameter (the built-in zero biases would hide a dropped bias)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return module


def _grads(params):
    return [p.grad.clone() for p in params]


def _assert_equal_outputs_and_grads(batched, reference, params, inputs):
    """``batched()`` and ``reference()`` (same output shape) give the same output and, for one random
    output gradient, the same gradients of ``params`` and ``inputs`` (within TOL)."""
    out = batched()
    gout = torch.randn_like(out)
    (out * gout).sum().backward()
    got = _grads(params + inputs)
    for p in params + inputs:
        p.grad = None
    ref = reference()
    (ref * gout).sum().backward()
    torch.testing.assert_close(out, ref, **TOL)
    for a, b in zip(got, _grads(params + inputs)):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("speedups", [False, True])
def test_branch_cross_attention_equals_the_modules(speedups):
    torch.manual_seed(0)
    c, h, bsz, nq, n = 16, 4, 2, 5, 7
    mods = [_randomise(ConditionalCrossAttention(c, h), s) for s in (1, 2)]
    for m in mods:
        m.value_padding = m.qcontent_proj.onednn_linear = speedups
        for lin in m.modules():
            if hasattr(lin, "onednn_linear"):
                lin.onednn_linear = speedups
        m.eval()
    assert can_batch_cross_attention(mods)
    query, spatial = torch.randn(2, bsz, nq, c, requires_grad=True), torch.randn(2, bsz, nq, c, requires_grad=True)
    memory, pos = torch.randn(bsz, n, c, requires_grad=True), torch.randn(bsz, n, c)
    mask = torch.zeros(bsz, n, dtype=torch.bool)
    mask[1, -3:] = True
    _assert_equal_outputs_and_grads(
        lambda: branch_cross_attention(mods, query, memory, pos, spatial, key_padding_mask=mask),
        lambda: torch.stack([m(query[i], memory, pos, spatial[i], key_padding_mask=mask) for i, m in enumerate(mods)]),
        [p for m in mods for p in m.parameters()], [query, memory])


def test_branch_cross_attention_refuses_modules_it_cannot_batch():
    a, b = ConditionalCrossAttention(16, 4), ConditionalCrossAttention(16, 4)
    assert can_batch_cross_attention([a, b])
    b.record_attention = True  # per-module attention maps: the loop
    assert not can_batch_cross_attention([a, b])
    assert not can_batch_cross_attention([a, ConditionalCrossAttention(16, 2)])
    assert not can_batch_cross_attention([a, ConditionalCrossAttention(16, 4, add_query_pos=True)])


def test_branch_linear_equals_each_layer_and_honours_onednn():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 8, generator=g)
    w = [torch.randn(6, 8, generator=g) for _ in range(2)]
    b = [torch.randn(6, generator=g) for _ in range(2)]
    ref = torch.stack([torch.nn.functional.linear(x[i], w[i], b[i]) for i in range(2)])
    for onednn in (False, True):
        torch.testing.assert_close(branch_linear(x, w, b, onednn), ref, **TOL)
    torch.testing.assert_close(branch_linear(x, w, None), ref - torch.stack(b)[:, None, None], **TOL)


def test_branch_ffn_and_norm_equal_the_modules():
    torch.manual_seed(0)
    ffns = [_randomise(FFN(16, 24, dropout=0.0), s).eval() for s in (3, 4)]
    norms = [_randomise(nn.LayerNorm(16), s) for s in (5, 6)]
    x = torch.randn(2, 3, 4, 16, requires_grad=True)
    params = [p for m in ffns + norms for p in m.parameters()]
    gout = torch.randn(2, 3, 4, 16)
    out = branch_layer_norm(branch_ffn(x, ffns), norms)
    (out * gout).sum().backward()
    got = _grads(params) + [x.grad.clone()]
    for p in params + [x]:
        p.grad = None
    ref = torch.stack([norms[i](ffns[i](x[i])) for i in range(2)])
    (ref * gout).sum().backward()
    torch.testing.assert_close(out, ref, **TOL)
    for a, b in zip(got, _grads(params) + [x.grad]):
        torch.testing.assert_close(a, b, **TOL)


def test_branch_ffn_dropout_draws_masks_at_the_modules_rate():
    """In training the stack drops at the FFNs' rate (one mask over both branches)."""
    ffns = [FFN(8, 4000, dropout=0.5).train() for _ in range(2)]
    for f in ffns:
        with torch.no_grad():
            f.linear1.weight.fill_(0.01)
            f.linear1.bias.fill_(1.0)
    torch.manual_seed(0)
    h = []
    ffns[0].dropout.register_forward_hook(lambda m, i, o: h.append((o == 0).float().mean()))
    branch_ffn(torch.ones(2, 1, 8), ffns)
    assert abs(float(h[0]) - 0.5) < 0.02


def test_towers_as_grouped_convolutions_equal_the_towers():
    """First conv: one with 2C outputs; later: groups=2; GroupNorm with 2x groups over the joined
    channels: its per-group statistics are each tower's (checked directly), outputs and gradients equal."""
    torch.manual_seed(0)
    towers = [_randomise(conv_tower(16, 3, 4), s) for s in (7, 8)]
    assert can_batch_towers(towers)
    x = torch.randn(2, 16, 5, 6, requires_grad=True)
    _assert_equal_outputs_and_grads(lambda: batched_towers(towers, x), lambda: torch.cat([t(x) for t in towers], dim=1),
                                    [p for t in towers for p in t.parameters()], [x])
    # GroupNorm(2G, 2C) over [tower 0 | tower 1] = GroupNorm(G, C) of each half
    y = torch.randn(2, 32, 3, 3) * torch.arange(1, 33).view(1, 32, 1, 1)
    joined = nn.functional.group_norm(y, 8)
    torch.testing.assert_close(joined, torch.cat([nn.functional.group_norm(y[:, :16], 4),
                                                  nn.functional.group_norm(y[:, 16:], 4)], 1), **TOL)


def test_mini_detector_batched_equals_towers_in_turn():
    from ..utils import random_encoder_memory

    torch.manual_seed(0)
    det = _randomise(MiniDetector(16, num_classes=3, num_convs=2, norm_groups=4), 9)
    ref = copy.deepcopy(det)
    ref.batched_branches = False
    mem = random_encoder_memory(16)
    a, b = det(mem), ref(mem)
    for k in ("cls", "loc"):
        torch.testing.assert_close(a.features[k], b.features[k], **TOL)
    torch.testing.assert_close(a.logits, b.logits, **TOL)
    torch.testing.assert_close(a.boxes, b.boxes, **TOL)


def test_point_heads_batched_equal_each_head():
    torch.manual_seed(0)
    heads = [_randomise(DiscriminativePointHead(16, 4, 3, 4, 12, 3, 0.5), s) for s in (10, 11)]
    assert can_batch_point_heads(heads)
    rois = torch.randn(6, 16, 3, 3, requires_grad=True)
    _assert_equal_outputs_and_grads(lambda: batched_point_heads(heads, rois),
                                    lambda: torch.stack([hd(rois) for hd in heads]),
                                    [p for hd in heads for p in hd.parameters()], [rois])
