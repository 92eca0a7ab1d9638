"""`make demo`'s recipe: the tiny SD-DETR of sd_detr_tiny_synthetic.py (same model, same data) trained to
detect within the demo's few minutes on 2 CPU cores.

What changes against the ablation budget (configs/common/synthetic_train.py, kept by the ablation configs):
a higher peak learning rate reached by a linear warm-up, then a cosine decay to zero (instead of a constant
4e-4 with a x0.1 step), over a shorter run. Measured in projects/sd_detr/README.md ("Demo recipe").
"""
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import CosineParamScheduler

from .sd_detr_tiny_synthetic import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

train.output_dir = "./output/sd_detr_tiny_synthetic_demo"
train.max_iter = 1300
train.eval_period = 1300
train.checkpointer.period = 1300

optimizer.lr = 1e-3
# warm-up: the first 100 of 1300 iterations (a fraction of the run: the scheduler sees iter / max_iter)
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=0.0),
    warmup_length=100 / 1300,
    warmup_method="linear",
    warmup_factor=0.01,
)
