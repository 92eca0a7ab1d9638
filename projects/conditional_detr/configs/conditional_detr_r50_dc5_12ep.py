"""Conditional DETR-DC5-R50, 12 epochs (lr drop after 11)."""
from .conditional_detr_r50_12ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.dc5 = True
train.output_dir = "./output/conditional_detr_r50_dc5_12ep"
