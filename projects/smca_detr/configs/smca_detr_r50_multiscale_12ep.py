"""SMCA-DETR-R50 multi-scale, 12 epochs, lr drop after 11 (no paper number); 8 images per iteration
and 14,786 iterations per epoch as smca_detr_r50_multiscale_50ep.py."""
from detectron2.config import LazyCall as L
from fvcore.common.param_scheduler import MultiStepParamScheduler

from .smca_detr_r50_multiscale_50ep import dataloader, model, optimizer, train

train.max_iter = 177_432  # 12 x 14,786
lr_multiplier = L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[162_646, 177_432])  # drop after 11 x 14,786
train.output_dir = "./output/smca_detr_r50_multiscale_12ep"
