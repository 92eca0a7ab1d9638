"""Training and evaluation with a LazyConfig, the way Detectron2's ``tools/lazyconfig_train_net.py``
does it, plus the DETR recipe (gradient clipping, backbone learning rate) and strict checkpoints.

Expected config attributes: ``model``, ``dataloader.{train,test,evaluator}``, ``optimizer``,
``lr_multiplier``, ``train`` (see ``configs/common/train.py``).
"""
import logging
import os

from detectron2.config import instantiate
from detectron2.engine import hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.evaluation.testing import flatten_results_dict
from detectron2.utils.events import CommonMetricPrinter, EventStorage, JSONWriter

from ..checkpoint import DETRCheckpointer
from .distributed import create_ddp_model
from .trainer import DETRTrainer

logger = logging.getLogger("sd_detr")


def build_writers(output_dir: str, max_iter: int):
    """Console (with ETA) and metrics.json writers; TensorBoard too when it is installed."""
    writers = [CommonMetricPrinter(max_iter), JSONWriter(os.path.join(output_dir, "metrics.json"))]
    try:
        from detectron2.utils.events import TensorboardXWriter

        import torch.utils.tensorboard  # noqa: F401  (needs the tensorboard package)

        writers.append(TensorboardXWriter(output_dir))
    except ImportError:
        pass
    return writers


def do_test(cfg, model):
    """Run the test loader through the evaluator; prints and returns the results (main process)."""
    if "evaluator" not in cfg.dataloader:
        return {}
    evaluator = instantiate(cfg.dataloader.evaluator)
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), evaluator)
    if comm.is_main_process() and results:
        print_csv_format(results)
    return results


def build_model(cfg):
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    return model


def do_train(cfg, resume: bool = False):
    """Train ``cfg.model``; with ``resume`` continue from ``output_dir/last_checkpoint`` (model, optimizer,
    scheduler and iteration), else start from ``train.init_checkpoint``. Returns the trainer."""
    model = build_model(cfg)
    logger.info("Model:\n%s", model)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model(model, **cfg.train.ddp)
    clip = cfg.train.get("clip_grad", {"enabled": False})
    trainer = DETRTrainer(
        model, train_loader, optimizer,
        clip_max_norm=clip.get("max_norm", 0.0) if clip.get("enabled", False) else 0.0,
        clip_norm_type=clip.get("norm_type", 2.0),
        amp=cfg.train.amp.enabled,
    )
    checkpointer = DETRCheckpointer(model, cfg.train.output_dir, optimizer=optimizer, trainer=trainer)
    # A run's own last checkpoint must fit exactly; init weights (e.g. an ImageNet backbone) need not.
    checkpointer.strict = resume and checkpointer.has_checkpoint()
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if comm.is_main_process() else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
        hooks.PeriodicWriter(build_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period)
        if comm.is_main_process() else None,
    ])
    if resume and not checkpointer.has_checkpoint():
        logger.warning("--resume: no checkpoint in %s; starting from train.init_checkpoint", cfg.train.output_dir)
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
    if cfg.train.max_iter == 0:
        evaluate_initial_weights(cfg, model)
        return trainer
    if start_iter >= cfg.train.max_iter:
        logger.info("Training already finished (iteration %d of %d)", start_iter, cfg.train.max_iter)
        return trainer
    trainer.train(start_iter, cfg.train.max_iter)
    return trainer


def evaluate_initial_weights(cfg, model):
    """``train.max_iter=0``: nothing to train (Detectron2's LR scheduler cannot take 0 iterations), so
    evaluate the weights as loaded and log the results to metrics.json like a run's final evaluation;
    the tests use it for the chance level of the untrained model."""
    results = do_test(cfg, model)
    if comm.is_main_process() and results:
        with EventStorage(0) as storage:
            storage.put_scalars(**flatten_results_dict(results), smoothing_hint=False)
            writer = JSONWriter(os.path.join(cfg.train.output_dir, "metrics.json"))
            writer.write()
            writer.close()
    return results


def do_eval_only(cfg):
    """Evaluate ``train.init_checkpoint``; the checkpoint must fit the model exactly."""
    model = build_model(cfg)
    model = create_ddp_model(model)
    if not cfg.train.init_checkpoint:
        raise ValueError("--eval-only needs a checkpoint: pass train.init_checkpoint=PATH")
    DETRCheckpointer(model, strict=True).load(cfg.train.init_checkpoint)
    return do_test(cfg, model)
