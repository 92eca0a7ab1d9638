"""sd_detr/engine/accel.py: the CPU speed-ups are applied from outside the model, by the tools, change
neither the state dict nor the outputs (issue 12), and are state of the model they were applied to, not
of the process (issue 23)."""
import copy
import importlib

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import LazyConfig, instantiate

from sd_detr.engine.accel import optimize_for_cpu
from sd_detr.model_zoo import detectors, get_config_file

from ..utils import random_batch

# by module path: ``sd_detr.layers.linear`` as an attribute is the function the package re-exports
linear_module = importlib.import_module("sd_detr.layers.linear")
attention_core = importlib.import_module("sd_detr.attention.core")

# every registered detector's tiny config, by project name
TINY = {d.name: get_config_file(d.tiny) for d in detectors()}


def _build(name):
    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(TINY[name]).model)
    with torch.no_grad():  # boxes that depend on the box head (its last layer starts at 0)
        model.bbox_embed.layers[-1].weight.normal_(0, 0.1)
    return model


def _flags(model, name):
    """The values of the per-module switch ``name`` over ``model``'s modules (those that carry it)."""
    return [getattr(m, name) for m in model.modules() if isinstance(getattr(m, name, None), bool)]


def _switched(model, on):
    return all(f is on for name in ("onednn_linear", "value_padding") for f in _flags(model, name))


def test_the_model_code_is_plain_pytorch_until_a_tool_applies_the_speed_ups():
    """Bug caught: a speed-up switched on by the constructor (or an environment variable read by the
    model code), or a model whose layers carry no switch at all (optimize_for_cpu would do nothing)."""
    model = _build("conditional_detr")
    assert len(_flags(model, "onednn_linear")) > 10 and len(_flags(model, "value_padding")) >= 2
    assert _switched(model, False)
    assert not model.channels_last and model.backbone.stem.conv1.weight.is_contiguous()


def test_optimize_for_cpu_switches_every_speed_up_on_and_the_environment_or_arguments_off(monkeypatch):
    """Bug caught: one of the three not applied, or SD_DETR_CPU_ACCEL=0 / the keyword ignored."""
    model = _build("conditional_detr")
    assert optimize_for_cpu(model) == {"onednn_linear": True, "value_padding": True, "channels_last": True}
    assert _switched(model, True) and model.channels_last
    conv = model.backbone.stem.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert model.input_proj.weight.is_contiguous(memory_format=torch.channels_last)
    assert optimize_for_cpu(model, channels_last=False)["channels_last"] is False
    assert not model.channels_last and model.backbone.stem.conv1.weight.is_contiguous()
    monkeypatch.setenv("SD_DETR_CPU_ACCEL", "0")
    assert optimize_for_cpu(model) == {"onednn_linear": False, "value_padding": False, "channels_last": False}
    assert _switched(model, False)
    monkeypatch.setenv("SD_DETR_CPU_ACCEL", "1")
    monkeypatch.setenv("SD_DETR_ONEDNN_LINEAR", "0")
    assert optimize_for_cpu(model)["onednn_linear"] is False
    assert not any(_flags(model, "onednn_linear")) and all(_flags(model, "value_padding"))


@pytest.mark.parametrize("name", sorted(TINY))
def test_the_speed_ups_keep_the_state_dict_and_the_outputs_within_1e_5(name):
    """Bug caught: a speed-up that changes a value (a transposed channels-last view, padding left in the
    output, a bias dropped in the convolution path) or a state-dict key."""
    plain, fast = _build(name).eval(), _build(name).eval()
    optimize_for_cpu(fast)
    assert plain.state_dict().keys() == fast.state_dict().keys()
    for k, v in plain.state_dict().items():
        assert torch.equal(v, fast.state_dict()[k]), k
    batch = random_batch(5, with_instances=False)
    with torch.no_grad():
        optimize_for_cpu(plain, onednn_linear=False, value_padding=False, channels_last=False)
        ref, _, _ = plain.forward_outputs(batch)
        optimize_for_cpu(fast)
        got, _, _ = fast.forward_outputs(batch)
    assert torch.allclose(got["pred_logits"], ref["pred_logits"], atol=1e-5)
    assert torch.allclose(got["pred_boxes"], ref["pred_boxes"], atol=1e-5)


def test_the_speed_ups_are_on_the_paths_the_tools_take(monkeypatch):
    """Bug caught: optimize_for_cpu defined but not called where the tools build their model, so every
    command runs the plain (on AMD CPUs about 1.5x slower) kernels."""
    from sd_detr.engine.train_loop import build_model

    cfg = LazyConfig.load(TINY['conditional_detr'])
    model = build_model(cfg)
    assert model.channels_last and _switched(model, True)
    calls = []
    monkeypatch.setattr(F, "conv2d", lambda *a, **k: calls.append(a[1].shape) or torch.ops.aten.conv2d(*a, **k))
    with torch.no_grad():
        model.eval()(random_batch(5, with_instances=False))
    # the class head (Linear 64 -> 5) ran as a 1x1 convolution
    assert any(tuple(s) == (5, 64, 1, 1) for s in calls)


def _count_fast_kernels(monkeypatch):
    """Count the calls of the two fast kernels (the oneDNN linear, the padded-value attention)."""
    calls = {"linear": 0, "padding": 0}

    def spy(key, fn):
        def counted(*args, **kwargs):
            calls[key] += 1
            return fn(*args, **kwargs)
        return counted

    monkeypatch.setattr(linear_module, "_linear_as_conv", spy("linear", linear_module._linear_as_conv))
    monkeypatch.setattr(attention_core, "_sdpa_with_padded_values",
                        spy("padding", attention_core._sdpa_with_padded_values))
    return calls


def test_applying_the_speed_ups_to_one_model_leaves_another_model_in_the_process_plain(monkeypatch):
    """Bug caught: a process-wide switch (a module-level flag, or a class attribute of Linear / the
    attention modules) set by optimize_for_cpu, so that a model it was never applied to (built before
    or after) runs the oneDNN linear and the padded attention too (issue 23)."""
    before = _build("conditional_detr").eval()
    fast = _build("conditional_detr").eval()
    assert optimize_for_cpu(fast) == {"onednn_linear": True, "value_padding": True, "channels_last": True}
    after = _build("conditional_detr").eval()
    for plain in (before, after):
        assert _switched(plain, False) and not plain.channels_last
    assert _switched(fast, True) and _switched(copy.deepcopy(fast), True)  # e.g. an EMA copy keeps them
    calls = _count_fast_kernels(monkeypatch)
    batch = random_batch(5, with_instances=False)
    with torch.no_grad():
        for plain in (before, after):
            plain.forward_outputs(batch)
        assert calls == {"linear": 0, "padding": 0}
        fast.forward_outputs(batch)
    assert calls["linear"] > 0 and calls["padding"] > 0
    optimize_for_cpu(fast, onednn_linear=False, value_padding=False)  # and switched off again per model
    assert _switched(fast, False)
