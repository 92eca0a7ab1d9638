#!/usr/bin/env python
"""Benchmark detectors side by side: parameters, GFLOPs (fvcore), inference latency, training
iteration time and peak memory, at a stated input size, batch and thread count.

Each (config, measurement) runs in a fresh subprocess so that peak memory (RSS on CPU, the CUDA
allocator's peak on GPU) belongs to that measurement alone. Latencies are medians of repeated runs
after warm-up; on CUDA they are synchronised. Measure on an idle machine: other jobs on the same cores
inflate the timings several times.

The ``interleaved`` task compares inference latencies: one process builds every config's model and
runs them in turn, round after round (the order rotated each round), so that a slow spell of a shared
machine hits every model alike. It reports each model's median and fastest latency, its latency
relative to the first config as the median (and the interquartile range) over rounds of the ratio
within the round, and the ratio of the fastest runs (``timeit``'s estimator: interference only adds
time). ``interleaved_train`` does the same for the training step (forward with the criterion, backward,
gradients dropped; no optimizer) on random inputs with 10 random boxes per image.

``--preset small`` is the small size of issue 13: ResNet-18 backbone (res5, 512 channels), width
(``model.hidden_dim``) 128, 3 encoder and 3 decoder layers, 100 queries, input 320x320, batch 4; for an
assigner with repeated positives (SD-DETR) they apply to every decoder layer but the last, as in the
full-size config. Everything else (heads, FFN width, dropout) stays the config's. An explicit
``--size`` / ``--batch`` and the trailing overrides win over the preset.

Examples:
  python tools/benchmark.py --config-file projects/conditional_detr/configs/conditional_detr_r50_50ep.py
  python tools/benchmark.py --threads 2 --size 800 1216 \\
      --config-file projects/conditional_detr/configs/conditional_detr_r50_50ep.py \\
                    projects/dab_detr/configs/dab_detr_r50_50ep.py \\
      --markdown docs/benchmarks.md --title "R50 at 800x1216, CPU"
  python tools/benchmark.py --preset small --tasks interleaved interleaved_train --iters 20 \\
      --config-file projects/conditional_detr/configs/conditional_detr_r50_50ep.py \\
                    projects/sd_detr/configs/sd_detr_r50_50ep.py
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from sd_detr.benchmark import (DEFAULT_BATCH, DEFAULT_SIZE, PRESETS, TASKS, BenchmarkError,  # noqa: E402
                               apply_preset_sizes, command_line, run_benchmark)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", nargs="+", required=True, help="one or more LazyConfig files")
    parser.add_argument("--size", nargs=2, type=int, default=None, metavar=("H", "W"),
                        help=f"input size (default {DEFAULT_SIZE[0]} {DEFAULT_SIZE[1]}, or the preset's)")
    parser.add_argument("--batch", type=int, default=None, help=f"images per batch (default {DEFAULT_BATCH}, or the preset's)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="a model size: its input size, batch and config overrides (explicit --size, --batch "
                             "and overrides win); small = R18, width 128, 3+3 layers, 100 queries, 320x320, batch 4")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--iters", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--amp", action="store_true",
                        help="inference and training under CUDA autocast (float16 mixed precision; CUDA only)")
    parser.add_argument("--markdown", help="append the table, command and machine to this markdown file")
    parser.add_argument("--json", help="also write the rows, machine and settings to this JSON file")
    parser.add_argument("--title", default="Benchmark", help="section title in --markdown")
    parser.add_argument("--no-cpu-accel", action="store_true",
                        help="build the models without sd_detr.engine.accel.optimize_for_cpu (plain PyTorch)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides key=value (every config)")
    return parser


def main(argv=None):
    parser = build_parser()
    args = apply_preset_sizes(parser.parse_args(argv))
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.amp and not args.device.startswith("cuda"):
        parser.error(f"--amp needs a CUDA device (got --device {args.device})")
    try:
        run_benchmark(args, command_line(os.path.relpath(__file__), argv or sys.argv[1:]))
    except BenchmarkError as e:
        sys.exit(str(e))


if __name__ == "__main__":
    main()
