"""Learning-rate schedules: steps counted in epochs (x1 until the drop, x0.1 after it) and a constant one.

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


def constant_lr(value: float = 1.0):
    """A LazyCall of a constant learning-rate multiplier for ``lr_multiplier`` (any ``train.max_iter``).

    fvcore's ``ConstantParamScheduler`` cannot be used here: it raises for ``where >= 1``, and Detectron2's
    ``LRMultiplier`` (detectron2/solver/lr_scheduler.py, ``get_lr``) asks for ``last_epoch / max_iter``,
    which is exactly 1.0 after the last iteration's step, so training crashes at its end. A one-value
    ``MultiStepParamScheduler`` accepts ``where`` in [0, 1]; it is scale-invariant, so ``num_updates=1``
    fits every ``max_iter``. Configs take the instance below:
    ``lr_multiplier = get_config("common/schedule.py").constant_schedule`` (LazyConfig files export no
    functions); another constant: ``lr_multiplier.values=[0.5]``.
    """
    return L(MultiStepParamScheduler)(values=[float(value)], num_updates=1)


schedule_12ep = step_schedule(12, 11)
schedule_50ep = step_schedule(50, 40)
constant_schedule = constant_lr()  # x1 throughout, e.g. for fine-tuning on own data
