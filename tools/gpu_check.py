#!/usr/bin/env python
"""Check and benchmark the project on a CUDA machine in one command, and print one table (under 10 minutes
on one datacenter GPU).

Steps, each timed; the results go to OUTPUT/gpu_check.md (the table, ready for docs/benchmarks.md) and
gpu_check.json (everything, the commands' output tails included):
  1. environment: the GPU, CUDA and torch versions (exit 2 with a message when there is no CUDA device);
  2. tests: `pytest tests/gpu` (every detector's tiny config on CUDA gives its CPU outputs, one AMP training
     step gives finite losses and gradients);
  3. benchmark: tools/benchmark.py (through its command line) on every detector's R50 config at 800x1216,
     2 images per step, inference and training step (forward + backward), in float32 and under AMP
     (CUDA-synchronised medians of --bench-iters runs, allocator peak memory);
  4. only with --train (adds several minutes): each tiny synthetic config trained --train-iters iterations on
     CUDA with and without AMP through tools/lazyconfig_train_net.py, against its untrained evaluation
     (the chance level): every logged loss finite and the final AP50 above max(10 x chance, --min-ap50).

The table: one row per detector (sd_detr.model_zoo.detectors()): training images/s with AMP off and on,
inference images/s with AMP off and on, peak memory of the training step (GB) off and on.

Examples:
  bash tools/gpu_check.sh                        # tests + the table, results in output/gpu_check/
  python tools/gpu_check.py --dry-run            # print the planned commands (no GPU needed)
  python tools/gpu_check.py --train --train-iters 200 --detectors sd_detr
"""
import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run from a clone

from sd_detr.engine.gpu_check import (STEPS, CheckOptions, CheckTools, detector_table, format_plan,  # noqa: E402
                                      plan, run_gpu_check)

# this clone's tools, named as the commands run them (in the clone)
TOOLS = CheckTools(benchmark="tools/benchmark.py", train="tools/lazyconfig_train_net.py", cuda_tests="tests/gpu")


def parse_args(argv=None):
    names = list(detector_table())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=CheckOptions.output, help="folder for runs, gpu_check.md and .json")
    parser.add_argument("--detectors", nargs="+", choices=names, default=names)
    parser.add_argument("--skip", nargs="+", choices=STEPS[:2], default=[], help="steps to leave out")
    parser.add_argument("--train", action="store_true",
                        help="also train the tiny configs with and without AMP (several minutes more)")
    parser.add_argument("--train-iters", type=int, default=CheckOptions.train_iters,
                        help="training iterations per tiny run (--train)")
    parser.add_argument("--min-ap50", type=float, default=CheckOptions.min_ap50,
                        help="AP50 a trained tiny run must exceed (--train)")
    parser.add_argument("--bench-iters", type=int, default=CheckOptions.bench_iters,
                        help="timed runs per benchmark measurement")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit (no GPU needed)")
    args = parser.parse_args(argv)
    try:
        options = CheckOptions(output=args.output, detectors=args.detectors, skip=args.skip, train=args.train,
                               train_iters=args.train_iters, min_ap50=args.min_ap50, bench_iters=args.bench_iters)
    except ValueError as e:
        parser.error(str(e))
    return options, args.dry_run


def main(argv=None):
    options, dry_run = parse_args(argv)
    if dry_run:
        for line in format_plan(plan(options, TOOLS)).splitlines():
            print(line)
        return 0
    return run_gpu_check(options, TOOLS, cwd=REPO)


if __name__ == "__main__":
    sys.exit(main())
