"""An exponential moving average (EMA) of a model's weights, as detrex's ``train.model_ema`` (its
``detrex/modeling/ema.py``, after d2go's): the average is updated after every optimizer step, saved in the
checkpoints as the extra checkpointable ``model_ema`` (so that ``--resume`` continues the same average), and
the evaluations of a run use it in place of the live weights.

Config (``configs/common/train.py``, off by default)::

    train.model_ema = dict(enabled=False, decay=0.999, device="", use_ema_weights_for_eval_only=False)

Differences from detrex, on purpose: the state is the model's ``state_dict`` (parameters and persistent
buffers: what a checkpoint holds), and integer buffers (BatchNorm's ``num_batches_tracked``) are copied from
the live model instead of averaged, since an average of a counter rounded back to an integer means nothing
(detrex ``detrex/modeling/ema.py:137`` averages and truncates them). Evaluations during training use the EMA
weights only; detrex evaluates the live weights too and then overwrites their results with the EMA's under
the same keys (``tools/train_net.py:165-181``), so the logged numbers are the same.
"""
import contextlib
import logging
from typing import Dict, Iterator, Optional

import torch
from detectron2.engine.train_loop import HookBase
from torch import nn

from ..checkpoint.checkpointer import CheckpointMismatchError

logger = logging.getLogger("sd_detr")

__all__ = ["ModelEMA", "EMAHook", "build_model_ema", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` (or ``DataParallel``) wrapper, else ``model``: the EMA's
    names are those of the bare model, with no ``module.`` prefix."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


class ModelEMA:
    """The EMA of ``model``'s state dict: after each step, every floating-point entry
    ``ema = decay * ema + (1 - decay) * live``, and every other entry (integer counters) ``ema = live``.

    Args:
        model: the model (a DDP wrapper is unwrapped); held by reference, its tensors are read at each
            :meth:`update` and overwritten inside :meth:`swapped_in`.
        decay: weight of the old average per step, in [0, 1] (detrex's default 0.999: an average over about
            the last 1000 iterations).
        device: where the average lives ("cpu" keeps it off the GPU); "" = beside each live tensor.

    The state is empty until :meth:`reset` (the :class:`EMAHook` calls it before training unless a checkpoint
    filled it through :meth:`load_state_dict`).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, device: str = ""):
        if not 0.0 <= float(decay) <= 1.0:
            raise ValueError(f"train.model_ema.decay must be in [0, 1], got {decay}")
        self.model = unwrap_model(model)
        self.decay = float(decay)
        self.device = device or None
        self.state: Dict[str, torch.Tensor] = {}

    def _live(self) -> Dict[str, torch.Tensor]:
        """The model's state-dict entries as its own tensors (no copies), names without ``module.``."""
        return self.model.state_dict(keep_vars=True)

    def has_state(self) -> bool:
        return bool(self.state)

    @torch.no_grad()
    def reset(self):
        """Start the average at the model's current weights."""
        self.state = {k: v.detach().clone().to(self.device) if self.device else v.detach().clone()
                      for k, v in self._live().items()}

    @torch.no_grad()
    def update(self):
        """One EMA step from the model's current weights (call after the optimizer step)."""
        if not self.state:
            self.reset()
            return
        live = self._live()
        avg, new = [], []
        for k, ema in self.state.items():
            v = live[k].detach()
            if self.device:
                v = v.to(self.device, non_blocking=True)
            if ema.is_floating_point():
                avg.append(ema)
                new.append(v)
            else:
                ema.copy_(v)
        if avg:
            torch._foreach_mul_(avg, self.decay)
            torch._foreach_add_(avg, new, alpha=1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: Optional[nn.Module] = None):
        """Write the EMA weights into ``model`` (default: the model it averages), in place."""
        live = unwrap_model(model).state_dict(keep_vars=True) if model is not None else self._live()
        for k, ema in self.state.items():
            live[k].data.copy_(ema)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[nn.Module]:
        """Within the block the model holds the EMA weights; after it (an exception included) its live
        weights are back, bit for bit, in the same tensor objects (the optimizer's references stay valid).
        Without state (nothing averaged yet) the model is left as it is."""
        if not self.state:
            yield self.model
            return
        with torch.no_grad():
            backup = {k: v.detach().clone() for k, v in self._live().items()}
        self.copy_to()
        try:
            yield self.model
        finally:
            with torch.no_grad():
                live = self._live()
                for k, v in backup.items():
                    live[k].data.copy_(v)

    # ---------------------------------------------------------------- checkpointable (``model_ema``)
    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The averaged tensors by state-dict name (a flat dict: loads with ``torch.load(weights_only=True)``)."""
        return dict(self.state)

    def load_state_dict(self, state: Dict[str, torch.Tensor]):
        """Take a saved average; it must fit the model exactly (names and shapes), else
        :class:`CheckpointMismatchError`. The tensors go to :attr:`device` (or beside the live ones)."""
        live = self._live()
        missing = sorted(set(live) - set(state))
        unexpected = sorted(set(state) - set(live))
        shapes = sorted(k for k in set(live) & set(state) if tuple(live[k].shape) != tuple(state[k].shape))
        if missing or unexpected or shapes:
            raise CheckpointMismatchError(
                f"the checkpoint's model_ema does not fit {type(self.model).__name__}: missing {missing[:10]} "
                f"({len(missing)}), unexpected {unexpected[:10]} ({len(unexpected)}), wrong shape {shapes[:10]} "
                f"({len(shapes)})")
        self.state = {k: state[k].detach().to(device=self.device or live[k].device, dtype=live[k].dtype).clone()
                      for k in live}

    def __repr__(self):
        return f"ModelEMA(decay={self.decay}, device={self.device!r}, tensors={len(self.state)})"


class EMAHook(HookBase):
    """Keeps a :class:`ModelEMA` during training: starts it at the model's weights before the first step
    (unless a resumed checkpoint filled it) and updates it after every step. Register it before the
    EvalHook and the PeriodicCheckpointer, so that a step's evaluation and checkpoint see that step's average
    (detrex ``tools/train_net.py:253``)."""

    def __init__(self, ema: ModelEMA):
        self.ema = ema

    def before_train(self):
        if self.ema.has_state():
            logger.info("Model EMA: continuing the average from the checkpoint (decay %g)", self.ema.decay)
        else:
            if self.trainer.start_iter > 0:
                logger.warning("Model EMA: the checkpoint holds no EMA state (trained without "
                               "train.model_ema.enabled?); starting the average at the weights of iteration %d",
                               self.trainer.start_iter)
            self.ema.reset()

    def after_step(self):
        self.ema.update()


def build_model_ema(cfg, model) -> Optional[ModelEMA]:
    """A :class:`ModelEMA` of ``model`` when ``cfg.train.model_ema.enabled``, else None (configs without
    the key count as off)."""
    opts = cfg.train.get("model_ema", None) or {}
    if not opts.get("enabled", False):
        return None
    ema = ModelEMA(model, decay=opts.get("decay", 0.999), device=opts.get("device", "") or "")
    logger.info("Model EMA on: decay %g, kept on %s", ema.decay, ema.device or "the model's device")
    return ema
