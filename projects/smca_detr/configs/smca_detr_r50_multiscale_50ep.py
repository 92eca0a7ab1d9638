"""SMCA-DETR-R50 multi-scale (the paper's 2intra-multi-2intra encoder and scale-selection attention),
50 epochs, lr drop after 40 (paper Table 1 / 4 and SD-DETR Table 1: 43.7 AP).

8 images per iteration as the paper trains ("8 V100 GPUs with 1 image per GPU", Sec. 4.1) and the
released multi-scale commands do (Multi_scale_SMCA.zip README.md:3,7: ``--batch_size 1`` on 8 GPUs),
at lr 1e-4 (backbone 1e-5), unchanged with the batch (main.py:22-23); epochs counted at 8 images:
ceil(118,287 / 8) = 14,786 iterations.
"""
from detectron2.config import LazyCall as L
from fvcore.common.param_scheduler import MultiStepParamScheduler

from sd_detr.config import get_config

from .models.smca_detr_r50_multiscale import model

dataloader = get_config("common/data/coco_detr.py").dataloader
dataloader.train.total_batch_size = 8
optimizer = get_config("common/optim.py").optimizer
train = get_config("common/train.py").train
train.max_iter = 739_300  # 50 x 14,786
lr_multiplier = L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[591_440, 739_300])  # drop after 40 x 14,786
train.output_dir = "./output/smca_detr_r50_multiscale_50ep"
