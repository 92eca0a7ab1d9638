"""A check and benchmark of the project on a CUDA machine in one command, with one table (the library side
of tools/gpu_check.py): the plan of commands (CUDA tests, the benchmark tool on every registered detector's
R50 config in float32 and under AMP, optionally tiny training runs through the training tool), the verdict
on a training run, and the report (one table: images/s and peak memory per detector).

The tools are run through their command lines only: :class:`CheckTools` names them (paths relative to the
folder the commands run in); nothing here finds a file by the repository's layout."""
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

from ..model_zoo import detectors, get_config_file
from ..utils.metrics import read_metrics_json

STEPS = ("tests", "benchmark", "train")
SIZE, BATCH = (800, 1216), 2  # the R50 measurement: 2 images of 800x1216 per step


@dataclass(frozen=True)
class CheckTools:
    """What the check runs: ``benchmark`` (a tool with tools/benchmark.py's interface), ``train``
    (tools/lazyconfig_train_net.py's) and ``cuda_tests`` (the pytest path of the CUDA tests, tests/gpu), as
    paths relative to the folder the commands run in (or absolute)."""

    benchmark: str
    train: str
    cuda_tests: str


@dataclass
class CheckOptions:
    """What to check (tools/gpu_check.py's options): ``output`` (folder, relative to where the commands run),
    ``detectors`` (names; None: every registered one), ``skip`` (of ``STEPS[:2]``), ``train`` (also train the
    tiny configs), ``train_iters`` (>= 10), ``min_ap50``, ``bench_iters`` (>= 1). A bad value is a
    ValueError naming the option."""

    output: str = "output/gpu_check"
    detectors: Optional[Sequence[str]] = None
    skip: Sequence[str] = field(default_factory=list)
    train: bool = False
    train_iters: int = 300
    min_ap50: float = 1.0
    bench_iters: int = 10

    def __post_init__(self):
        names = list(detector_table())
        self.detectors = list(names if self.detectors is None else self.detectors)
        unknown = [d for d in self.detectors if d not in names]
        if unknown:
            raise ValueError(f"--detectors {' '.join(unknown)}: not a registered detector ({', '.join(names)})")
        bad = [s for s in self.skip if s not in STEPS[:2]]
        if bad:
            raise ValueError(f"--skip {' '.join(bad)}: choose from {', '.join(STEPS[:2])}")
        if self.train_iters < 10:
            raise ValueError(f"--train-iters must be at least 10 (got {self.train_iters}): the lr milestone sits "
                             f"at 90 %")
        if self.bench_iters < 1:
            raise ValueError(f"--bench-iters must be at least 1 (got {self.bench_iters})")


def detector_table():
    """``{name: Detector}`` of the registered detectors, in registration order (the table's rows)."""
    return {d.name: d for d in detectors()}


def tiny_config(name):
    return get_config_file(detector_table()[name].tiny)


def r50_config(name):
    return get_config_file(detector_table()[name].r50)


def plan(args, tools: CheckTools, python: str = sys.executable):
    """The (step, name, argv, meta) of every command the check runs, in order. ``args``: a
    :class:`CheckOptions`; the tools are named in the commands as ``tools`` gives them (run in the folder
    they are relative to)."""
    cmds = []
    if "tests" not in args.skip:
        cmds.append(("tests", f"pytest {tools.cuda_tests}", [python, "-m", "pytest", "-q", tools.cuda_tests], {}))
    if "benchmark" not in args.skip:
        configs = [r50_config(d) for d in args.detectors]
        for amp in (False, True):
            tag = "amp" if amp else "fp32"
            path = os.path.join(args.output, f"benchmark_{tag}.json")
            cmds.append(("benchmark", f"R50 {SIZE[0]}x{SIZE[1]} batch {BATCH} {tag}",
                         [python, tools.benchmark, "--device", "cuda", "--size", *map(str, SIZE),
                          "--batch", str(BATCH), "--tasks", "inference", "train", "--iters", str(args.bench_iters),
                          "--warmup", "3", "--json", path, "--config-file", *configs] + (["--amp"] if amp else []),
                         {"amp": amp, "json": path, "detectors": list(args.detectors), "configs": configs}))
    if args.train:
        n = args.train_iters
        budget = [f"train.max_iter={n}", f"lr_multiplier.milestones=[{int(n * 0.9)},{n}]", f"train.eval_period={n}",
                  f"train.checkpointer.period={n}", "train.log_period=10", "train.device=cuda"]
        for det in args.detectors:
            cfg = tiny_config(det)
            # --overwrite: a second check trains afresh in the folders of the first (issue 22)
            base = [python, tools.train, "--config-file", cfg, "--overwrite"]
            out = os.path.join(args.output, "train", det)
            cmds.append(("train", f"{det} untrained", base + [f"train.output_dir={out}/untrained", "train.max_iter=0",
                                                             "train.device=cuda"],
                         {"detector": det, "amp": None, "output_dir": f"{out}/untrained"}))
            for amp in (False, True):
                tag = "amp" if amp else "fp32"
                cmds.append(("train", f"{det} {tag}", base + [f"train.output_dir={out}/{tag}", *budget,
                                                              f"train.amp.enabled={amp}"],
                             {"detector": det, "amp": amp, "output_dir": f"{out}/{tag}"}))
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


