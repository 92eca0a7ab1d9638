"""Table 2 row 2 (DFL) = Table 3 "split cross-attention" at the tiny synthetic size (as table2_dfl.py)."""
from .table2_taq_tiny_synthetic import dataloader, lr_multiplier, model, optimizer, train

model.query_init.task_aware = None
train.output_dir = "./output/sd_detr_ablations/table2_dfl_tiny_synthetic"
