"""Every part a shipped configuration builds takes part in its training step.

The bug this file catches: a module that a configuration builds but bypasses. Its parameters exist, are
counted, saved and loaded, but another module does its work (e.g. SD-DETR's localisation branch calling
the classification branch's FFN), or its result is computed and then dropped (e.g. Conditional DETR's
``query_scale`` evaluated but the unscaled position embedding passed on). Parameter-count and
state-dict tests cannot see either; here the bypassed parameters get no gradient (``None``) or an
all-zero one, and a bypassed module is never called, and the failure names them.

The configurations are enumerated, not listed: every ``projects/*/configs/*.py`` and
``projects/*/configs/ablations/*.py`` (so the DC5, multi-scale, stage-assigner, tiny-synthetic and
ablation configs, and any config added later), plus every row of ``sd_detr.ablations.TABLES`` that changes
the model by ``model.*`` overrides (the SD-DETR repeat-placement rows, the assigner's
``keep_own_matches`` rows). Each model is shrunk to ``sd_detr.config.SIZES["test"]`` (same structure:
its norm, feature level, number of classes and every switch kept) but keeps the config's own
``freeze_at``, so that the frozen set is the config's. Configurations whose shrunk model configs are
equal (e.g. 12 and 50 epochs: only the schedule differs) are one case, compared by the resolved model
node, not by file name.
"""
import json
import os

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from omegaconf import OmegaConf
from torch import nn

from sd_detr.ablations import TABLES
from sd_detr.config import apply_size
from sd_detr.modeling.backbone import FrozenBNConv2d
from sd_detr.modeling.meta_arch.sd_detr import set_batched_branches

from ..utils import REPO, project_configs, random_batch

# The only place where a Linear may legitimately see an all-zero input: the first decoder layer's
# self-attention content and value projections, when the query initialiser's content queries are
# zeros, as in the official Conditional DETR (``models/transformer.py:87``: ``tgt =
# torch.zeros_like(query_embed)``) and DAB-DETR without patterns (``models/DAB_DETR/transformer.py:
# 126-129``); SMCA-DETR's content starts at zero too, but its fused ``in_proj_weight`` also projects the
# non-zero queries and keys. The weights of those three projections then only ever multiply zeros (their
# gradient is the outer product with that input), yet they are in the official checkpoints
# (sd_detr/checkpoint/convert.py maps ``sa_qcontent_proj``, ``sa_kcontent_proj``, ``sa_v_proj`` of every
# layer), so they stay built. The test checks, by hooks, that their input really was zero in every call
# rather than trusting names, and a zero-fed Linear anywhere else fails.
ZERO_INPUT_ALLOWED = ("decoder.layers.0.self_attn.",)


def _variants():
    """(label, config path, model overrides) of every shipped configuration."""
    paths = project_configs("*.py") + project_configs(os.path.join("ablations", "*.py"))
    out = [(os.path.relpath(p, REPO), p, ()) for p in paths]
    seen = set()
    for table in TABLES.values():
        for row in table.rows:
            overrides = tuple(o for o in row.overrides if o.startswith("model."))
            if overrides and (row.config, overrides) not in seen:
                seen.add((row.config, overrides))
                out.append((f"{row.config}[{','.join(overrides)}]", os.path.join(REPO, row.config), overrides))
    return out


def _canonical(node):
    """A JSON string of a resolved model config (callables by their qualified name)."""
    def default(obj):
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"

    return json.dumps(OmegaConf.to_container(node, resolve=True), sort_keys=True, default=default)


def _shrunk_model_config(path, overrides):
    cfg = LazyConfig.load(path)
    if overrides:
        cfg = LazyConfig.apply_overrides(cfg, list(overrides))
    freeze_at = cfg.model.backbone.get("freeze_at", 0)
    apply_size(cfg.model, "test")
    cfg.model.backbone.freeze_at = freeze_at  # the config's own frozen stages, not the test size's 0
    return cfg.model


