"""DAB-DETR-DC5-R50* with 3 pattern embeddings, 50 epochs (paper Table 2: 45.7 AP)."""
from .dab_detr_r50_dc5_50ep import dataloader, lr_multiplier, model, optimizer, train

model.query_init.num_patterns = 3
train.output_dir = "./output/dab_detr_r50_dc5_3patterns_50ep"
