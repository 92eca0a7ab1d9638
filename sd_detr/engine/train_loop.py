"""Training and evaluation with a LazyConfig, the way Detectron2's ``tools/lazyconfig_train_net.py``
does it, plus the DETR recipe (gradient clipping, backbone learning rate) and strict checkpoints.

Expected config attributes: ``model``, ``dataloader.{train,test,evaluator}``, ``optimizer``,
``lr_multiplier``, ``train`` (see ``configs/common/train.py``).
"""
import contextlib
import json
import logging
import os

from detectron2.config import instantiate
from detectron2.engine import hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.evaluation.testing import flatten_results_dict
from detectron2.utils.events import CommonMetricPrinter, EventStorage, JSONWriter
from detectron2.utils.file_io import PathManager

from ..checkpoint import DETRCheckpointer
from ..checkpoint.checkpointer import estimate_saved_bytes
from ..data.custom import apply_custom_datasets
from ..data.checks import check_inputs_before_training
from .distributed import create_ddp_model
from .ema import EMAHook, ModelEMA, build_model_ema
from .output_dir import (
    check_fresh_output_dir, clear_final_evaluation, final_evaluation_done, lock_output_dir, record_final_evaluation,
    unlock_output_dir,
)
from .trainer import DETRTrainer
from .accel import optimize_for_cpu

logger = logging.getLogger("sd_detr")


def build_writers(output_dir: str, max_iter: int, start_iter: int = 0):
    """Detectron2's default writers: the console (with ETA), ``output_dir/metrics.json`` and TensorBoard
    events in ``output_dir`` (``events.out.tfevents.*``; ``tensorboard --logdir OUTPUT_DIR``). The set-up
    installs ``tensorboard``; in an environment without it the events are skipped with a warning.

    ``start_iter`` > 0 (a resumed run): TensorBoard drops the events of steps >= ``start_iter`` that the
    killed run wrote after its last checkpoint (its ``purge_step``), as :func:`trim_metrics` does for
    metrics.json, so each step is shown once."""
    writers = [CommonMetricPrinter(max_iter), JSONWriter(os.path.join(output_dir, "metrics.json"))]
    try:
        import torch.utils.tensorboard  # noqa: F401  (needs the tensorboard package)
    except ImportError as e:
        logger.warning("no TensorBoard events: %s (install it: pip install tensorboard; scripts/setup_env.sh "
                       "does)", e)
        return writers
    from detectron2.utils.events import TensorboardXWriter

    writers.append(TensorboardXWriter(output_dir, **({"purge_step": start_iter} if start_iter > 0 else {})))
    return writers


def do_test(cfg, model, ema: ModelEMA = None):
    """Run the test loader through the evaluator; prints and returns the results (main process).
    With ``ema`` (holding an average) the model is evaluated with the EMA weights, and its live weights are
    back afterwards (:meth:`ModelEMA.swapped_in`)."""
    if "evaluator" not in cfg.dataloader:
        return {}
    evaluator = instantiate(cfg.dataloader.evaluator)
    swap = ema.swapped_in() if ema is not None and ema.has_state() else contextlib.nullcontext()
    with swap:
        results = inference_on_dataset(model, instantiate(cfg.dataloader.test), evaluator)
    if comm.is_main_process() and results:
        print_csv_format(results)
    return results


def build_model(cfg):
    """``cfg.model`` on ``cfg.train.device`` with the CPU speed-ups applied (:func:`optimize_for_cpu`)."""
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    optimize_for_cpu(model)
    return model


def do_train(cfg, resume: bool = False, overwrite: bool = False):
    """Train ``cfg.model``; with ``resume`` continue from ``output_dir/last_checkpoint`` (model, optimizer,
    scheduler and iteration), else start from ``train.init_checkpoint``. Returns the trainer.

    With ``resume``, the rows of ``metrics.json`` past the checkpoint's iteration (logged by a run killed
    after it) are removed first, so the file holds each iteration once; a run that reached ``max_iter`` but
    whose final evaluation did not finish (killed, or the test set failed) runs the evaluation.

    One run per folder: the main process holds ``output_dir/train.lock`` while it runs (a second run fails at
    once), and a fresh run (no ``resume``) refuses a folder that holds another run's checkpoints or metrics
    unless ``overwrite`` (then those files are deleted first). Checkpoints are written atomically
    (:meth:`DETRCheckpointer.save`), and a non-finite loss or gradient stops the run before the optimizer
    steps (:class:`DETRTrainer`)."""
    apply_custom_datasets(cfg)  # own data set in cfg.dataloader.custom (configs/common/data/custom_coco.py)
    check_inputs_before_training(cfg)  # max_iter, classes, the test set's up-front checks (issue 22)
    if comm.is_main_process():  # default_setup makes it in the tools; called from Python, the writers need it
        PathManager.mkdirs(cfg.train.output_dir)
        lock_output_dir(cfg.train.output_dir)  # re-entrant: the tool took it already, before default_setup
    try:
        if comm.is_main_process() and not resume:
            check_fresh_output_dir(cfg.train.output_dir, overwrite, keep=[cfg.train.init_checkpoint])
        return _train(cfg, resume)
    finally:
        if comm.is_main_process():
            unlock_output_dir(cfg.train.output_dir)


