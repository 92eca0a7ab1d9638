"""DAB-DETR-DC5-R50, 50 epochs (paper Table 2 / README: 44.5 AP)."""
from .dab_detr_r50_50ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.dc5 = True
train.output_dir = "./output/dab_detr_r50_dc5_50ep"