def _cases():
    """One pytest param (shrunk model config, labels of the configs that build the same model) per
    distinct shrunk model config; its id is the first of those configs."""
    groups = {}
    for label, path, overrides in _variants():
        model_cfg = _shrunk_model_config(path, overrides)
        groups.setdefault(_canonical(model_cfg), (model_cfg, []))[1].append(label)
    return [pytest.param(model_cfg, labels, id=labels[0]) for model_cfg, labels in groups.values()]


CASES = _cases()


def _expected_frozen_prefixes(freeze_at):
    """Detectron2's ``ResNet.freeze(freeze_at)``: the stem at 1, then res2 .. res{freeze_at}."""
    return (["backbone.stem."] if freeze_at >= 1 else []) + [f"backbone.res{k}." for k in range(2, freeze_at + 1)]


def _hooked_modules(model):
    """Leaf modules and modules with parameters of their own, by name. Left out: a FrozenBatchNorm2d
    folded into its convolution (``FrozenBNConv2d`` reads its buffers instead of calling it)."""
    folded = {id(m.norm) for m in model.modules() if isinstance(m, FrozenBNConv2d)}
    out = {}
    for name, m in model.named_modules():
        if id(m) in folded:
            continue
        if not list(m.children()) or any(True for _ in m.parameters(recurse=False)):
            out[name] = m
    return out


def _may_go_uncalled(hooked, criterion_inputs):
    """Names of hooked modules that may legitimately go uncalled, each for a reason checked here:
    - an ``nn.Embedding`` is a table read through its ``.weight`` (the object queries, official
      ``query_embed.weight``), never called; its reach is its weight's gradient, checked below;
    - ``criterion.extra_class_loss`` (parameterless) serves the extra heads' predictions only
      (``outputs["extra_outputs"]``, SD-DETR's mini-detector), so it may go uncalled only when the
      detector handed the criterion none."""
    allowed = {n for n, m in hooked.items() if isinstance(m, nn.Embedding)}
    if not any(out.get("extra_outputs") for out in criterion_inputs):
        allowed.add("criterion.extra_class_loss")
    return allowed


def test_every_variant_is_a_case_and_distinct_models_stay_apart():
    """The dedup keeps one case per distinct model: every shipped config is in some case, the full-size
    12- and 50-epoch Conditional DETR are one case, and its DC5 and stage-assigner twins are not
    merged into it (a dedup that merged everything would make the reach test check one model)."""
    ids = [c.id for c in CASES]
    covered = {label for c in CASES for label in c.values[1]}
    assert covered == {label for label, _, _ in _variants()}
    cond = "projects/conditional_detr/configs/conditional_detr_r50_12ep.py"
    case = next(c for c in CASES if c.id == cond)
    assert "projects/conditional_detr/configs/conditional_detr_r50_50ep.py" in case.values[1]
    for twin in ("conditional_detr_r50_dc5_12ep.py", "conditional_detr_r50_12ep_stage_assigner.py",
                 "conditional_detr_tiny_synthetic.py"):
        assert f"projects/conditional_detr/configs/{twin}" in ids
    # the repeat-placement rows of run_ablations are their own cases
    assert any("repeat_stages=null" in i for i in ids) and any("num_repeats=1" in i for i in ids)


