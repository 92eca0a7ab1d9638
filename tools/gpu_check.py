#!/usr/bin/env python
"""Check and benchmark the project on a CUDA machine in one run (about 8 minutes on one datacenter GPU).

Steps, each timed and reported in OUTPUT/gpu_check.md (and gpu_check.json):
  1. environment: the GPU, CUDA and torch versions (exit 2 with a message when there is no CUDA device);
  2. tests: `pytest tests/gpu` (the CUDA tests: every tiny detector on CUDA equals its CPU outputs, one AMP
     training step gives finite losses and gradients) and the fast CPU-independent model tests on the same run;
  3. training: each tiny synthetic config trained --train-iters iterations on CUDA with and without AMP
     (`train.amp.enabled=True`) through tools/lazyconfig_train_net.py, plus its untrained evaluation
     (`train.max_iter=0`, the chance level): every logged loss must be finite and the final AP50 must beat
     max(10 x chance, --min-ap50);
  4. benchmark: tools/benchmark.py on the four R50 detectors at 800x1216, batch 2, inference and training,
     in float32 and under AMP (CUDA-synchronised medians, allocator peak memory).

Examples:
  bash tools/gpu_check.sh                        # everything, results in output/gpu_check/
  python tools/gpu_check.py --dry-run            # print the planned commands (no GPU needed)
  python tools/gpu_check.py --skip benchmark --train-iters 200
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run from a clone

from sd_detr.utils.metrics import read_metrics_json  # noqa: E402
STEPS = ("tests", "train", "benchmark")
DETECTORS = ("conditional_detr", "dab_detr", "smca_detr", "sd_detr")


def tiny_config(name):
    return os.path.join("projects", name, "configs", f"{name}_tiny_synthetic.py")


def r50_config(name):
    return os.path.join("projects", name, "configs", f"{name}_r50_50ep.py")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="output/gpu_check", help="folder for runs, gpu_check.md and .json")
    parser.add_argument("--detectors", nargs="+", choices=DETECTORS, default=list(DETECTORS))
    parser.add_argument("--skip", nargs="+", choices=STEPS, default=[], help="steps to leave out")
    parser.add_argument("--train-iters", type=int, default=300, help="training iterations per tiny run")
    parser.add_argument("--min-ap50", type=float, default=1.0, help="AP50 a trained tiny run must exceed")
    parser.add_argument("--bench-iters", type=int, default=10, help="timed runs per benchmark measurement")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit (no GPU needed)")
    args = parser.parse_args(argv)
    if args.train_iters < 10:
        parser.error(f"--train-iters must be at least 10 (got {args.train_iters}): the lr milestone sits at 90 %")
    if args.bench_iters < 1:
        parser.error(f"--bench-iters must be at least 1 (got {args.bench_iters})")
    return args


def plan(args, python=sys.executable):
    """The (step, name, argv, meta) of every command the check runs, in order."""
    cmds = []
    if "tests" not in args.skip:
        cmds.append(("tests", "pytest tests/gpu", [python, "-m", "pytest", "-q", "tests/gpu"], {}))
    if "train" not in args.skip:
        n = args.train_iters
        budget = [f"train.max_iter={n}", f"lr_multiplier.milestones=[{int(n * 0.9)},{n}]", f"train.eval_period={n}",
                  f"train.checkpointer.period={n}", "train.log_period=10", "train.device=cuda"]
        for det in args.detectors:
            cfg = tiny_config(det)
            # --overwrite: a second check trains afresh in the folders of the first (issue 22)
            base = [python, "tools/lazyconfig_train_net.py", "--config-file", cfg, "--overwrite"]
            out = os.path.join(args.output, "train", det)
            cmds.append(("train", f"{det} untrained", base + [f"train.output_dir={out}/untrained", "train.max_iter=0",
                                                             "train.device=cuda"],
                         {"detector": det, "amp": None, "output_dir": f"{out}/untrained"}))
            for amp in (False, True):
                tag = "amp" if amp else "fp32"
                cmds.append(("train", f"{det} {tag}", base + [f"train.output_dir={out}/{tag}", *budget,
                                                              f"train.amp.enabled={amp}"],
                             {"detector": det, "amp": amp, "output_dir": f"{out}/{tag}"}))
    if "benchmark" not in args.skip:
        configs = [r50_config(d) for d in args.detectors]
        for amp in (False, True):
            tag = "amp" if amp else "fp32"
            path = os.path.join(args.output, f"benchmark_{tag}.json")
            cmds.append(("benchmark", f"R50 800x1216 batch 2 {tag}",
                         [python, "tools/benchmark.py", "--device", "cuda", "--size", "800", "1216", "--batch", "2",
                          "--tasks", "inference", "train", "--iters", str(args.bench_iters), "--warmup", "3",
                          "--json", path, "--config-file", *configs] + (["--amp"] if amp else []),
                         {"amp": amp, "json": path}))
    return cmds


def judge_training(rows, chance_ap50, min_ap50):
    """Verdict on one training run from its metrics.json rows: finite losses and a learned AP50.

    Returns a dict with ``ok``, ``reason``, the final ``AP``/``AP50`` and the number of loss rows."""
    losses = [r["total_loss"] for r in rows if "total_loss" in r]
    evals = [r for r in rows if "bbox/AP50" in r]
    out = {"loss_rows": len(losses), "AP": evals[-1]["bbox/AP"] if evals else None,
           "AP50": evals[-1]["bbox/AP50"] if evals else None}
    if not losses:
        return dict(out, ok=False, reason="no loss logged")
    bad = [v for v in losses if not math.isfinite(v)]
    if bad:
        return dict(out, ok=False, reason=f"{len(bad)} non-finite total_loss values")
    if not evals:
        return dict(out, ok=False, reason="no evaluation")
    need = max(10 * (chance_ap50 or 0.0), min_ap50)
    if not out["AP50"] > need:
        return dict(out, ok=False, reason=f"AP50 {out['AP50']:.2f} <= {need:.2f} (10 x chance or --min-ap50)")
    return dict(out, ok=True, reason="finite losses, learned")


def format_report(env, results):
    """Markdown of the whole check: environment, steps, training verdicts, benchmark table."""
    lines = ["# GPU check", "", f"{env.get('gpu', '?')}, CUDA {env.get('cuda', '?')}, torch {env.get('torch', '?')}, "
             f"{env.get('date', '')}", "", "| step | command | exit | seconds |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['step']} | {r['name']} | {r['returncode']} | {r['seconds']:.0f} |")
    train = [r for r in results if r["step"] == "train" and r["meta"].get("amp") is not None]
    if train:
        lines += ["", "## Tiny detectors on the synthetic data", "",
                  "| detector | precision | s/iter | AP | AP50 | chance AP50 | verdict |", "|---|---|---|---|---|---|---|"]
        for r in train:
            v = r.get("verdict", {})
            fmt = (lambda x: "-" if x is None else f"{x:.2f}")
            lines.append(f"| {r['meta']['detector']} | {'AMP' if r['meta']['amp'] else 'fp32'} | "
                         f"{fmt(r.get('s_per_iter'))} | {fmt(v.get('AP'))} | {fmt(v.get('AP50'))} | "
                         f"{fmt(r.get('chance_ap50'))} | {'ok' if v.get('ok') else 'FAIL: ' + v.get('reason', '?')} |")
    bench = [r for r in results if r["step"] == "benchmark" and r.get("rows")]
    if bench:
        lines += ["", "## R50 detectors at 800x1216, batch 2", "",
                  "| config | precision | inference s/batch | train fwd+bwd s/batch | peak mem inference (GB) | "
                  "peak mem train (GB) |", "|---|---|---|---|---|---|"]
        for r in bench:
            for row in r["rows"]:
                g = (lambda k: f"{row[k]:.3f}" if k in row else "-")
                lines.append(f"| {row['config']} | {'AMP' if r['meta']['amp'] else 'fp32'} | {g('inference_s')} | "
                             f"{g('train_s')} | {g('inference_mem')} | {g('train_mem')} |")
    return "\n".join(lines) + "\n"


def cuda_environment():
    import torch

    if not torch.cuda.is_available():
        return None
    return {"gpu": torch.cuda.get_device_name(), "cuda": torch.version.cuda, "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d")}


def run(cmd):
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    return proc, time.perf_counter() - t


def main(argv=None):
    args = parse_args(argv)
    cmds = plan(args)
    if args.dry_run:
        for step, name, cmd, _ in cmds:
            print(f"[{step}] {name}: {' '.join(cmd)}")
        return 0
    env = cuda_environment()
    if env is None:
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing to check here. "
              "Use --dry-run to see the plan.", file=sys.stderr)
        return 2
    os.makedirs(os.path.join(REPO, args.output), exist_ok=True)
    results, chance = [], {}
    for step, name, cmd, meta in cmds:
        print(f"[gpu_check] {step}: {name}", flush=True)
        proc, secs = run(cmd)
        r = {"step": step, "name": name, "returncode": proc.returncode, "seconds": secs, "meta": meta,
             "tail": (proc.stdout + proc.stderr)[-3000:]}
        if step == "train":
            rows = read_metrics_json(os.path.join(REPO, meta["output_dir"]), missing_ok=True)
            if meta["amp"] is None:
                evals = [x for x in rows if "bbox/AP50" in x]
                chance[meta["detector"]] = evals[-1]["bbox/AP50"] if evals else None
            else:
                r["chance_ap50"] = chance.get(meta["detector"])
                r["verdict"] = judge_training(rows, r["chance_ap50"], args.min_ap50)
                times = [x["time"] for x in rows if "time" in x]
                r["s_per_iter"] = sorted(times)[len(times) // 2] if times else None
        if step == "benchmark" and proc.returncode == 0:
            with open(os.path.join(REPO, meta["json"])) as f:
                r["rows"] = json.load(f)["rows"]
        results.append(r)
        if proc.returncode != 0:
            print(r["tail"], file=sys.stderr)
    report = format_report(env, results)
    with open(os.path.join(REPO, args.output, "gpu_check.md"), "w") as f:
        f.write(report)
    with open(os.path.join(REPO, args.output, "gpu_check.json"), "w") as f:
        json.dump({"env": env, "results": results}, f, indent=1)
    print(report)
    failed = [r for r in results if r["returncode"] != 0 or not r.get("verdict", {"ok": True})["ok"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
