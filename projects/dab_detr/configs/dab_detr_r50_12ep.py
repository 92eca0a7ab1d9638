"""DAB-DETR-R50, 12 epochs, lr drop after 11 (SD-DETR paper Table 1: 34.9 AP)."""
from sd_detr.config import get_config

from .dab_detr_r50_50ep import dataloader, model, optimizer, train

_schedule = get_config("common/schedule.py").schedule_12ep
lr_multiplier = _schedule.lr_multiplier
train.max_iter = _schedule.max_iter
train.output_dir = "./output/dab_detr_r50_12ep"
