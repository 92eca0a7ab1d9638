import fvcore.nn
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sd_detr.attention import MultiheadAttention
from sd_detr.layers import Linear, linear


def _onednn_layer(*args, **kwargs):
    layer = Linear(*args, **kwargs)
    layer.onednn_linear = True  # as optimize_for_cpu sets it
    return layer


@pytest.mark.parametrize("shape", [(5, 16), (2, 7, 16), (2, 3, 4, 16), (1, 16)])
def test_onednn_linear_equals_f_linear_forward_and_gradients(shape):
    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=True)
    w = torch.randn(24, 16, requires_grad=True)
    b = torch.randn(24, requires_grad=True)
    ours = linear(x, w, b, onednn=True)
    ref = F.linear(x, w, b)
    assert ours.shape == ref.shape and ours.is_contiguous()
    assert torch.allclose(ours, ref, atol=1e-5)
    g = torch.randn_like(ref)
    got = torch.autograd.grad(ours, (x, w, b), g)
    want = torch.autograd.grad(ref, (x, w, b), g)
    for a, e in zip(got, want):
        assert torch.allclose(a, e, atol=1e-4)


def test_onednn_linear_without_bias_and_on_non_contiguous_inputs_gives_row_major_outputs():
    torch.manual_seed(0)
    w = torch.randn(8, 16)
    # [3, 5, 16] strided; [1, 7, 16] transposed from [1, 16, 7] (a feature map flattened, as the
    # mini-detector's heads read it), whose [1, C, M, 1] view is NCHW
    for x in (torch.randn(16, 5, 3).transpose(0, 2), torch.randn(1, 16, 7).transpose(1, 2)):
        y = linear(x, w, onednn=True)
        assert torch.allclose(y, F.linear(x, w), atol=1e-5)
        assert y.is_contiguous()
        y.view(-1)


def test_fallbacks_are_f_linear_exactly():
    torch.manual_seed(0)
    w64, x64 = torch.randn(8, 16, dtype=torch.float64), torch.randn(4, 16, dtype=torch.float64)
    assert torch.equal(linear(x64, w64, onednn=True), F.linear(x64, w64))  # other dtypes
    w = torch.randn(8, 16)
    assert linear(torch.randn(0, 16), w, onednn=True).shape == (0, 8)  # empty input
    x = torch.randn(4, 16)
    assert torch.equal(linear(x, w), F.linear(x, w))  # off unless the caller asks
    assert torch.equal(linear(x, w, onednn=False), F.linear(x, w))
    layer = Linear(16, 8)
    assert layer.onednn_linear is False and torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))


def test_linear_module_has_nn_linear_parameters_and_state_dict():
    torch.manual_seed(0)
    ours = _onednn_layer(16, 8)
    ref = nn.Linear(16, 8)
    ref.load_state_dict(ours.state_dict())
    assert isinstance(ours, nn.Linear) and list(ours.state_dict()) == ["weight", "bias"]
    x = torch.randn(3, 16)
    assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_fvcore_counts_a_traced_linear_as_a_linear():
    analysis = fvcore.nn.FlopCountAnalysis(_onednn_layer(16, 8), (torch.randn(3, 16),))
    assert analysis.total() == 3 * 16 * 8
    assert set(analysis.by_operator()) == {"linear"}


def test_multihead_attention_equals_nn_multihead_attention_with_its_state_dict():
    torch.manual_seed(0)
    ours = MultiheadAttention(16, 4).eval()
    ours.onednn_linear = ours.out_proj.onednn_linear = True
    ref = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    ref.load_state_dict(ours.state_dict())
    q, k, v = torch.randn(2, 3, 16), torch.randn(2, 7, 16), torch.randn(2, 7, 16)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[1, 5:] = True
    expected = ref(q, k, v, key_padding_mask=mask, need_weights=False)[0]
    assert torch.allclose(ours(q, k, v, key_padding_mask=mask), expected, atol=1e-5)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")
def test_cpu_float32_linear_runs_as_a_convolution_and_tracing_does_not(monkeypatch):
    calls = []
    conv2d = F.conv2d

    def counting_conv2d(*args, **kwargs):
        calls.append(args[0].shape)
        return conv2d(*args, **kwargs)

    monkeypatch.setattr(F, "conv2d", counting_conv2d)
    Linear(16, 8)(torch.randn(2, 5, 16))  # a layer no one switched on
    assert calls == []
    layer = _onednn_layer(16, 8)
    layer(torch.randn(2, 5, 16))
    assert calls == [(1, 16, 10, 1)]
    torch.jit.trace(layer, (torch.randn(2, 5, 16),), check_trace=False)
    assert len(calls) == 1
