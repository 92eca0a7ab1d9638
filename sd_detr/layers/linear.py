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
models they build) switches it on. GPU tensors, other dtypes, empty inputs, tracing (fvcore counts
``aten::linear``), scripting and ``torch.compile`` take ``F.linear`` in any case.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_ENABLED = False  # set by optimize_for_cpu (sd_detr/engine/accel.py); nothing is read at import


def set_onednn_linear(enabled: bool) -> bool:
    """Route CPU float32 linear layers through oneDNN (True) or ``F.linear`` (False); returns the
    previous setting."""
    global _ENABLED
    previous, _ENABLED = _ENABLED, bool(enabled)
    return previous


def onednn_linear_enabled() -> bool:
    return _ENABLED


def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``F.linear(x, weight, bias)``: x [..., C_in], weight [C_out, C_in], bias [C_out] -> [..., C_out]."""
    if (not _ENABLED or x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32
            or x.dim() == 0 or weight.dim() != 2 or x.numel() == 0 or torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch.compiler.is_compiling() or not torch.backends.mkldnn.is_available()):
        return F.linear(x, weight, bias)
    c_out, c_in = weight.shape
    lead = x.shape[:-1]
    # [1, C_in, M, 1] in channels-last memory: a view of a row-major input; a transposed input (whose
    # view would be NCHW, giving an NCHW output) is copied, so that the output is row-major as F.linear's.
    x = x.reshape(1, -1, 1, c_in).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    y = F.conv2d(x, weight.reshape(c_out, c_in, 1, 1), bias)
    return y.permute(0, 2, 3, 1).reshape(*lead, c_out)


class Linear(nn.Linear):
    """:class:`torch.nn.Linear` (same parameters, initialisation and state dict) computed by
    :func:`linear`."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
