"""SD-DETR ablation, Table 2 row 1 = Table 3 "baseline" (41.7 AP): Conditional DETR with the
mini-detector: one query branch (from the encoder memory at the anchor) read by both heads."""
from .table2_dfl import dataloader, lr_multiplier, model, optimizer, train

model.decoder.branches = ["shared"]
train.output_dir = "./output/sd_detr_ablations/table2_baseline"
