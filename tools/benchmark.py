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
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

TASKS = ("flops", "inference", "train", "interleaved", "interleaved_train")
INTERLEAVED = ("interleaved", "interleaved_train")
DEFAULT_SIZE, DEFAULT_BATCH = [800, 1216], 1

# name -> input size, batch, and the config overrides of every config (each key must exist in it)
PRESETS = {
    "small": {
        "size": [320, 320],
        "batch": 4,
        "overrides": [
            "model.backbone.depth=18",
            "model.backbone.res2_out_channels=64",  # basic blocks: res2 64 ... res5 512 channels
            "model.hidden_dim=128",
            "model.encoder.num_layers=3",
            "model.decoder.num_layers=3",
            "model.query_init.num_queries=100",
        ],
    },
}


def preset_overrides(cfg, preset):
    """The overrides of ``preset`` (a name of :data:`PRESETS` or None) for the loaded config ``cfg``:
    the preset's list, plus ``model.criterion.assigner.repeat_stages`` = every decoder layer but the last
    where the config has such an assigner (SD-DETR's [0..4] would wrap around 3 layers)."""
    if preset is None:
        return []
    out = list(PRESETS[preset]["overrides"])
    layers = next(int(o.split("=", 1)[1]) for o in out if o.startswith("model.decoder.num_layers="))
    assigner = cfg.model.get("criterion", {}).get("assigner", None)
    if assigner is not None and assigner.get("repeat_stages", None) is not None:
        out.append(f"model.criterion.assigner.repeat_stages=[{','.join(str(i) for i in range(layers - 1))}]")
    return out


def apply_preset_sizes(args):
    """Fill ``args.size`` / ``args.batch`` left unset (None) from the preset, else the defaults."""
    preset = PRESETS[args.preset] if args.preset else {}
    if args.size is None:
        args.size = list(preset.get("size", DEFAULT_SIZE))
    if args.batch is None:
        args.batch = preset.get("batch", DEFAULT_BATCH)
    return args


def _random_inputs(batch, size, num_classes, with_targets, seed=0):
    import torch
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(seed)
    h, w = size
    inputs = []
    for _ in range(batch):
        x = {"image": torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8), "height": h, "width": w}
        if with_targets:
            n = 10  # about COCO's mean number of objects per image (7.3)
            xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
            wh = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3]) + 8
            inst = Instances((h, w))
            inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], 1))
            inst.gt_classes = torch.randint(0, num_classes, (n,), generator=g)
            x["instances"] = inst
        inputs.append(x)
    return inputs


def _peak_memory_gb(device):
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 1024**3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def _seconds(fn, device):
    """Wall time of ``fn()``, CUDA work included."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def _timed_runs(fn, args):
    """``args.iters`` wall times of ``fn()`` after ``args.warmup`` untimed calls."""
    times = [_seconds(fn, args.device) for _ in range(args.warmup + args.iters)]
    return times[args.warmup:]


def _interleaved_rounds(args, steps):
    """Call each of ``steps`` once per round, the order rotated each round; returns per step the
    ``args.iters`` wall times after ``args.warmup`` warm-up rounds."""
    n = len(steps)
    times = [[] for _ in steps]
    for r in range(args.warmup + args.iters):
        for j in [(r + i) % n for i in range(n)]:
            t = _seconds(steps[j], args.device)
            if r >= args.warmup:
                times[j].append(t)
    return times


def _relative_rows(paths, times, time_key, rel_key):
    """Per config: median and fastest time, the median [IQR] over rounds of the ratio to the first
    config within the round, and the ratio of the fastest runs. Keys: ``{time_key}``, ``{time_key}_all``,
    ``{time_key_without_s}_min_s``, ``{rel_key}``, ``{rel_key}_iqr``, ``{rel_key}_min``."""
    base = time_key[:-2]  # "interleaved_s" -> "interleaved"
    rows = []
    for path, t in zip(paths, times):
        ratios = sorted(a / b for a, b in zip(t, times[0]))
        q1, med, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        # the fastest run: what the model costs when nothing else interferes (timeit's estimator)
        rows.append({"config": path, time_key: statistics.median(t), rel_key: med, f"{rel_key}_iqr": [q1, q3],
                     f"{base}_min_s": min(t), f"{rel_key}_min": min(t) / min(times[0]), f"{time_key}_all": t})
    return rows


def run_interleaved(args, load):
    """Inference of all configs, alternating within each round; returns the JSON-able result."""
    import torch

    models = [load(path).eval() for path in args.config_file]
    inputs = [_random_inputs(args.batch, args.size, m.num_classes, False) for m in models]
    with torch.inference_mode(), torch.autocast("cuda", enabled=getattr(args, "amp", False)):
        times = _interleaved_rounds(args, [lambda m=m, x=x: m(x) for m, x in zip(models, inputs)])
    return _relative_rows(args.config_file, times, "interleaved_s", "relative")


def _train_step(model, inputs, amp=False):
    """One optimizer-free training step: losses, their sum's backward, gradients dropped."""
    import torch

    scaler = torch.amp.GradScaler("cuda") if amp else None

    def step():
        with torch.autocast("cuda", enabled=amp):
            loss = sum(model(inputs).values())
        (scaler.scale(loss) if scaler is not None else loss).backward()
        model.zero_grad(set_to_none=True)

    return step