def _train(cfg, resume: bool):
    model = build_model(cfg)
    logger.info("Model:\n%s", model)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model(model, **cfg.train.ddp)
    ema = build_model_ema(cfg, model)  # None unless train.model_ema.enabled
    clip = cfg.train.get("clip_grad", {"enabled": False})
    trainer = DETRTrainer(
        model, train_loader, optimizer,
        clip_max_norm=clip.get("max_norm", 0.0) if clip.get("enabled", False) else 0.0,
        clip_norm_type=clip.get("norm_type", 2.0),
        amp=cfg.train.amp.enabled,
    )
    extra = {"model_ema": ema} if ema is not None else {}  # saved, and restored by --resume, with the model
    checkpointer = DETRCheckpointer(model, cfg.train.output_dir, optimizer=optimizer, trainer=trainer, **extra)
    # A run's own last checkpoint must fit exactly; init weights (e.g. an ImageNet backbone) need not.
    checkpointer.strict = resume and checkpointer.has_checkpoint()
    # the hooks with state (LR scheduler) must be registered before the checkpoint restores them
    final = {}  # the last evaluation's results (EvalHook runs the final one in after_train)

    def evaluate():  # with the EMA weights when train.model_ema is on
        final["results"] = do_test(cfg, model, ema)
        return final["results"]

    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        # before the evaluation and the checkpointer (registered below): they see this step's average
        EMAHook(ema) if ema is not None else None,
        hooks.EvalHook(cfg.train.eval_period, evaluate),
    ])
    if resume and not checkpointer.has_checkpoint():
        logger.warning("--resume: no checkpoint in %s; starting from train.init_checkpoint", cfg.train.output_dir)
    if comm.is_main_process():
        checkpointer.remove_stale_temporary_files()  # left by a save that was killed; the lock is ours
        # a full disk is an error now, not after the first period of training (the optimizer's state, empty
        # before the first step, adds to this at the checkpoints, where it is checked again)
        checkpointer.check_free_space(estimate_saved_bytes(model.state_dict()) * (2 if ema is not None else 1))
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
    if cfg.train.max_iter == 0:
        evaluate_initial_weights(cfg, model, ema)
        return trainer
    metrics_file = os.path.join(cfg.train.output_dir, "metrics.json")
    if start_iter == cfg.train.max_iter and not comm.all_gather(
            final_evaluation_done(cfg.train.output_dir, cfg.train.max_iter))[0]:  # the main process's folder
        # The final evaluation is part of the run: killed during it, or failed (e.g. an unreadable test
        # image, since fixed), it runs now. A row of an evaluation killed before its record is dropped first.
        logger.info("--resume: resumed at iteration %d = max_iter, but the final evaluation did not finish: "
                    "running it now", start_iter)
        if comm.is_main_process():
            trim_metrics(metrics_file, start_iter)
        evaluate_and_log(cfg, model, start_iter, final=True, ema=ema)
        return trainer
    if start_iter >= cfg.train.max_iter:
        logger.info("--resume: resumed at iteration %d %s max_iter (%d), nothing to train",
                    start_iter, "=" if start_iter == cfg.train.max_iter else ">", cfg.train.max_iter)
        return trainer
    if resume and comm.is_main_process():
        # A run killed after its last checkpoint logged iterations that are trained again now. (Not when
        # nothing is trained: a finished run's final evaluation row has iteration max_iter.)
        trim_metrics(metrics_file, start_iter)
    if comm.is_main_process():
        clear_final_evaluation(cfg.train.output_dir)  # due again at the end of this training
    # Registered only now, after the resume (JSONWriter opens metrics.json for appending when it is built).
    # Order within a step: evaluation, then the writer (so a step's evaluation lands in its row), then the
    # checkpointer: a step is checkpointed only once its row is on disk, so a kill between the two can only
    # leave rows past the last checkpoint, which the resume above drops. (Checkpointing before writing, as
    # Detectron2's DefaultTrainer does, loses the checkpointed step's row when killed in between.)
    trainer.register_hooks([
        hooks.PeriodicWriter(build_writers(cfg.train.output_dir, cfg.train.max_iter, start_iter),
                             period=cfg.train.log_period)
        if comm.is_main_process() else None,
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if comm.is_main_process() else None,
    ])
    trainer.train(start_iter, cfg.train.max_iter)
    if comm.is_main_process():  # the final evaluation's row is written (PeriodicWriter.after_train)
        record_final_evaluation(cfg.train.output_dir, cfg.train.max_iter,
                                _float_results(final.get("results") or {}))
    return trainer


