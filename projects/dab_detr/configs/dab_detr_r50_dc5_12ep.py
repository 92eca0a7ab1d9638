"""DAB-DETR-DC5-R50, 12 epochs (SD-DETR paper Table 1: 37.7 AP). 16 images per iteration as every official
DAB-DETR run, DC5 included (README.md:251; paper appendix A: 16 GPUs x 1 image), unlike Conditional
DETR-DC5's 8."""
from .dab_detr_r50_12ep import dataloader, lr_multiplier, model, optimizer, train

model.backbone.dc5 = True
train.output_dir = "./output/dab_detr_r50_dc5_12ep"
