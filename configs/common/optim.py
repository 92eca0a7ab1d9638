"""AdamW of the official DETR recipes: lr 1e-4, backbone lr x0.1 (1e-5), weight decay 1e-4."""
import torch
from detectron2.config import LazyCall as L

from sd_detr.engine import detr_param_groups

optimizer = L(torch.optim.AdamW)(
    params=L(detr_param_groups)(base_lr="${..lr}", backbone_lr_factor=0.1, weight_decay="${..weight_decay}"),
    lr=1e-4,
    betas=(0.9, 0.999),
    weight_decay=1e-4,
)
