"""CPU speed-ups applied to a built model from outside it (issue 12: the model code stays plain PyTorch).

``optimize_for_cpu(model)`` is the one step the tools call on a model they built (the train loop, the
predictors, the benchmark, the attention and prediction pictures, the ONNX-vs-eager benchmark):

- **oneDNN linear** (the ``onednn_linear`` attribute of :class:`sd_detr.layers.Linear` and of the
  in-projections of :class:`sd_detr.attention.MultiheadAttention`): CPU float32 linear layers run as 1x1
  convolutions on oneDNN instead of MKL's sgemm, which runs at about half the rate on AMD processors
  (docs/benchmarks.md).
- **value padding** (the ``value_padding`` attribute of the attention modules, passed to
  :func:`sd_detr.attention.multi_head_attention`): value heads narrower than the query/key heads
  (Conditional DETR's cross-attention) are zero-padded so that SDPA takes its fused CPU kernel.
- **channels-last** (:meth:`DETRDetector.set_channels_last`): the backbone and the input projection
  in channels-last memory format (oneDNN and cuDNN convolutions are faster in it). Also on CUDA.

All three are state of the model they are applied to (issue 23): the first two are plain boolean
attributes of its modules (not in the state dict, kept by ``copy.deepcopy``), set by walking
``model.modules()``; another model in the same process keeps its own settings (plain, unless this was
applied to it too).

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

logger = logging.getLogger(__name__)


# the per-module switches: attribute names, also the keys of the returned dict
SWITCHES = ("onednn_linear", "value_padding")


def _env_on(name: str) -> bool:
    return os.environ.get(name, "1") != "0"


def _switchable(model: nn.Module, name: str):
    """The modules of ``model`` that carry the boolean switch ``name``."""
    return [m for m in model.modules() if isinstance(getattr(m, name, None), bool)]


def optimize_for_cpu(model: nn.Module, *, onednn_linear: bool = True, value_padding: bool = True,
                     channels_last: bool = True) -> Dict[str, bool]:
    """Apply the speed-ups to ``model`` (in place) and return which are on.

    Sets ``onednn_linear`` / ``value_padding`` on every module of ``model`` that has that attribute, to
    on or off (a second call with other arguments switches them back), and converts ``model``'s backbone
    and input projection if it has :meth:`set_channels_last`. Nothing outside ``model`` changes.
    Returns {"onednn_linear", "value_padding", "channels_last"}: True where the speed-up is on and
    ``model`` has a module it applies to.
    """
    enabled = _env_on("SD_DETR_CPU_ACCEL")
    wanted = {
        "onednn_linear": bool(enabled and onednn_linear and _env_on("SD_DETR_ONEDNN_LINEAR")),
        "value_padding": bool(enabled and value_padding),
    }
    applied = {}
    for name in SWITCHES:
        modules = _switchable(model, name)
        for m in modules:
            setattr(m, name, wanted[name])
        applied[name] = wanted[name] and bool(modules)
    has_layout = hasattr(model, "set_channels_last")
    applied["channels_last"] = bool(enabled and channels_last and has_layout)
    if has_layout:
        model.set_channels_last(applied["channels_last"])
    logger.debug("optimize_for_cpu: %s", applied)
    return applied


__all__ = ["optimize_for_cpu"]