COLUMNS = (  # (key, header): the one table's measured columns
    ("train_ips_fp32", "train img/s fp32"), ("train_ips_amp", "train img/s AMP"),
    ("inference_ips_fp32", "inference img/s fp32"), ("inference_ips_amp", "inference img/s AMP"),
    ("train_mem_fp32", "peak mem train fp32 (GB)"), ("train_mem_amp", "peak mem train AMP (GB)"),
)


def table_rows(results):
    """One row per detector from the benchmark steps' results: ``{"detector", "title", <COLUMNS keys>}``.

    A benchmark result holds ``meta`` (``amp``, ``detectors`` and their ``configs`` in the order measured) and,
    when the command succeeded, ``bench`` (tools/benchmark.py's JSON: ``batch`` and ``rows`` with ``config``,
    ``inference_s``, ``train_s`` in seconds per step, ``train_mem`` in GB). Images/s = batch / seconds per
    step. A measurement that is missing (the command failed, or the row lacks it) is None."""
    titles = {d.name: d.title for d in detectors()}
    rows = {}
    for r in (r for r in results if r["step"] == "benchmark"):
        tag = "amp" if r["meta"]["amp"] else "fp32"
        bench = r.get("bench") or {}
        by_config = {row["config"]: row for row in bench.get("rows", [])}
        for det, config in zip(r["meta"]["detectors"], r["meta"]["configs"]):
            row = rows.setdefault(det, dict({"detector": det, "title": titles.get(det, det)},
                                            **{k: None for k, _ in COLUMNS}))
            m = by_config.get(config, {})
            per_s = (lambda key: bench["batch"] / m[key] if m.get(key) else None)
            row.update({f"train_ips_{tag}": per_s("train_s"), f"inference_ips_{tag}": per_s("inference_s"),
                        f"train_mem_{tag}": m.get("train_mem")})
    return list(rows.values())


