"""Train or evaluate an sd_detr model from a LazyConfig file (the library side of
tools/lazyconfig_train_net.py, Detectron2's lazyconfig_train_net with the DETR recipe): the set-up of a run
(own data, checked overrides, one run per output folder, Detectron2's default_setup, the ``sd_detr`` logger)
and the run itself (:func:`main`, which the tool starts in each process)."""
import logging

from detectron2.config import LazyConfig
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import check_override_keys
from ..data import apply_custom_datasets
from .output_dir import check_fresh_output_dir, lock_output_dir
from .train_loop import do_eval_only, do_train

logger = logging.getLogger("sd_detr")


class _HeldRecords(logging.Handler):
    """Holds the ``sd_detr`` records logged before the logger's handlers exist (log.txt lives in
    ``train.output_dir``, known only once the overrides are applied): e.g. the own data registered
    (``--dataset-train/--dataset-val``). (The synthetic data are generated later, when first loaded.)"""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def setup(args):
    """``args``: the namespace of tools/lazyconfig_train_net.py's parser (Detectron2's
    ``default_argument_parser`` with ``dataset_train``, ``dataset_val`` and ``overwrite``). Load the config, point it at own data (``--dataset-train/--dataset-val``, before the overrides so
    that the user's overrides win), check and apply the overrides, then Detectron2's ``default_setup``
    and the ``sd_detr`` logger (console on the main process, ``output_dir/log.txt``) in every worker."""
    stray = [o for o in args.opts if o.startswith("--")]
    if stray:
        raise ValueError(f"option(s) {stray} after the key=value overrides: put every --option before the "
                         f"first key=value (argparse takes everything after it as overrides)")
    if not args.config_file:  # Detectron2's parser defaults it to "" (LazyConfig.load("") fails obscurely)
        raise ValueError("--config-file is required: the LazyConfig .py (or a run's config.yaml) to train or "
                         "evaluate, e.g. --config-file projects/sd_detr/configs/sd_detr_tiny_synthetic.py")
    cfg = LazyConfig.load(args.config_file)
    if args.dataset_train or args.dataset_val:
        apply_custom_datasets(cfg, train=args.dataset_train, val=args.dataset_val)
    check_override_keys(cfg, args.opts)  # unknown keys and wrong types, before anything is built
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    if not args.eval_only and comm.is_main_process():
        # One run per folder, decided before default_setup writes config.yaml and log.txt into it: a second
        # run stops at once (the lock is held until this process ends, a SIGKILL included), and a fresh run
        # does not mix with another run's checkpoints and metrics.
        lock_output_dir(cfg.train.output_dir)
        if not args.resume:
            check_fresh_output_dir(cfg.train.output_dir, args.overwrite, keep=[cfg.train.init_checkpoint])
    default_setup(cfg, args)
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="sd_detr")
    return cfg


def main(args):
    """Set up (:func:`setup`, the records logged before the log files exist replayed into them) and train,
    or with ``args.eval_only`` evaluate (returns the results)."""
    held, level = _HeldRecords(), logger.level
    logger.addHandler(held)
    logger.setLevel(min(level or logging.INFO, logging.INFO))
    try:
        cfg = setup(args)
    finally:
        logger.removeHandler(held)
        if not logger.handlers:  # set-up failed before the handlers exist: leave the logger as it was
            logger.setLevel(level)
        for record in held.records:  # to log.txt and the console; else (failed) warnings go to stderr
            logger.handle(record)
    if args.eval_only:
        return do_eval_only(cfg)
    do_train(cfg, resume=args.resume, overwrite=args.overwrite)