def trim_metrics(metrics_file: str, start_iter: int) -> int:
    """Drop the rows of ``metrics_file`` (Detectron2's JSONWriter: one JSON object per line) whose
    ``"iteration"`` is >= ``start_iter``, and a last line cut short by a killed process, so that a resumed
    run logs each iteration once. Other lines are kept verbatim (rows without an iteration, and a
    malformed line in the middle: it is not ours to delete). The file is replaced atomically.
    Returns the number of lines dropped; a missing file is left alone (0)."""
    if not os.path.isfile(metrics_file):
        return 0
    with open(metrics_file, encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    kept, dropped_rows, truncated = [], 0, False
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            if i == len(lines) - 1:  # written by a process killed mid-line
                truncated = True
                continue
            kept.append(line)
            continue
        if isinstance(row, dict) and isinstance(row.get("iteration"), (int, float)) and row["iteration"] >= start_iter:
            dropped_rows += 1
            continue
        kept.append(line if line.endswith("\n") else line + "\n")
    if not dropped_rows and not truncated:
        return 0
    tmp = metrics_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(kept)
    os.replace(tmp, metrics_file)
    logger.info("--resume from iteration %d: removed %d rows of iterations >= %d%s from %s (they are trained "
                "again)", start_iter, dropped_rows, start_iter, " and a truncated last line" if truncated else "",
                metrics_file)
    return dropped_rows + int(truncated)


def evaluate_initial_weights(cfg, model, ema: ModelEMA = None):
    """``train.max_iter=0``: nothing to train (Detectron2's LR scheduler cannot take 0 iterations), so
    evaluate the weights as loaded (the EMA's if a resumed checkpoint holds one) and log the results to
    metrics.json like a run's final evaluation; the tests use it for the chance level of the untrained model."""
    return evaluate_and_log(cfg, model, 0, ema=ema)


def evaluate_and_log(cfg, model, iteration: int, final: bool = False, ema: ModelEMA = None):
    """Evaluate ``model`` (:func:`do_test`, with ``ema``'s weights if given) and log the results to
    metrics.json as the row of ``iteration``, as the EvalHook does; with ``final``, then record that the
    run's final evaluation finished (``output_dir/final_evaluation.json``)."""
    results = do_test(cfg, model, ema)
    if comm.is_main_process():
        if results:
            with EventStorage(iteration) as storage:
                storage.put_scalars(**flatten_results_dict(results), smoothing_hint=False)
                writer = JSONWriter(os.path.join(cfg.train.output_dir, "metrics.json"))
                writer.write()
                writer.close()
        if final:
            record_final_evaluation(cfg.train.output_dir, iteration, _float_results(results or {}))
    return results


def _float_results(results) -> dict:
    """Flat ``{"bbox/AP": float, ...}`` of nested evaluation results (JSON-ready)."""
    out = {}
    for k, v in flatten_results_dict(results).items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            pass
    return out


def do_eval_only(cfg):
    """Evaluate ``train.init_checkpoint``; the checkpoint must fit the model exactly. With
    ``train.model_ema.enabled`` and ``train.model_ema.use_ema_weights_for_eval_only`` (detrex's options) the
    checkpoint's EMA weights are evaluated; a checkpoint without them is then an error."""
    apply_custom_datasets(cfg)
    model = build_model(cfg)
    model = create_ddp_model(model)
    if not cfg.train.init_checkpoint:
        raise ValueError("--eval-only needs a checkpoint: pass train.init_checkpoint=PATH")
    opts = cfg.train.get("model_ema", None) or {}
    ema = build_model_ema(cfg, model) if opts.get("use_ema_weights_for_eval_only", False) else None
    DETRCheckpointer(model, strict=True, **({"model_ema": ema} if ema is not None else {})).load(
        cfg.train.init_checkpoint)
    if ema is not None and not ema.has_state():
        raise ValueError(f"train.model_ema.use_ema_weights_for_eval_only: {cfg.train.init_checkpoint} holds no EMA "
                         f"weights (model_ema); evaluate its live weights with train.model_ema.enabled=False")
    if ema is not None:
        logger.info("--eval-only: evaluating the EMA weights of %s", cfg.train.init_checkpoint)
    return do_test(cfg, model, ema)
