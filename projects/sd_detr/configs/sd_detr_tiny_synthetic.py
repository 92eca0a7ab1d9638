"""A small SD-DETR for the synthetic shapes data, trained from scratch on CPU in minutes.

The paper's architecture scaled down exactly as conditional_detr_tiny_synthetic.py (narrow ResNet-18
to res4, 64-d transformer, 4 heads, 2 encoder and 3 decoder layers, 30 queries, no dropout), with the
same data and budget (configs/common/synthetic_train.py), so the two compare row for row. Repeated
positives in decoder layers 0-1, not in the last one.
"""
from sd_detr.config import apply_tiny_synthetic_size, get_config

from .models.sd_detr_r50 import model

dataloader = get_config("common/data/synthetic.py").dataloader
_budget = get_config("common/synthetic_train.py")
optimizer, lr_multiplier, train = _budget.optimizer, _budget.lr_multiplier, _budget.train
train.output_dir = "./output/sd_detr_tiny_synthetic"

apply_tiny_synthetic_size(model)
model.criterion.assigner.repeat_stages = [0, 1]
