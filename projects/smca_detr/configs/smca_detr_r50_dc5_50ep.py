"""SMCA-DETR-DC5-R50 single scale, 50 epochs (no paper number; see smca_detr_r50_dc5_12ep.py on the stride
and the batch of 16)."""
from .smca_detr_r50_50ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.dc5 = True
train.output_dir = "./output/smca_detr_r50_dc5_50ep"
