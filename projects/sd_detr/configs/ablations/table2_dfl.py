"""SD-DETR ablation, Table 2 row 2 (DFL, 43.1 AP) = Table 3 "split cross-attention": row 3 without
task-aware query generation (each branch starts from its mini-detector tower's feature at the anchor,
its reference is the anchor centre)."""
from .table2_taq import dataloader, lr_multiplier, model, optimizer, train

model.query_init.task_aware = None
train.output_dir = "./output/sd_detr_ablations/table2_dfl"
