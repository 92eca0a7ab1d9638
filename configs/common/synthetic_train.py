"""The training budget of every tiny config on the synthetic shapes data (CPU, about 6 minutes on
2 cores): AdamW lr 4e-4 everywhere (the backbone trains from scratch, so no x0.1), 3000 iterations of
8 images (75 epochs of the 320 training images), lr x0.1 after 2700; one evaluation at the end.
Tests shorten it with overrides (see tests/engine/test_train_eval_e2e.py)."""
from detectron2.config import LazyCall as L
from fvcore.common.param_scheduler import MultiStepParamScheduler

from sd_detr.config import get_config

optimizer = get_config("common/optim.py").optimizer
optimizer.lr = 4e-4
optimizer.params.backbone_lr_factor = 1.0

lr_multiplier = L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[2700, 3000])

train = get_config("common/train.py").train
train.max_iter = 3000
train.init_checkpoint = ""  # nothing to download: every weight starts from its initialisation
train.eval_period = 3000
train.checkpointer.period = 1000
train.log_period = 50
