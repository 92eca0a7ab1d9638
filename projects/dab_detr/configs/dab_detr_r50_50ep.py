"""DAB-DETR-R50, 50 epochs, lr drop after 40 (paper Table 2 / README: 42.2 AP)."""
from sd_detr.config import get_config

from .models.dab_detr_r50 import model

dataloader = get_config("common/data/coco_detr.py").dataloader
# official main.py: AdamW lr 1e-4, lr_backbone 1e-5, weight decay 1e-4, clip 0.1 (common/optim.py, train.py)
optimizer = get_config("common/optim.py").optimizer
_schedule = get_config("common/schedule.py").schedule_50ep
lr_multiplier = _schedule.lr_multiplier
train = get_config("common/train.py").train
train.max_iter = _schedule.max_iter
train.output_dir = "./output/dab_detr_r50_50ep"