def run_interleaved_train(args, load):
    """Training steps of all configs, alternating within each round; returns the JSON-able result."""
    models = [load(path).train() for path in args.config_file]
    amp = getattr(args, "amp", False)
    steps = [_train_step(m, _random_inputs(args.batch, args.size, m.num_classes, True), amp) for m in models]
    times = _interleaved_rounds(args, steps)
    return _relative_rows(args.config_file, times, "interleaved_train_s", "train_relative")


def run_child(args):
    """One measurement of one config (all configs for ``interleaved``); prints one JSON line."""
    import torch
    from detectron2.config import LazyConfig, instantiate

    import sd_detr  # noqa: F401
    from sd_detr.config import check_override_keys

    torch.set_num_threads(args.threads)

    def load(path):
        cfg = LazyConfig.load(path)
        opts = preset_overrides(cfg, args.preset) + list(args.opts)  # the user's last: they win
        check_override_keys(cfg, opts)
        cfg = LazyConfig.apply_overrides(cfg, opts)
        torch.manual_seed(0)
        model = instantiate(cfg.model).to(args.device)
        from sd_detr.engine.accel import optimize_for_cpu

        optimize_for_cpu(model, onednn_linear=not args.no_cpu_accel, value_padding=not args.no_cpu_accel,
                         channels_last=not args.no_cpu_accel)
        return model

    if args.child in INTERLEAVED:
        run = run_interleaved if args.child == "interleaved" else run_interleaved_train
        print("BENCHMARK_RESULT " + json.dumps({"task": args.child, "rows": run(args, load)}))
        return
    device = args.device
    model = load(args.config_file[0])
    out = {"config": args.config_file[0], "task": args.child}
    if args.child == "flops":
        from sd_detr.utils.flops import flop_count_analysis

        model.eval()
        image = _random_inputs(1, args.size, model.num_classes, False)[0]["image"].to(device)
        analysis = flop_count_analysis(model, image)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        out["gflops"] = analysis.total() / 1e9
        out["gflops_backbone"] = analysis.by_module()["detector.backbone"] / 1e9
        out["unsupported_ops"] = dict(analysis.unsupported_ops())
        out["params"] = sum(p.numel() for p in model.parameters())
    elif args.child == "inference":
        model.eval()
        inputs = _random_inputs(args.batch, args.size, model.num_classes, False)
        with torch.inference_mode(), torch.autocast("cuda", enabled=args.amp):
            times = _timed_runs(lambda: model(inputs), args)
        out["inference_s"] = statistics.median(times)
        out["inference_s_all"] = times
    else:
        model.train()
        inputs = _random_inputs(args.batch, args.size, model.num_classes, True)
        times = _timed_runs(_train_step(model, inputs, args.amp), args)
        out["train_s"] = statistics.median(times)
        out["train_s_all"] = times
    out["peak_memory_gb"] = _peak_memory_gb(device)
    print("BENCHMARK_RESULT " + json.dumps(out))


def machine_description(device, threads):
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
    parser.add_argument("--child", choices=TASKS, help=argparse.SUPPRESS)
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
    if args.child:
        return run_child(args)

    def child(task, configs):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", task, "--config-file", *configs,
               "--size", *map(str, args.size), "--batch", str(args.batch), "--threads", str(args.threads),
               "--iters", str(args.iters), "--warmup", str(args.warmup), "--device", args.device,
               *(["--amp"] if args.amp else []), *(["--no-cpu-accel"] if args.no_cpu_accel else []),
               *(["--preset", args.preset] if args.preset else []), *args.opts]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
                   PYTHONWARNINGS="ignore")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        result = next((json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines()
                       if line.startswith("BENCHMARK_RESULT ")), None)
        if proc.returncode != 0 or result is None:
            sys.exit(f"benchmark of {' '.join(configs)} ({task}) failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        return result

    rows = []
    for config in args.config_file:
        row = {"config": config}
        for task in args.tasks:
            if task in INTERLEAVED:
                continue
            result = child(task, [config])
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
        for row, result in zip(rows, child(task, args.config_file)["rows"]):
            row.update({k: v for k, v in result.items() if k != "config"})
            print(f"{os.path.relpath(row['config'])} {task}: median {result[time_key]:.3f} s, "
                  f"x{result[rel_key]:.3f} of the first config", flush=True)
    machine = machine_description(args.device, args.threads)
    table = format_table(rows, args)
    command = "python " + " ".join([os.path.relpath(__file__)] + [a if " " not in a else f'"{a}"' for a in (argv or sys.argv[1:])])
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


if __name__ == "__main__":
    main()
