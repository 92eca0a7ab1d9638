"""SD-DETR ablation, Table 2 row 3 (DFL + TAQ, 43.6 AP): the full model without the task-alignment
loss: focal loss and one-to-one matching (no repeated positives)."""
from detectron2.config import LazyCall as L

from sd_detr.modeling import FocalLoss

from ..sd_detr_r50_50ep import dataloader, lr_multiplier, model, optimizer, train

model.criterion.class_loss = L(FocalLoss)(alpha=0.25, gamma=2.0)
model.criterion.assigner.num_repeats = 1
train.output_dir = "./output/sd_detr_ablations/table2_taq"
