"""Step learning-rate schedules counted in epochs: x1 until the drop, x0.1 after it.

COCO train2017 has 118,287 images; at 16 images per iteration an epoch is 7,393 iterations.
12 epochs drop after 11, 50 epochs drop after 40 (the papers' schedules).
"""
import math

from detectron2.config import LazyCall as L
from fvcore.common.param_scheduler import MultiStepParamScheduler

COCO_TRAIN_IMAGES = 118287


def iters_per_epoch(num_images: int = COCO_TRAIN_IMAGES, batch_size: int = 16) -> int:
    return math.ceil(num_images / batch_size)


def step_schedule(epochs: int, drop_epochs: int, epoch_iters: int = iters_per_epoch()) -> dict:
    """{"lr_multiplier": LazyCall, "max_iter": int} for ``epochs`` epochs with a x0.1 drop after
    ``drop_epochs``. Configs set ``lr_multiplier = s.lr_multiplier`` and ``train.max_iter = s.max_iter``."""
    max_iter = epochs * epoch_iters
    multiplier = L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[drop_epochs * epoch_iters, max_iter])
    return dict(lr_multiplier=multiplier, max_iter=max_iter)


schedule_12ep = step_schedule(12, 11)
schedule_50ep = step_schedule(50, 40)
