"""SMCA-DETR-R50 multi-scale, 12 epochs, lr drop after 11 (no paper number)."""
from sd_detr.config import get_config

from .smca_detr_r50_multiscale_50ep import dataloader, model, optimizer, train

_schedule = get_config("common/schedule.py").schedule_12ep
lr_multiplier = _schedule.lr_multiplier
train.max_iter = _schedule.max_iter
train.output_dir = "./output/smca_detr_r50_multiscale_12ep"
