"""SMCA-DETR-DC5-R50 single scale, 12 epochs (SD-DETR Table 1: 32.5 AP).

The Gaussian's centre is in cells of the real feature stride (16 with DC5); the official code divides
by a hard-coded 32 (models/transformer.py:271), so an official DC5 run would differ there.

16 images per iteration as the official single-scale command (README.md:42); the official code has no
DC5 recipe."""
from .smca_detr_r50_12ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.dc5 = True
train.output_dir = "./output/smca_detr_r50_dc5_12ep"
