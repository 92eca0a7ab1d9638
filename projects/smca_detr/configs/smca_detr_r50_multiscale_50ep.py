"""SMCA-DETR-R50 multi-scale (the paper's 2intra-multi-2intra encoder and scale-selection attention),
50 epochs, lr drop after 40 (paper Table 1 / 4 and SD-DETR Table 1: 43.7 AP)."""
from sd_detr.config import get_config

from .models.smca_detr_r50_multiscale import model

dataloader = get_config("common/data/coco_detr.py").dataloader
optimizer = get_config("common/optim.py").optimizer
_schedule = get_config("common/schedule.py").schedule_50ep
lr_multiplier = _schedule.lr_multiplier
train = get_config("common/train.py").train
train.max_iter = _schedule.max_iter
train.output_dir = "./output/smca_detr_r50_multiscale_50ep"
