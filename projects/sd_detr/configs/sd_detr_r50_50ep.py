"""SD-DETR-R50, 50 epochs, lr x0.1 after 40 (paper Table 1: 45.5 AP; Table 2's last row)."""
from sd_detr.config import get_config

from .models.sd_detr_r50 import model

# DETR augmentation: flip, multi-scale resize (short side 480-800, long side <= 1333) or
# resize-crop-resize with p = 0.5 (paper Sec. 4.1)
dataloader = get_config("common/data/coco_detr.py").dataloader
# AdamW, lr 1e-4, backbone 1e-5, weight decay 1e-4 (paper Sec. 4.1)
optimizer = get_config("common/optim.py").optimizer
_schedule = get_config("common/schedule.py").schedule_50ep
lr_multiplier = _schedule.lr_multiplier
train = get_config("common/train.py").train
train.max_iter = _schedule.max_iter
train.output_dir = "./output/sd_detr_r50_50ep"
