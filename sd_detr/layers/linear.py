"""Linear layers whose CPU float32 matrix products run on oneDNN.

PyTorch sends a CPU float32 ``F.linear`` to its BLAS (MKL in the PyPI wheels), whose sgemm does not use
AVX-512 on AMD processors; on the machines this project is tested on (AMD EPYC, 2 threads) it reaches
~70-85 GMAC/s on the transformer's matrix shapes, while oneDNN, which PyTorch uses for convolutions,
reaches 150-250. A linear layer is a 1x1 convolution over a channels-last ``[1, C_in, N, 1]`` view of its
row-major ``[..., C_in]`` input (no copy; a transposed input is copied), so it is run as one: [950, 256] x [256, 256] 0.74 -> 0.40 ms,
[300, 256] x [256, 2048] 2.22 -> 0.95 ms, [300, 512] x [512, 512] 1.00 -> 0.61 ms; forward + backward
1.3-2x faster (docs/benchmarks.md). Results equal ``F.linear``'s to float rounding (summation order).

Used for every linear layer of the project's transformers, but off by default: the layers are then
``F.linear`` exactly, and :func:`sd_detr.engine.accel.optimize_for_cpu` (which the tools call on the
models they build) switches it on for the layers of that model only: the switch is each layer's own
``onednn_linear`` attribute (issue 23), never process-wide, so that another model in the same process
keeps its plain path. GPU tensors, other dtypes, empty inputs, tracing (fvcore counts
``aten::linear``), scripting and ``torch.compile`` take ``F.linear`` in any case.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, onednn: bool = False) -> Tensor:
    """``F.linear(x, weight, bias)``: x [..., C_in], weight [C_out, C_in], bias [C_out] -> [..., C_out].

    ``onednn=True`` (the caller's own flag, e.g. :attr:`Linear.onednn_linear`) runs CPU float32 inputs as a
    1x1 convolution (:func:`_linear_as_conv`); everything else, and ``onednn=False``, is ``F.linear``."""
    # tracing, scripting and compiling first: the shape tests below would warn under the tracer
    if (not onednn or torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
            or x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32
            or x.dim() == 0 or weight.dim() != 2 or x.numel() == 0 or not torch.backends.mkldnn.is_available()):
        return F.linear(x, weight, bias)
    return _linear_as_conv(x, weight, bias)


def _linear_as_conv(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """The oneDNN path of :func:`linear` (CPU float32, non-empty x [..., C_in]) -> [..., C_out], row-major."""
    c_out, c_in = weight.shape
    lead = x.shape[:-1]
    # [1, C_in, M, 1] in channels-last memory: a view of a row-major input; a transposed input (whose
    # view would be NCHW, giving an NCHW output) is copied, so that the output is row-major as F.linear's.
    x = x.reshape(1, -1, 1, c_in).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    y = F.conv2d(x, weight.reshape(c_out, c_in, 1, 1), bias)
    return y.permute(0, 2, 3, 1).reshape(*lead, c_out)


class Linear(nn.Linear):
    """:class:`torch.nn.Linear` (same parameters, initialisation and state dict) computed by
    :func:`linear`, on oneDNN when this layer's ``onednn_linear`` is set (a plain attribute, not in the
    state dict; :func:`sd_detr.engine.accel.optimize_for_cpu` sets it on the layers of its model)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.onednn_linear = False

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias, onednn=self.onednn_linear)


def branch_linear(x: Tensor, weights, biases, onednn: bool = False) -> Tensor:
    """G linear layers of equal shape applied to their own inputs as one batched matrix product (the
    branches of SD-DETR's decoder, issue 24).

    Args:
        x: [G, ..., C_in], slice g the input of layer g.
        weights: G tensors [C_out, C_in]; biases: G tensors [C_out] (or None: no bias).
        onednn: the layers' ``onednn_linear`` flag: when set and :func:`linear` would take oneDNN, each
            slice runs as its own oneDNN 1x1 convolution (oneDNN has no batched form of it).
    Returns:
        [G, ..., C_out]; slice g equals ``F.linear(x[g], weights[g], biases[g])`` to float rounding.

    The weights are stacked at every call (``torch.stack`` is differentiable, so each layer keeps its
    own parameters and state-dict key; the copy is small next to the product).
    """
    g, lead, c_in = x.shape[0], x.shape[1:-1], x.shape[-1]
    if onednn and _onednn_eligible(x, weights[0]):
        outs = [linear(x[i], weights[i], None if biases is None else biases[i], onednn=True) for i in range(g)]
        return torch.stack(outs)
    w = torch.stack(list(weights)).transpose(1, 2)  # [G, C_in, C_out]
    flat = x.reshape(g, -1, c_in)
    if biases is None:
        y = torch.bmm(flat, w)
    else:
        y = torch.baddbmm(torch.stack(list(biases)).unsqueeze(1), flat, w)
    return y.view(g, *lead, w.shape[-1])


def _onednn_eligible(x: Tensor, weight: Tensor) -> bool:
    """Whether :func:`linear` with ``onednn=True`` takes the oneDNN path for this input (its tests)."""
    return not (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
                or x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32
                or x.numel() == 0 or not torch.backends.mkldnn.is_available())
