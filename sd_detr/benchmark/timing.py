"""Random inputs, timing loops and the interleaved rounds of the benchmark.

``args`` below is any object with the benchmark's settings as attributes (``device``, ``batch``, ``size``
(H, W in pixels), ``warmup``, ``iters``, ``config_file`` (list of paths), optionally ``amp``): the parsed
command line of ``tools/benchmark.py`` or a :class:`types.SimpleNamespace`. Times are wall seconds.
"""
import resource
import statistics
import time


def random_inputs(batch, size, num_classes, with_targets, seed=0):
    """``batch`` Detectron2 input dicts of uint8 images (3, H, W) with ``size`` = (H, W), seeded; with
    ``with_targets``, 10 random boxes (XYXY pixels, 8 px or more a side) and classes per image."""
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


def peak_memory_gb(device):
    """Peak memory of this process so far in GiB: the CUDA allocator's peak on ``cuda``, else the peak RSS."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 1024**3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def seconds(fn, device):
    """Wall time of ``fn()``, CUDA work included."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def timed_runs(fn, args):
    """``args.iters`` wall times of ``fn()`` after ``args.warmup`` untimed calls."""
    times = [seconds(fn, args.device) for _ in range(args.warmup + args.iters)]
    return times[args.warmup:]


def interleaved_rounds(args, steps):
    """Call each of ``steps`` once per round, the order rotated each round; returns per step the
    ``args.iters`` wall times after ``args.warmup`` warm-up rounds."""
    n = len(steps)
    times = [[] for _ in steps]
    for r in range(args.warmup + args.iters):
        for j in [(r + i) % n for i in range(n)]:
            t = seconds(steps[j], args.device)
            if r >= args.warmup:
                times[j].append(t)
    return times


def relative_rows(paths, times, time_key, rel_key):
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
    """Inference of all configs (``load(path)`` builds a model), alternating within each round; returns
    :func:`relative_rows` (JSON-able)."""
    import torch

    models = [load(path).eval() for path in args.config_file]
    inputs = [random_inputs(args.batch, args.size, m.num_classes, False) for m in models]
    with torch.inference_mode(), torch.autocast("cuda", enabled=getattr(args, "amp", False)):
        times = interleaved_rounds(args, [lambda m=m, x=x: m(x) for m, x in zip(models, inputs)])
    return relative_rows(args.config_file, times, "interleaved_s", "relative")


def train_step(model, inputs, amp=False):
    """One optimizer-free training step as a function: losses, their sum's backward, gradients dropped."""
    import torch

    scaler = torch.amp.GradScaler("cuda") if amp else None

    def step():
        with torch.autocast("cuda", enabled=amp):
            loss = sum(model(inputs).values())
        (scaler.scale(loss) if scaler is not None else loss).backward()
        model.zero_grad(set_to_none=True)

    return step


def run_interleaved_train(args, load):
    """Training steps of all configs, alternating within each round; returns :func:`relative_rows`."""
    models = [load(path).train() for path in args.config_file]
    amp = getattr(args, "amp", False)
    steps = [train_step(m, random_inputs(args.batch, args.size, m.num_classes, True), amp) for m in models]
    times = interleaved_rounds(args, steps)
    return relative_rows(args.config_file, times, "interleaved_train_s", "train_relative")
