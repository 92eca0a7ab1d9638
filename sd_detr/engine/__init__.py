from .optim import detr_param_groups
from .predictor import LazyPredictor
from .trainer import DETRTrainer
from .train_loop import do_eval_only, do_test, do_train

__all__ = ["DETRTrainer", "LazyPredictor", "detr_param_groups", "do_eval_only", "do_test", "do_train"]
