"""Detectron2's SimpleTrainer with the DETR recipe's gradient clipping (and optional CUDA AMP), and a stop
before the optimizer steps on a non-finite loss or gradient."""
import time

import torch
from detectron2.engine import SimpleTrainer


class DETRTrainer(SimpleTrainer):
    """Like :class:`~detectron2.engine.SimpleTrainer`, but clips the total gradient norm before each
    optimizer step (official DETR family: max norm 0.1, L2 over all parameters) and logs it as
    ``grad_norm``.

    Before each optimizer step the loss and the total gradient norm are checked: a NaN or inf raises
    :class:`FloatingPointError` naming the iteration and the first parameter (in ``named_parameters``
    order) whose gradient is not finite, and the optimizer does not step, so the weights (and every
    checkpoint saved from them) stay finite. (Detectron2 checks only the loss; a finite loss with a NaN
    gradient, e.g. ``optimizer.lr=100`` at iteration 1, stepped and was checkpointed.) With AMP the
    gradient check is left to the GradScaler, which skips such steps and lowers its scale by design."""

    def __init__(self, model, data_loader, optimizer, clip_max_norm: float = 0.1, clip_norm_type: float = 2.0,
                 amp: bool = False):
        super().__init__(model, data_loader, optimizer)
        self.clip_max_norm = clip_max_norm
        self.clip_norm_type = clip_norm_type
        self.amp = amp and torch.cuda.is_available()
        self.grad_scaler = torch.amp.GradScaler("cuda") if self.amp else None

    def run_step(self):
        assert self.model.training, "[DETRTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        with torch.autocast("cuda", enabled=self.amp):
            loss_dict = self.model(data)
        losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        if self.grad_scaler is not None:
            self.grad_scaler.scale(losses).backward()
            self.grad_scaler.unscale_(self.optimizer)
        else:
            losses.backward()
        # Checked after the backward pass, not before: under DDP every process must join the gradient
        # all-reduce; the (all-reduced) gradient norm is then the same in every process, so all stop together.
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = _total_norm(params, self.clip_norm_type)
        self._check_finite(loss_dict, losses, grad_norm)
        if self.clip_max_norm and self.clip_max_norm > 0:
            _clip_with_norm(params, self.clip_max_norm, grad_norm, self.clip_norm_type)
            self.storage.put_scalar("grad_norm", float(grad_norm), smoothing_hint=True)
        self._write_metrics(loss_dict, data_time)
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()

    def _check_finite(self, loss_dict, losses, grad_norm):
        """Raise :class:`FloatingPointError` before the step on a non-finite loss or gradient norm."""
        if not bool(torch.isfinite(losses)):
            terms = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in loss_dict.items())
            raise FloatingPointError(
                f"the loss is {float(losses.detach())} at iteration {self.iter} ({terms}); the optimizer did not step "
                f"and no checkpoint of this iteration is saved")
        if self.grad_scaler is None and not bool(torch.isfinite(grad_norm)):
            name = self.first_non_finite_grad()
            raise FloatingPointError(
                f"the gradient norm is {float(grad_norm)} at iteration {self.iter} (loss {float(losses.detach()):.4g} "
                f"finite); first parameter with a non-finite gradient: {name}. The optimizer did not step "
                f"and no checkpoint of this iteration is saved (lower optimizer.lr?)")

    def first_non_finite_grad(self):
        """Name (``named_parameters``, without DDP's ``module.``) of the first parameter whose gradient
        holds a NaN or inf, or None."""
        for name, p in self.model.named_parameters():
            if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                return name[len("module."):] if name.startswith("module.") else name
        return None


def _total_norm(params, norm_type: float) -> torch.Tensor:
    """Total ``norm_type``-norm of the gradients of ``params`` (the norm ``clip_grad_norm_`` clips with),
    computed without touching them: clipping by a NaN norm would turn every gradient into NaN and hide the
    parameter that went wrong."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6
        return torch.nn.utils.get_total_norm(grads, norm_type)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, norm_type) for g in grads]), norm_type)


def _clip_with_norm(params, max_norm: float, total_norm: torch.Tensor, norm_type: float):
    """Scale the gradients so that their total norm is at most ``max_norm`` (``clip_grad_norm_``)."""
    if hasattr(torch.nn.utils, "clip_grads_with_norm_"):  # torch >= 2.6
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total_norm)
    else:
        torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
