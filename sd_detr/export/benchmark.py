"""Latency of an exported ONNX file under onnxruntime against the eager model, on one input (docs/export.md).

  python -m sd_detr.export.benchmark --config-file CONFIG --onnx DIR/model.onnx [--checkpoint W.pth]
      [--size H W] [--threads 2] [--iters 10]

Both run with the same number of CPU threads on the same seeded uint8 image, timed in alternation; the
median of ``--iters`` timed runs each after ``--warmup`` is reported, and the detections are compared (issue 13's tolerances).
"""
import argparse
import statistics
import time


def _interleaved_medians(fns, warmup, iters):
    """Median seconds of each function, timed in alternation (a load change on the machine hits both)."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(iters):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--onnx", required=True, help="file written by tools/export_model.py --format onnx")
    p.add_argument("--checkpoint", default=None, help="weights the file was exported from (strict load)")
    p.add_argument("--size", type=int, nargs=2, default=None, help="input H W (default: the exported shape)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args(argv)

    import sd_detr  # noqa: F401  (registers the models)
    import torch
    from detectron2.config import LazyConfig, instantiate

    from sd_detr.checkpoint import DETRCheckpointer
    from sd_detr.engine.accel import optimize_for_cpu

    from .exporter import compare_detections, load_metadata, onnx_runner
    from .wrapper import ExportableDetector

    torch.set_num_threads(args.threads)
    cfg = LazyConfig.load(args.config_file)
    torch.manual_seed(0)  # as tools/export_model.py: the same weights without a checkpoint
    model = instantiate(cfg.model).eval()
    optimize_for_cpu(model)  # the eager side as the tools run it
    if args.checkpoint:
        DETRCheckpointer(model, strict=True).load(args.checkpoint)
    wrapper = ExportableDetector(model)
    shape = load_metadata(args.onnx)["input"]["shape"]
    if args.size:
        shape = shape[:-2] + list(args.size)
    image = torch.randint(0, 256, tuple(shape), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    run = onnx_runner(args.onnx, num_threads=args.threads, spinning=False)  # no spin into the eager runs
    with torch.no_grad():
        eager_s, ort_s = _interleaved_medians([lambda: wrapper(image), lambda: run(image)], args.warmup, args.iters)
        expected = [t.numpy() for t in wrapper(image)]
    ok, msg = compare_detections(expected, run(image), allow_ties=True)
    print(f"{type(model).__name__} input {shape}, {args.threads} threads, median of {args.iters}: "
          f"eager {eager_s * 1000:.1f} ms, onnxruntime {ort_s * 1000:.1f} ms ({eager_s / ort_s:.2f}x); "
          f"detections {'match' if ok else 'DIFFER'}: {msg}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
