"""Conditional DETR-DC5-R50, 12 epochs (SD-DETR Table 1: 35.9 AP), lr drop after 11.

The official DC5 recipe (see conditional_detr_r50_dc5_50ep.py) at the SD-DETR paper's short schedule:
8 images per iteration, lr 1e-4 (backbone 1e-5), 14,786 iterations per epoch.
"""
from detectron2.config import LazyCall as L
from fvcore.common.param_scheduler import MultiStepParamScheduler

from .conditional_detr_r50_12ep import dataloader, model, optimizer, train

model.backbone.dc5 = True
dataloader.train.total_batch_size = 8
train.max_iter = 177_432  # 12 x 14,786
lr_multiplier = L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[162_646, 177_432])  # drop after 11 x 14,786
train.output_dir = "./output/conditional_detr_r50_dc5_12ep"
