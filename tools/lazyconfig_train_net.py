#!/usr/bin/env python
"""Train or evaluate an sd_detr model from a LazyConfig file (Detectron2's lazyconfig_train_net, with
the DETR recipe: gradient clipping, backbone learning rate, strict checkpoints, checked overrides).

Examples:
  # train the small Conditional DETR on the synthetic data (CPU, a few minutes)
  python tools/lazyconfig_train_net.py \\
      --config-file projects/conditional_detr/configs/conditional_detr_tiny_synthetic.py
  # Conditional DETR-R50, 50 epochs on COCO with 8 GPUs
  python tools/lazyconfig_train_net.py --num-gpus 8 \\
      --config-file projects/conditional_detr/configs/conditional_detr_r50_50ep.py
  # resume an interrupted run from output_dir/last_checkpoint (runs a final evaluation that did not finish)
  python tools/lazyconfig_train_net.py --config-file ... --resume
  # start over in a folder that holds another run's checkpoints (deletes them; without it the run refuses)
  python tools/lazyconfig_train_net.py --config-file ... --overwrite
  # evaluate a checkpoint
  python tools/lazyconfig_train_net.py --config-file ... --eval-only train.init_checkpoint=model_final.pth
  # any config value can be overridden with key=value (options first, overrides last)
  python tools/lazyconfig_train_net.py --config-file ... train.max_iter=100 dataloader.train.total_batch_size=4
  # own COCO-format data: JSON:IMAGES (annotation file, colon, image folder); num_classes follows its categories
  python tools/lazyconfig_train_net.py --config-file projects/sd_detr/configs/sd_detr_r50_12ep.py \\
      --dataset-train train.json:images/train --dataset-val val.json:images/val train.output_dir=output/mine
  # several CPU processes (gloo) without CUDA: --num-gpus is the number of processes; or with torchrun
  python tools/lazyconfig_train_net.py --num-gpus 2 --config-file ...
  torchrun --nproc_per_node 2 tools/lazyconfig_train_net.py --config-file ...
  # several machines with Detectron2's launcher: the same command on each, its own --machine-rank, and the
  # address of machine 0 (CUDA: NCCL, --num-gpus GPUs per machine; no CUDA: gloo, --num-gpus CPU processes)
  python tools/lazyconfig_train_net.py --num-gpus 8 --num-machines 2 --machine-rank 0 \\
      --dist-url tcp://MASTER_IP:PORT --config-file ...
"""
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

import sd_detr  # noqa: E402,F401  (first: registers the models, quiets import-time warnings)

from detectron2.config import LazyConfig  # noqa: E402
from detectron2.engine import default_argument_parser, default_setup  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from sd_detr.config import check_override_keys  # noqa: E402
from sd_detr.data import apply_custom_datasets  # noqa: E402
from sd_detr.engine import do_eval_only, do_train  # noqa: E402
from sd_detr.engine.distributed import (  # noqa: E402
    check_launch_args, init_torchrun_process_group, launch, launched_by_torchrun,
)
from sd_detr.engine.output_dir import check_fresh_output_dir, lock_output_dir  # noqa: E402

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
    """Load the config, point it at own data (``--dataset-train/--dataset-val``, before the overrides so
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


def get_parser():
    parser = default_argument_parser(epilog=__doc__)
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--dataset-train", metavar="JSON:IMAGES", default=None,
                        help="train on own COCO-format data: annotation file, a colon, the image folder "
                             "(model and criterion num_classes follow its categories)")
    parser.add_argument("--dataset-val", metavar="JSON:IMAGES", default=None,
                        help="evaluate on own COCO-format data (same categories as --dataset-train)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a fresh run (no --resume) in a train.output_dir that holds another run's "
                             "checkpoints or metrics.json: delete them (last_checkpoint, model_*.pth, "
                             "metrics.json, final_evaluation.json, TensorBoard events) first. Without it such "
                             "a run refuses to start")
    return parser


if __name__ == "__main__":
    args = get_parser().parse_args()
    if launched_by_torchrun():
        init_torchrun_process_group()
        main(args)
    else:
        try:
            check_launch_args(args.num_gpus, args.num_machines, args.machine_rank, args.dist_url)
        except ValueError as e:
            sys.exit(f"lazyconfig_train_net.py: {e}")
        # Detectron2's launcher; without CUDA, --num-gpus is the number of CPU processes per machine (gloo)
        launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,))
