"""Run by tests/engine/test_distributed.py under ``torchrun --nproc_per_node 2``: trains the tiny config a
few iterations through sd_detr's train loop (the training tool's code path), evaluates, and saves this
worker's parameters for the test to compare."""
import os
import sys

import torch
from detectron2.config import LazyConfig
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from sd_detr.engine import do_train  # noqa: E402
from sd_detr.engine.distributed import init_torchrun_process_group  # noqa: E402

if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    init_torchrun_process_group()
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    default_setup(cfg, args)
    trainer = do_train(cfg)
    params = {k: v.detach().cpu().clone() for k, v in trainer.model.module.state_dict().items()}
    torch.save({"world_size": comm.get_world_size(), "state": params},
               os.path.join(cfg.train.output_dir, f"rank{comm.get_rank()}.pth"))
    comm.synchronize()
