"""Benchmarking detectors side by side (parameters, GFLOPs, latency, training step time, peak memory):
the presets (:mod:`.presets`), inputs and timing loops (:mod:`.timing`), the measuring process
(:mod:`.child`) and the parent that runs one per measurement and writes the table (:mod:`.run`).
``tools/benchmark.py`` is the command line; :mod:`sd_detr.export.benchmark` times exported ONNX files."""
from .presets import DEFAULT_BATCH, DEFAULT_SIZE, INTERLEAVED, PRESETS, TASKS, apply_preset_sizes, preset_overrides
from .run import BenchmarkError, command_line, format_table, machine_description, run_benchmark, run_child
from .timing import (interleaved_rounds, random_inputs, relative_rows, run_interleaved, run_interleaved_train,
                     timed_runs, train_step)

__all__ = ["BenchmarkError", "DEFAULT_BATCH", "DEFAULT_SIZE", "INTERLEAVED", "PRESETS", "TASKS", "apply_preset_sizes",
           "command_line", "format_table", "interleaved_rounds", "machine_description", "preset_overrides",
           "random_inputs", "relative_rows", "run_benchmark", "run_child", "run_interleaved", "run_interleaved_train",
           "timed_runs", "train_step"]
