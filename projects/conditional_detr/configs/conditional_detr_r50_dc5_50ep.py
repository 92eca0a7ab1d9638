"""Conditional DETR-DC5-R50, 50 epochs (paper Table 1: 43.8 AP)."""
from .conditional_detr_r50_50ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.dc5 = True
train.output_dir = "./output/conditional_detr_r50_dc5_50ep"
