"""Table 3 "split decoder" (two complete decoders) at the tiny synthetic size (as table3_split_decoder.py)."""
from .table2_dfl_tiny_synthetic import dataloader, lr_multiplier, model, optimizer, train

model.decoder.shared_self_attn = False
train.output_dir = "./output/sd_detr_ablations/table3_split_decoder_tiny_synthetic"
