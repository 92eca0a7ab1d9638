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
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

import sd_detr  # noqa: E402,F401  (first: registers the models, quiets import-time warnings)

from detectron2.engine import default_argument_parser  # noqa: E402

from sd_detr.engine.distributed import (  # noqa: E402
    check_launch_args, init_torchrun_process_group, launch, launched_by_torchrun,
)
from sd_detr.engine.train_net import main  # noqa: E402


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
