"""DAB-DETR-DC5-R50, 12 epochs (SD-DETR paper Table 1: 37.7 AP)."""
from .dab_detr_r50_12ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.dc5 = True
train.output_dir = "./output/dab_detr_r50_dc5_12ep"
