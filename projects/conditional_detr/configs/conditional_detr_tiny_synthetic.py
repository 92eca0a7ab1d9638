"""A small Conditional DETR for the synthetic shapes data, trained from scratch on CPU in minutes.

Same architecture as the paper's model, scaled down: a narrow ResNet-18 up to res4 (stride 16,
64 channels, trainable BatchNorm: from scratch, FrozenBN's identity barely learns; synchronised over
workers when training in several processes, plain BatchNorm in one), 64-d transformer
with 4 heads, 2 encoder and 3 decoder layers, 30 queries, no dropout. Budget in
configs/common/synthetic_train.py.
"""
from sd_detr.config import apply_tiny_synthetic_size, get_config

from .models.conditional_detr_r50 import model

dataloader = get_config("common/data/synthetic.py").dataloader
_budget = get_config("common/synthetic_train.py")
optimizer, lr_multiplier, train = _budget.optimizer, _budget.lr_multiplier, _budget.train
train.output_dir = "./output/conditional_detr_tiny_synthetic"

apply_tiny_synthetic_size(model)
