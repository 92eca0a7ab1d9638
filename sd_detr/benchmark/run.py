"""The benchmark's parent process: one child process per (config, measurement) (:mod:`.child`), the rows
they give, the table, and the printed, JSON and markdown outputs of ``tools/benchmark.py``."""
import json
import os
import platform
import subprocess
import sys
import time

from .child import RESULT_PREFIX, child_settings
from .presets import INTERLEAVED


class BenchmarkError(RuntimeError):
    """A measuring process failed; the message holds the ends of its output."""


def machine_description(device, threads):
    """The GPU and CUDA version, or the CPU model, core and thread count; and torch's version."""
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {threads} threads, torch {torch.__version__}"


def format_table(rows, args):
    """The markdown table of the rows: the measured columns, and the interleaved ones for the tasks run."""
    head = ["config", "params (M)", "GFLOPs", "inference s/batch", "train fwd+bwd s/batch", "peak mem inference (GB)", "peak mem train (GB)"]
    interleaved = "interleaved" in args.tasks
    interleaved_train = "interleaved_train" in args.tasks
    if interleaved:
        head += ["interleaved inference s/batch (median, min)", "latency / first config's (median [IQR] over rounds)",
                 "fastest run / first config's"]
    if interleaved_train:
        head += ["interleaved train s/batch (median, min)", "train step / first config's (median [IQR] over rounds)",
                 "fastest train step / first config's"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        def f(key, fmt):
            return fmt.format(r[key]) if key in r else "-"
        cells = [os.path.relpath(r["config"]), f("params_m", "{:.2f}"), f("gflops", "{:.1f}"), f("inference_s", "{:.3f}"),
                 f("train_s", "{:.3f}"), f("inference_mem", "{:.2f}"), f("train_mem", "{:.2f}")]
        if interleaved:
            cells += ["{:.3f}, {:.3f}".format(r["interleaved_s"], r["interleaved_min_s"]) if "relative" in r else "-",
                      "{:.3f} [{:.3f}, {:.3f}]".format(r["relative"], *r["relative_iqr"]) if "relative" in r else "-",
                      f("relative_min", "{:.3f}")]
        if interleaved_train:
            cells += ["{:.3f}, {:.3f}".format(r["interleaved_train_s"], r["interleaved_train_min_s"])
                      if "train_relative" in r else "-",
                      "{:.3f} [{:.3f}, {:.3f}]".format(r["train_relative"], *r["train_relative_iqr"])
                      if "train_relative" in r else "-",
                      f("train_relative_min", "{:.3f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def command_line(prog, argv):
    """The command as it is recorded: ``python PROG ARGS`` with the arguments that hold spaces quoted."""
    return "python " + " ".join([prog] + [a if " " not in a else f'"{a}"' for a in argv])


def run_child(args, task, configs):
    """Measure ``task`` on ``configs`` in a fresh process (``args.threads`` threads, warnings off); returns
    its result (:func:`sd_detr.benchmark.child.measure`). Raises :class:`BenchmarkError` when it fails."""
    cmd = [sys.executable, "-m", "sd_detr.benchmark.child", json.dumps(child_settings(args, task, configs))]
    # the child imports this copy of sd_detr, wherever it lies (a clone put on sys.path by a tool included)
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join([package_parent] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    result = next((json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines()
                   if line.startswith(RESULT_PREFIX)), None)
    if proc.returncode != 0 or result is None:
        raise BenchmarkError(f"benchmark of {' '.join(configs)} ({task}) failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return result


def run_benchmark(args, command):
    """Every task of ``args.tasks`` on every config of ``args.config_file`` (the settings of
    ``tools/benchmark.py``'s command line, sizes resolved: :func:`~.presets.apply_preset_sizes`): prints each
    result, then the machine, the settings and the table; writes ``args.json`` and appends to
    ``args.markdown`` (section ``args.title``, with ``command``, the command line as typed) where given.
    Returns the rows."""
    rows = []
    for config in args.config_file:
        row = {"config": config}
        for task in args.tasks:
            if task in INTERLEAVED:
                continue
            result = run_child(args, task, [config])
            if task == "flops":
                row.update(gflops=result["gflops"], params_m=result["params"] / 1e6, params=result["params"],
                           gflops_backbone=result["gflops_backbone"], unsupported_ops=result["unsupported_ops"])
            elif task == "inference":
                row.update(inference_s=result["inference_s"], inference_mem=result["peak_memory_gb"])
            else:
                row.update(train_s=result["train_s"], train_mem=result["peak_memory_gb"])
            print(f"{os.path.relpath(config)} {task}: {json.dumps({k: v for k, v in result.items() if not k.endswith('_all')})}",
                  flush=True)
        rows.append(row)
    for task, time_key, rel_key in (("interleaved", "interleaved_s", "relative"),
                                    ("interleaved_train", "interleaved_train_s", "train_relative")):
        if task not in args.tasks:
            continue
        for row, result in zip(rows, run_child(args, task, args.config_file)["rows"]):
            row.update({k: v for k, v in result.items() if k != "config"})
            print(f"{os.path.relpath(row['config'])} {task}: median {result[time_key]:.3f} s, "
                  f"x{result[rel_key]:.3f} of the first config", flush=True)
    machine = machine_description(args.device, args.threads)
    table = format_table(rows, args)
    summary = (f"{'preset ' + args.preset + ', ' if args.preset else ''}"
               f"input {args.size[0]}x{args.size[1]}, batch {args.batch}, {args.threads} threads, device {args.device}"
               f"{' (AMP float16)' if args.amp else ''}; "
               f"median of {args.iters} runs (rounds when interleaved) after {args.warmup} warm-up runs; peak memory = "
               + ("CUDA max allocated" if args.device.startswith("cuda") else "process peak RSS"))
    print(f"\n{machine}\n{summary}\n\n{table}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "summary": summary, "command": command, "amp": args.amp,
                       "device": args.device, "size": args.size, "batch": args.batch, "preset": args.preset,
                       "rows": rows}, f, indent=1)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(f"\n## {args.title}\n\nMachine: {machine}. {summary}. Date: {time.strftime('%Y-%m-%d')}.\n\n"
                    f"```\n{command}\n```\n\n{table}\n")
        print(f"appended to {args.markdown}")
    return rows
