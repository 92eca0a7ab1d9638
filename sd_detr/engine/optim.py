"""Optimizer parameter groups of the official DETR recipes."""
from typing import List

from torch import nn


def detr_param_groups(model: nn.Module, base_lr: float = 1e-4, backbone_lr_factor: float = 0.1,
                      weight_decay: float = 1e-4, backbone_prefix: str = "backbone.") -> List[dict]:
    """Two AdamW groups: the backbone at ``base_lr * backbone_lr_factor`` (official lr_backbone 1e-5 with
    lr 1e-4), everything else at ``base_lr``; the same weight decay for all (official main.py:30-33).
    Frozen parameters are left out. Detectron2 0.6's ``get_default_optimizer_params`` has no per-module
    learning-rate factor, hence this function."""
    backbone, rest = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (backbone if name.startswith(backbone_prefix) else rest).append(p)
    groups = [{"params": rest, "lr": base_lr, "weight_decay": weight_decay}]
    if backbone:
        groups.append({"params": backbone, "lr": base_lr * backbone_lr_factor, "weight_decay": weight_decay})
    return groups
