"""SD-DETR ablation, Table 3 "split decoder" (42.2 AP): two complete decoders, one per branch (each
with its own self-attention), instead of split cross-attention with a shared self-attention."""
from .table2_dfl import dataloader, lr_multiplier, model, optimizer, train

model.decoder.shared_self_attn = False
train.output_dir = "./output/sd_detr_ablations/table3_split_decoder"