def format_table(rows):
    """The markdown table of :func:`table_rows` (``-`` where a measurement is missing)."""
    lines = ["| detector | " + " | ".join(h for _, h in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for row in rows:
        cells = ["-" if row[k] is None else (f"{row[k]:.2f}" if k.endswith("_mem_fp32") or k.endswith("_mem_amp")
                                              else f"{row[k]:.1f}") for k, _ in COLUMNS]
        lines.append(f"| {row['title']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_report(env, results):
    """Markdown of the check: one line on the machine, one on the CUDA tests, the one table (R50,
    SIZE, BATCH images per step), the failed commands if any, and with --train the tiny runs' verdicts."""
    lines = ["# GPU check", "", f"{env.get('gpu', '?')}, CUDA {env.get('cuda', '?')}, torch {env.get('torch', '?')}, "
             f"{env.get('date', '')}.", ""]
    tests = [r for r in results if r["step"] == "tests"]
    if tests:
        lines += [f"CUDA tests (`{tests[0]['name']}`): {'passed' if tests[0]['returncode'] == 0 else 'FAILED'} "
                  f"({tests[0]['seconds']:.0f} s).", ""]
    rows = table_rows(results)
    if rows:
        lines += [f"R50, {BATCH} images of {SIZE[0]}x{SIZE[1]} per step; training step = forward + backward "
                  f"(tools/benchmark.py's train task, GradScaler under AMP); medians of CUDA-synchronised runs; "
                  f"peak memory = torch.cuda.max_memory_allocated.", "", format_table(rows)]
    failed = [r for r in results if r["returncode"] != 0]
    if failed:
        lines += ["", "Failed: " + "; ".join(f"{r['step']} `{r['name']}` (exit {r['returncode']})" for r in failed)
                  + " (output tails in gpu_check.json)."]
    train = [r for r in results if r["step"] == "train" and r["meta"].get("amp") is not None]
    if train:
        fmt = (lambda x: "-" if x is None else f"{x:.2f}")
        lines += ["", "Tiny configs trained on the synthetic data (--train):", "",
                  "| detector | precision | s/iter | AP | AP50 | chance AP50 | verdict |", "|---|---|---|---|---|---|---|"]
        for r in train:
            v = r.get("verdict", {})
            lines.append(f"| {r['meta']['detector']} | {'AMP' if r['meta']['amp'] else 'fp32'} | "
                         f"{fmt(r.get('s_per_iter'))} | {fmt(v.get('AP'))} | {fmt(v.get('AP50'))} | "
                         f"{fmt(r.get('chance_ap50'))} | {'ok' if v.get('ok') else 'FAIL: ' + v.get('reason', '?')} |")
    return "\n".join(lines) + "\n"


def cuda_environment():
    import torch

    if not torch.cuda.is_available():
        return None
    return {"gpu": torch.cuda.get_device_name(), "cuda": torch.version.cuda, "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d")}


def run_command(cmd: List[str], cwd: str):
    """(CompletedProcess with the output captured, seconds it took)."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return proc, time.perf_counter() - t


def format_plan(cmds) -> str:
    """One line per planned command: ``[step] name: the command``."""
    return "\n".join(f"[{step}] {name}: {' '.join(cmd)}" for step, name, cmd, _ in cmds)


def run_gpu_check(args: CheckOptions, tools: CheckTools, cwd: str, python: str = sys.executable,
                  run: Callable = run_command, environment: Callable = cuda_environment) -> int:
    """Run the plan in ``cwd`` (``run(cmd, cwd)`` -> (process, seconds); ``environment()`` -> the CUDA
    environment or None), write ``cwd/args.output``/gpu_check.md (the report) and gpu_check.json (everything,
    the commands' output tails included), print the report. Returns the exit status: 2 without a CUDA
    device (nothing run), 1 if a command failed or a training run's verdict is not ok, else 0."""
    cmds = plan(args, tools, python=python)
    env = environment()
    if env is None:
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing to check here. "
              "Use --dry-run to see the plan.", file=sys.stderr)
        return 2
    os.makedirs(os.path.join(cwd, args.output), exist_ok=True)
    results, chance = [], {}
    for step, name, cmd, meta in cmds:
        print(f"[gpu_check] {step}: {name}", flush=True)
        proc, secs = run(cmd, cwd)
        r = {"step": step, "name": name, "returncode": proc.returncode, "seconds": secs, "meta": meta,
             "tail": (proc.stdout + proc.stderr)[-3000:]}
        if step == "train":
            rows = read_metrics_json(os.path.join(cwd, meta["output_dir"]), missing_ok=True)
            if meta["amp"] is None:
                evals = [x for x in rows if "bbox/AP50" in x]
                chance[meta["detector"]] = evals[-1]["bbox/AP50"] if evals else None
            else:
                r["chance_ap50"] = chance.get(meta["detector"])
                r["verdict"] = judge_training(rows, r["chance_ap50"], args.min_ap50)
                times = [x["time"] for x in rows if "time" in x]
                r["s_per_iter"] = sorted(times)[len(times) // 2] if times else None
        if step == "benchmark" and proc.returncode == 0:
            with open(os.path.join(cwd, meta["json"])) as f:
                r["bench"] = json.load(f)
        results.append(r)
        if proc.returncode != 0:
            print(r["tail"], file=sys.stderr)
    report = format_report(env, results)
    with open(os.path.join(cwd, args.output, "gpu_check.md"), "w") as f:
        f.write(report)
    with open(os.path.join(cwd, args.output, "gpu_check.json"), "w") as f:
        json.dump({"env": env, "results": results}, f, indent=1)
    print(report)
    failed = [r for r in results if r["returncode"] != 0 or not r.get("verdict", {"ok": True})["ok"]]
    return 1 if failed else 0
