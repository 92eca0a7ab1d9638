"""Table 2 row 3 (DFL + TAQ, no task-alignment loss) at the tiny synthetic size: focal loss, one-to-one
matching. Same overrides as table2_taq.py on sd_detr_tiny_synthetic.py."""
from detectron2.config import LazyCall as L

from sd_detr.modeling import FocalLoss

from ..sd_detr_tiny_synthetic import dataloader, lr_multiplier, model, optimizer, train

model.criterion.class_loss = L(FocalLoss)(alpha=0.25, gamma=2.0)
model.criterion.assigner.num_repeats = 1
train.output_dir = "./output/sd_detr_ablations/table2_taq_tiny_synthetic"
