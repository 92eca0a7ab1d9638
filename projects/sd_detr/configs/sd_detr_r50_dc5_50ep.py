"""SD-DETR-DC5-R50, 50 epochs, lr x0.1 after 40 (paper Table 1: 47.0 AP)."""
from .sd_detr_r50_50ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.dc5 = True
train.output_dir = "./output/sd_detr_r50_dc5_50ep"
