"""DAB-DETR-R50* with 3 pattern embeddings (Anchor DETR), 50 epochs (paper Table 2: 42.6 AP): every
anchor is used with each pattern, so the decoder runs 3 x 300 queries."""
from .dab_detr_r50_50ep import dataloader, lr_multiplier, model, optimizer, train

model.query_init.num_patterns = 3
train.output_dir = "./output/dab_detr_r50_3patterns_50ep"
