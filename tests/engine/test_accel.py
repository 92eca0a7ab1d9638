"""sd_detr/engine/accel.py: the CPU speed-ups are applied from outside the model, by the tools, and
change neither the state dict nor the outputs (issue 12)."""
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import LazyConfig, instantiate

from sd_detr.attention.core import value_padding_enabled
from sd_detr.engine.accel import optimize_for_cpu
from sd_detr.layers.linear import onednn_linear_enabled

from ..utils import REPO, random_batch

TINY = {
    "conditional": "projects/conditional_detr/configs/conditional_detr_tiny_synthetic.py",
    "dab": "projects/dab_detr/configs/dab_detr_tiny_synthetic.py",
    "smca": "projects/smca_detr/configs/smca_detr_tiny_synthetic.py",
    "sd_detr": "projects/sd_detr/configs/sd_detr_tiny_synthetic.py",
}


def _build(name):
    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(f"{REPO}/{TINY[name]}").model)
    with torch.no_grad():  # boxes that depend on the box head (its last layer starts at 0)
        model.bbox_embed.layers[-1].weight.normal_(0, 0.1)
    return model


def test_the_model_code_is_plain_pytorch_until_a_tool_applies_the_speed_ups():
    """Bug caught: a speed-up switched on at import (an environment variable read by the model code)
    or by the constructor."""
    code = ("import sd_detr, sd_detr.modeling; from sd_detr.layers.linear import onednn_linear_enabled; "
            "from sd_detr.attention.core import value_padding_enabled; "
            "print(onednn_linear_enabled(), value_padding_enabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split() == ["False", "False"]
    model = _build("conditional")
    assert not model.channels_last and model.backbone.stem.conv1.weight.is_contiguous()


def test_optimize_for_cpu_switches_every_speed_up_on_and_the_environment_or_arguments_off(monkeypatch):
    """Bug caught: one of the three not applied, or SD_DETR_CPU_ACCEL=0 / the keyword ignored."""
    model = _build("conditional")
    assert optimize_for_cpu(model) == {"onednn_linear": True, "value_padding": True, "channels_last": True}
    assert onednn_linear_enabled() and value_padding_enabled() and model.channels_last
    conv = model.backbone.stem.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert model.input_proj.weight.is_contiguous(memory_format=torch.channels_last)
    assert optimize_for_cpu(model, channels_last=False)["channels_last"] is False
    assert not model.channels_last and model.backbone.stem.conv1.weight.is_contiguous()
    monkeypatch.setenv("SD_DETR_CPU_ACCEL", "0")
    assert optimize_for_cpu(model) == {"onednn_linear": False, "value_padding": False, "channels_last": False}
    assert not onednn_linear_enabled() and not value_padding_enabled()
    monkeypatch.setenv("SD_DETR_CPU_ACCEL", "1")
    monkeypatch.setenv("SD_DETR_ONEDNN_LINEAR", "0")
    assert optimize_for_cpu(model)["onednn_linear"] is False and value_padding_enabled()


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

    cfg = LazyConfig.load(f"{REPO}/{TINY['conditional']}")
    model = build_model(cfg)
    assert model.channels_last and onednn_linear_enabled() and value_padding_enabled()
    calls = []
    monkeypatch.setattr(F, "conv2d", lambda *a, **k: calls.append(a[1].shape) or torch.ops.aten.conv2d(*a, **k))
    with torch.no_grad():
        model.eval()(random_batch(5, with_instances=False))
    # the class head (Linear 64 -> 5) ran as a 1x1 convolution
    assert any(tuple(s) == (5, 64, 1, 1) for s in calls)
