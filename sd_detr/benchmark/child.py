"""The measuring process: one measurement of one config (all configs for the interleaved tasks), run as
``python -m sd_detr.benchmark.child SETTINGS`` by :func:`sd_detr.benchmark.run.run_benchmark`, so that its
peak memory belongs to that measurement alone.

SETTINGS is a JSON object (:func:`child_settings`): ``task`` (one of :data:`~.presets.TASKS`),
``config_file`` (paths), ``size`` [H, W], ``batch``, ``threads``, ``iters``, ``warmup``, ``device``, ``amp``,
``no_cpu_accel``, ``preset`` (or null) and ``opts`` (config overrides, after the preset's). The process prints
one line ``BENCHMARK_RESULT <JSON>``.
"""
import json
import statistics
import sys
from types import SimpleNamespace

from .presets import INTERLEAVED, preset_overrides
from .timing import peak_memory_gb, random_inputs, run_interleaved, run_interleaved_train, timed_runs, train_step

RESULT_PREFIX = "BENCHMARK_RESULT "
_KEYS = ("config_file", "size", "batch", "threads", "iters", "warmup", "device", "amp", "no_cpu_accel", "preset", "opts")


def child_settings(args, task, configs) -> dict:
    """The JSON-able settings of a child measuring ``task`` on ``configs`` from the parent's ``args``."""
    settings = {k: getattr(args, k) for k in _KEYS if k != "config_file"}
    settings.update(task=task, config_file=list(configs), size=list(args.size), opts=list(args.opts))
    return settings


def load_model(path, args):
    """The model of config ``path`` after the preset's and the user's overrides (the user's win), seeded
    (torch seed 0), on ``args.device``, with :func:`sd_detr.engine.accel.optimize_for_cpu` unless
    ``args.no_cpu_accel``."""
    import torch
    from detectron2.config import LazyConfig, instantiate

    from ..config import check_override_keys
    from ..engine.accel import optimize_for_cpu

    cfg = LazyConfig.load(path)
    opts = preset_overrides(cfg, args.preset) + list(args.opts)  # the user's last: they win
    check_override_keys(cfg, opts)
    cfg = LazyConfig.apply_overrides(cfg, opts)
    torch.manual_seed(0)
    model = instantiate(cfg.model).to(args.device)
    optimize_for_cpu(model, onednn_linear=not args.no_cpu_accel, value_padding=not args.no_cpu_accel,
                     channels_last=not args.no_cpu_accel)
    return model


def measure(args) -> dict:
    """The measurement ``args.task`` (settings as attributes, see the module's doc): the interleaved tasks
    give ``{"task", "rows"}``; the others ``{"config", "task", ...}`` with ``gflops``, ``gflops_backbone``,
    ``unsupported_ops``, ``params`` (flops), ``inference_s`` / ``train_s`` (median seconds per batch) and
    their ``*_all`` runs, and ``peak_memory_gb``."""
    import torch

    import sd_detr  # noqa: F401  (registers the models)

    torch.set_num_threads(args.threads)

    def load(path):
        return load_model(path, args)

    if args.task in INTERLEAVED:
        run = run_interleaved if args.task == "interleaved" else run_interleaved_train
        return {"task": args.task, "rows": run(args, load)}
    device = args.device
    model = load(args.config_file[0])
    out = {"config": args.config_file[0], "task": args.task}
    if args.task == "flops":
        from ..utils.flops import flop_count_analysis

        model.eval()
        image = random_inputs(1, args.size, model.num_classes, False)[0]["image"].to(device)
        analysis = flop_count_analysis(model, image)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        out["gflops"] = analysis.total() / 1e9
        out["gflops_backbone"] = analysis.by_module()["detector.backbone"] / 1e9
        out["unsupported_ops"] = dict(analysis.unsupported_ops())
        out["params"] = sum(p.numel() for p in model.parameters())
    elif args.task == "inference":
        model.eval()
        inputs = random_inputs(args.batch, args.size, model.num_classes, False)
        with torch.inference_mode(), torch.autocast("cuda", enabled=args.amp):
            times = timed_runs(lambda: model(inputs), args)
        out["inference_s"] = statistics.median(times)
        out["inference_s_all"] = times
    else:
        model.train()
        inputs = random_inputs(args.batch, args.size, model.num_classes, True)
        times = timed_runs(train_step(model, inputs, args.amp), args)
        out["train_s"] = statistics.median(times)
        out["train_s_all"] = times
    out["peak_memory_gb"] = peak_memory_gb(device)
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m sd_detr.benchmark.child SETTINGS_JSON (started by tools/benchmark.py)")
    print(RESULT_PREFIX + json.dumps(measure(SimpleNamespace(**json.loads(argv[0])))), flush=True)


if __name__ == "__main__":
    main()
