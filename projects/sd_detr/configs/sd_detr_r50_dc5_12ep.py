"""SD-DETR-DC5-R50, 12 epochs, lr x0.1 after 11 (paper Table 1: 40.6 AP)."""
from .sd_detr_r50_12ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.dc5 = True
train.output_dir = "./output/sd_detr_r50_dc5_12ep"