@pytest.mark.parametrize("model_cfg,configs", CASES)
def test_every_trainable_parameter_gets_a_gradient_and_every_module_runs(model_cfg, configs):
    """One training step reaches every part the config builds.

    Checks, on a random padded batch of two images (model in train mode):
    - the frozen parameters are exactly the backbone stages of the config's ``freeze_at`` (so a model
      cannot pass by freezing everything) and nothing else;
    - every leaf module and every module with parameters is called in the forward pass;
    - step 1: every trainable parameter is in the graph (its gradient is not None) and finite;
    - step 2, after one AdamW step (lr 1e-4): every trainable parameter's gradient is finite and not
      all zero.

    Why two steps: several parts are zero at initialisation by design and block the gradient to what
    precedes them in the first step only: the box head's last layer (Conditional DETR, DAB-DETR, the
    mini-detector's box branch), and SMCA's first self-attention, whose values and output bias start at
    zero on zero content queries. One optimiser step moves every parameter that had a gradient, so at
    the second step every path that exists carries one. A bypassed parameter is outside the graph (None)
    or multiplied away at every step, so the check stays exact without weakening it for every model
    (no tolerance, no per-name exemption). The one exemption is a weight of
    :data:`ZERO_INPUT_ALLOWED` whose input was exactly zero in every call (seen by a hook): its
    gradient is the outer product with that zero input.
    """
    torch.manual_seed(0)
    model = instantiate(model_cfg).train()

    # frozen set = what the config asks for
    freeze_at = model_cfg.backbone.get("freeze_at", 0)
    prefixes = _expected_frozen_prefixes(freeze_at)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    expected = {n for n, _ in model.named_parameters() if n.startswith(tuple(prefixes))} if prefixes else set()
    assert frozen == expected, (f"freeze_at={freeze_at}: frozen but not asked: {sorted(frozen - expected)}; "
                                f"asked but trainable: {sorted(expected - frozen)}")
    for prefix in prefixes:  # each stage freeze_at names exists and has parameters
        assert any(n.startswith(prefix) for n in frozen), f"freeze_at={freeze_at}: no parameters under {prefix}"
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable

    # hooks: which modules run, and which Linears only ever see an all-zero input
    called, nonzero_input = set(), set()
    hooked = _hooked_modules(model)

    def make_hook(name):
        def hook(module, inputs, output):
            called.add(name)
            if isinstance(module, nn.Linear) and inputs and torch.is_tensor(inputs[0]) and inputs[0].any():
                nonzero_input.add(name)
        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in hooked.items()]
    criterion_inputs = []
    handles.append(model.criterion.register_forward_pre_hook(lambda m, args: criterion_inputs.append(args[0])))
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-4)
    grads = []
    for step in range(2):
        # SD-DETR's branches: step 1 one after the other (every per-branch module is called, as the hooks
        # check), step 2 batched (the default: its gradients must reach every parameter too; the two paths
        # are equal, tests/modeling/test_batched_branches.py)
        set_batched_branches(model, step == 1)
        optimizer.zero_grad(set_to_none=True)
        losses = model(random_batch(model_cfg.num_classes, seed=step))
        total = sum(losses.values())
        assert torch.isfinite(total), {k: float(v) for k, v in losses.items()}
        total.backward()
        grads.append({n: None if p.grad is None else p.grad.detach().clone() for n, p in trainable.items()})
        optimizer.step()
    for h in handles:
        h.remove()

    problems = []
    never_called = sorted(set(hooked) - called - _may_go_uncalled(hooked, criterion_inputs))
    if never_called:
        problems.append(f"modules built but never called in a training step: {never_called}")
    no_grad = sorted(n for n, g in grads[0].items() if g is None)
    if no_grad:
        problems.append(f"trainable parameters outside the loss's graph (no gradient): {no_grad}")
    for step, g in enumerate(grads, 1):
        bad = sorted(n for n, t in g.items() if t is not None and not torch.isfinite(t).all())
        if bad:
            problems.append(f"step {step}: non-finite gradients: {bad}")
    zero_input = {f"{n}.weight" for n, m in hooked.items()
                  if isinstance(m, nn.Linear) and n in called and n not in nonzero_input}
    misplaced = sorted(n for n in zero_input if not n.startswith(ZERO_INPUT_ALLOWED))
    if misplaced:
        problems.append(f"Linear layers fed only zeros (their weights cannot learn): {misplaced}")
    zero = sorted(n for n, g in grads[1].items() if g is not None and not g.any() and n not in zero_input)
    if zero:
        problems.append(f"trainable parameters with an all-zero gradient after one optimiser step: {zero}")
    none2 = sorted(set(n for n, g in grads[1].items() if g is None) - set(no_grad))
    if none2:
        problems.append(f"step 2: trainable parameters with no gradient: {none2}")
    assert not problems, f"{configs}:\n" + "\n".join(problems)
