"""`make demo`'s recipe: the tiny SD-DETR of sd_detr_tiny_synthetic.py (same model, same data, same optimizer)
with the ablation budget's schedule (AdamW lr 4e-4 constant, x0.1 for the last iterations) cut to what fits the
demo's 10 minutes on 2 idle cores: 1300 iterations of 8 images (about 0.27 s each), lr x0.1 after 1200.

Measured in projects/sd_detr/README.md ("Demo recipe"): a linear warm-up with a cosine decay (peak 1e-3 or
4e-4) did worse at this length than this step schedule, so the demo keeps it.
"""
from .sd_detr_tiny_synthetic import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

train.output_dir = "./output/sd_detr_tiny_synthetic_demo"
train.max_iter = 1300
train.eval_period = 1300
train.checkpointer.period = 1300
lr_multiplier.milestones = [1200, 1300]
