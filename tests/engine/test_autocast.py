"""One training step of each tiny detector under CPU bfloat16 autocast against the float32 step (issue 24).

Mixed precision runs the convolutions, linears and attention products in bfloat16 (float16 on CUDA with
``train.amp.enabled=True``, see docs/benchmarks.md); the losses (focal, task-alignment, L1, GIoU:
``sd_detr/modeling/losses.py``) and the matcher's costs (``HungarianMatcher.cost_matrix``) are computed in
float32 from the low-precision predictions. The test catches a loss or cost left in bfloat16 (a
``(1 - p_t)^gamma`` of 8-bit-mantissa scores), a NaN/inf under autocast, and a step that autocast breaks.

Tolerance, from measurement (batch seeds 0-2, ``python -m tests.engine.test_autocast``): every loss term
within a relative 5e-2 of float32 (measured at most 2.3e-2, SMCA-DETR's GIoU for seed 2; otherwise at
most 1.7e-2). The matching is identical in every stage for the test's batch (seed 0) and for seed 1;
for seed 2 SMCA-DETR's bfloat16 step matches 2 of 3 stages differently (near-equal costs), so the
matching is compared for seed 0 only.

SD-DETR: the mini-detector's top-N ranks the scores of an untrained head, all near the prior and many
nearly equal, which bfloat16 rounding reorders (seed 1: another set of locations in one image, so other
decoder queries and class losses 59% apart). The test therefore replays the float32 step's top-N in the
bfloat16 step, so that both compare the same queries; the mini-detector's own dense losses need no replay.
"""
import os

import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from sd_detr.modeling.queries.mini_detector import MiniDetectorQueries
from tests.utils import project_configs, random_batch

TINY = {os.path.basename(p).replace("_tiny_synthetic.py", ""): p for p in project_configs("*_tiny_synthetic.py")}
REL_TOL = 5e-2


def _match_rows(assignments):
    return [sorted(zip(a.cls_batch.tolist(), a.cls_query.tolist(), a.cls_label.tolist())) for a in assignments]


def training_step(model, batch, bf16: bool, replay_index=None):
    """Losses (detached), per stage matched (batch, query, label) rows, the mini-detector's top-N index
    (or None) and whether every gradient is finite, after forward + backward (optionally under autocast;
    ``replay_index``: the top-N to use instead of the mini-detector's own)."""
    model.zero_grad(set_to_none=True)
    rec = {}
    assigner = model.criterion.assigner
    orig_assign, orig_select = assigner.forward, MiniDetectorQueries.select

    def assign(stages, targets, matcher):
        out = orig_assign(stages, targets, matcher)
        rec["matches"] = _match_rows(out)
        return out

    def select(self, logits, mask):
        rec["index"] = orig_select(self, logits, mask) if replay_index is None else replay_index
        return rec["index"]

    assigner.forward = assign
    MiniDetectorQueries.select = select
    try:
        torch.manual_seed(5)  # the same dropout masks in both steps
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            losses = model(batch)
        sum(losses.values()).backward()
    finally:
        del assigner.forward
        MiniDetectorQueries.select = orig_select
    grads_finite = all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    return {k: v.detach() for k, v in losses.items()}, rec["matches"], rec.get("index"), grads_finite


def compare(name, seed=0):
    cfg = LazyConfig.load(TINY[name])
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    batch = random_batch(cfg.model.num_classes, sizes=((96, 128), (128, 96)), seed=seed)
    l32, m32, index, ok32 = training_step(model, batch, bf16=False)
    l16, m16, _, ok16 = training_step(model, batch, bf16=True, replay_index=index)
    return l32, l16, m32, m16, ok32, ok16


@pytest.mark.parametrize("name", sorted(TINY))
def test_bf16_autocast_step_is_finite_and_close_to_float32(name):
    """Catches a loss or matching cost computed in bfloat16 (class losses drift), a NaN/inf or a
    non-finite gradient under autocast, a loss term lost or added, and a matching changed by autocast."""
    l32, l16, m32, m16, ok32, ok16 = compare(name)
    assert l16.keys() == l32.keys()
    assert ok32 and ok16, "a non-finite gradient"
    for k in l32:
        assert l16[k].dtype == torch.float32, (k, l16[k].dtype)
        assert torch.isfinite(l16[k]), (k, l16[k])
        rel = abs(float(l16[k]) - float(l32[k])) / max(abs(float(l32[k])), 1e-6)
        assert rel <= REL_TOL, f"{name}: {k} bf16 {float(l16[k]):.6g} vs fp32 {float(l32[k]):.6g} (rel {rel:.3g})"
    assert m16 == m32, f"{name}: bf16 autocast changed the matching"


def test_bf16_predictions_reach_the_losses_as_float32():
    """The losses themselves cast to float32: a bfloat16 classification loss (``.float()`` dropped) gives
    another value than the float32 one on the same bfloat16 logits."""
    from sd_detr.modeling.losses import FocalLoss, TaskAlignmentLoss, box_losses
    from sd_detr.modeling.structures import Assignment

    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(2, 5, 3, generator=g) * 3).to(torch.bfloat16)
    boxes = (torch.rand(2, 5, 4, generator=g) * 0.5 + 0.25).to(torch.bfloat16)
    b, q, lab = torch.tensor([0, 1]), torch.tensor([1, 3]), torch.tensor([2, 0])
    tgt = torch.tensor([[0.5, 0.5, 0.3, 0.3], [0.4, 0.6, 0.2, 0.4]])
    a = Assignment(b, q, lab, tgt, b, q, tgt)
    for loss in (FocalLoss(), TaskAlignmentLoss()):
        got = loss(logits, boxes, a, 2.0)
        want = loss(logits.float(), boxes.float(), a, 2.0)
        assert got.dtype == torch.float32 and torch.equal(got, want), type(loss).__name__
    for k, v in box_losses(boxes, a, 2.0).items():
        assert v.dtype == torch.float32 and torch.equal(v, box_losses(boxes.float(), a, 2.0)[k]), k


if __name__ == "__main__":  # measuring: python -m tests.engine.test_autocast
    for n in sorted(TINY):
        for s in (0, 1, 2):
            l32, l16, m32, m16, ok32, ok16 = compare(n, s)
            rel = {k: abs(float(l16[k]) - float(l32[k])) / max(abs(float(l32[k])), 1e-6) for k in l32}
            worst = max(rel, key=rel.get)
            same = [a == b for a, b in zip(m32, m16)]
            print(f"{n} seed {s}: max rel {rel[worst]:.3g} ({worst}), matching same per stage {same}, "
                  f"grads finite {ok32 and ok16}")
