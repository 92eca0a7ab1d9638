"""CPU speed-ups applied to a built model from outside it (issue 12: the model code stays plain PyTorch).

``optimize_for_cpu(model)`` is the one step the tools call on a model they built (the train loop, the
predictors, the benchmark, the attention and prediction pictures, the ONNX-vs-eager benchmark):

- **oneDNN linear** (:func:`sd_detr.layers.set_onednn_linear`): CPU float32 linear layers run as 1x1
  convolutions on oneDNN instead of MKL's sgemm, which runs at about half the rate on AMD processors
  (docs/benchmarks.md). Process-wide (the layers call one function).
- **value padding** (:func:`sd_detr.attention.core.set_value_padding`): value heads narrower than the
  query/key heads (Conditional DETR's cross-attention) are zero-padded so that SDPA takes its fused CPU
  kernel. Process-wide.
- **channels-last** (:meth:`DETRDetector.set_channels_last`): the backbone and the input projection
  in channels-last memory format (oneDNN and cuDNN convolutions are faster in it). Per model; also on
  CUDA.

All three leave the state dict as it is and the outputs equal to float rounding (tests: 1e-5), and
step aside while tracing, scripting or under ``torch.compile`` (fvcore counts and exports see plain
``aten::linear`` and unpadded attention). ``SD_DETR_CPU_ACCEL=0`` (read when this is called, not at
import) or the keyword arguments switch them off, e.g. for A/B timings (``tools/benchmark.py
--no-cpu-accel``); ``SD_DETR_ONEDNN_LINEAR=0`` switches the linear alone off.
"""
import logging
import os
from typing import Dict

from torch import nn

from ..attention.core import set_value_padding
from ..layers.linear import set_onednn_linear

logger = logging.getLogger(__name__)


def _env_on(name: str) -> bool:
    return os.environ.get(name, "1") != "0"


def optimize_for_cpu(model: nn.Module, *, onednn_linear: bool = True, value_padding: bool = True,
                     channels_last: bool = True) -> Dict[str, bool]:
    """Apply the speed-ups to ``model`` (in place) and return which are on.

    The linear and attention switches act on the CPU float32 kernels of the whole process (they are
    used only on CPU tensors anyway); channels-last converts ``model``'s backbone and input projection
    if it has :meth:`set_channels_last`. Returns {"onednn_linear", "value_padding", "channels_last"}.
    """
    enabled = _env_on("SD_DETR_CPU_ACCEL")
    has_layout = hasattr(model, "set_channels_last")
    applied = {
        "onednn_linear": bool(enabled and onednn_linear and _env_on("SD_DETR_ONEDNN_LINEAR")),
        "value_padding": bool(enabled and value_padding),
        "channels_last": bool(enabled and channels_last and has_layout),
    }
    set_onednn_linear(applied["onednn_linear"])
    set_value_padding(applied["value_padding"])
    if has_layout:
        model.set_channels_last(applied["channels_last"])
    logger.debug("optimize_for_cpu: %s", applied)
    return applied


__all__ = ["optimize_for_cpu"]
