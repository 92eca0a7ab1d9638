"""SMCA-DETR-R50 single scale, 12 epochs, lr drop after 11 (SD-DETR Table 1: 31.6 AP)."""
from sd_detr.config import get_config

from .smca_detr_r50_50ep import dataloader, model, optimizer, train

_schedule = get_config("common/schedule.py").schedule_12ep
lr_multiplier = _schedule.lr_multiplier
train.max_iter = _schedule.max_iter
train.output_dir = "./output/smca_detr_r50_12ep"
