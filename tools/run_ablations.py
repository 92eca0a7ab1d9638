#!/usr/bin/env python
"""Run ablation tables on the synthetic data and write them to docs/ablations.md.

Every row is trained with N seeds (``--seeds``, default 3: ``train.seed`` = 42, 43, 44; 42 is every
config's default, configs/common/train.py). A run is tools/lazyconfig_train_net.py exactly as a user runs
it: a tiny config (with its budget, configs/common/synthetic_train.py) plus optional ``key=value``
overrides and ``train.seed=S``. Detectron2's ``default_setup`` seeds torch, numpy and random with it, so
the seed changes the model's initial weights, the training sampler's order and the augmentations. The
run's final COCO evaluation gives AP, AP50 and AP75 on the seen-domain val split; its ``model_final.pth``
is then evaluated (``--eval-only``) on each of the table's extra evaluation sets, by default the three
domain-shifted synthetic splits: ``sd_detr_synthetic_val_shift`` (new-domain AP: checkerboard backgrounds
and striped objects, never seen in training) and its one-change twins ``..._val_shift_objects`` (striped
objects on the seen backgrounds: new-objects AP) and ``..._val_shift_background`` (checkerboards behind
the seen flat objects: new-background AP). A row reports the mean, sample standard deviation and number
of seeds of each metric: ``mean ± std (n)``.

Each seed's run has its own output folder (``output/ablations/CONFIG-HASH-sSEED``; HASH from the config,
overrides and ``--opts``); rows with the same config and overrides run once and are shared between
tables. A finished run (and each finished evaluation, ``eval_DATASET/results.json``) is reused unless
``--rerun`` is given, so an interrupted session picks up where it stopped and ``--seeds 5`` after
``--seeds 3`` trains only the two new seeds.

Tables are data (``TABLES`` in sd_detr/ablations/tables.py): to add one, list its rows. docs/ablations.md
has one section per table between ``<!-- table:NAME -->`` markers; running a table rewrites only its own section.

On a CPU shared with other jobs, run it with ``OMP_NUM_THREADS=1``: with more threads than free cores,
PyTorch's intra-op threads spin and one training iteration costs many times the CPU time.

Examples:
  python tools/run_ablations.py                       # every table, 3 seeds per row
  python tools/run_ablations.py --table sd_detr_table2 --table sd_detr_table3
  python tools/run_ablations.py --table stage_assigner --seeds 5
  python tools/run_ablations.py --list
  python tools/run_ablations.py --table sd_detr_table2 --opts train.max_iter=100 lr_multiplier.milestones=[90,100] train.eval_period=100
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from sd_detr.ablations import TABLES, TrainTool, list_text, run_tables, seeds_for  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the clone's training tool, run in the clone (the rows' configs are paths in it)
TRAIN_TOOL = TrainTool(path=os.path.join("tools", "lazyconfig_train_net.py"), cwd=REPO)
DOC = os.path.join(REPO, "docs", "ablations.md")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="append", choices=sorted(TABLES), help="table(s) to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the tables and their rows")
    parser.add_argument("--output-root", default=os.path.join(REPO, "output", "ablations"))
    parser.add_argument("--doc", default=DOC, help="markdown file to update")
    parser.add_argument("--rerun", action="store_true", help="train again even when a finished run exists")
    parser.add_argument("--opts", nargs="*", default=[], help="key=value overrides added to every row")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per row (train.seed = 42, 43, ...; default 3)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    names = args.table or list(TABLES)
    if args.list:
        print(list_text(names))
        return
    run_tables(names, seeds_for(args.seeds), args.output_root, args.opts, args.rerun, args.doc, TRAIN_TOOL,
               log=lambda text: print(text, flush=True))


if __name__ == "__main__":
    main()
