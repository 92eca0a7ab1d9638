"""Conditional DETR-DC5-R50, 50 epochs (paper Table 1: 43.8 AP), with the official DC5 recipe.

The official DC5 script trains with 8 images per iteration (``scripts/conddetr_r50dc5_epoch50.sh``:
``--batch_size 1`` on 8 GPUs; the R50 script keeps the default 2 per GPU, 16) at the same learning rates
(lr 1e-4, backbone 1e-5: ``main.py:30-31``; nothing scales them with the batch). The epochs are counted
at 8 images: ceil(118,287 / 8) = 14,786 iterations per epoch (the official DistributedSampler gives each
of the 8 processes ceil(118,287 / 8) images, batched one at a time), lr x0.1 after 40 of 50 epochs
(``main.py:34-35``).
"""
from detectron2.config import LazyCall as L
from fvcore.common.param_scheduler import MultiStepParamScheduler

from .conditional_detr_r50_50ep import dataloader, model, optimizer, train

model.backbone.dc5 = True
dataloader.train.total_batch_size = 8
train.max_iter = 739_300  # 50 x 14,786
lr_multiplier = L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[591_440, 739_300])  # drop after 40 x 14,786
train.output_dir = "./output/conditional_detr_r50_dc5_50ep"
