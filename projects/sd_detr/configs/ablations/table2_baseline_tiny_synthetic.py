"""Table 2 row 1 = Table 3 "baseline" (Conditional DETR with the mini-detector) at the tiny synthetic
size (as table2_baseline.py)."""
from .table2_dfl_tiny_synthetic import dataloader, lr_multiplier, model, optimizer, train

model.decoder.branches = ["shared"]
train.output_dir = "./output/sd_detr_ablations/table2_baseline_tiny_synthetic"
