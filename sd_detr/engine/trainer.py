"""Detectron2's SimpleTrainer with the DETR recipe's gradient clipping (and optional CUDA AMP)."""
import time

import torch
from detectron2.engine import SimpleTrainer


class DETRTrainer(SimpleTrainer):
    """Like :class:`~detectron2.engine.SimpleTrainer`, but clips the total gradient norm before each
    optimizer step (official DETR family: max norm 0.1, L2 over all parameters) and logs it as
    ``grad_norm``. Non-finite losses stop training in ``_write_metrics`` as in Detectron2."""

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
        if self.clip_max_norm and self.clip_max_norm > 0:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.clip_max_norm, self.clip_norm_type)
            self.storage.put_scalar("grad_norm", float(grad_norm), smoothing_hint=True)
        self._write_metrics(loss_dict, data_time)
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()
