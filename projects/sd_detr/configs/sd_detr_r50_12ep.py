"""SD-DETR-R50, 12 epochs, lr x0.1 after 11 (paper Table 1: 39.5 AP)."""
from sd_detr.config import get_config

from .sd_detr_r50_50ep import dataloader, model, optimizer, train

_schedule = get_config("common/schedule.py").schedule_12ep
lr_multiplier = _schedule.lr_multiplier
train.max_iter = _schedule.max_iter
train.output_dir = "./output/sd_detr_r50_12ep"
