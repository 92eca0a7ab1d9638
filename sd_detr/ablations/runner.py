"""Running a table's rows: each seed of a row is one run of the training tool (a subprocess, as a user runs
it), in its own output folder; a finished run and each finished evaluation are reused.

Where the training tool lies is not this package's business: :class:`TrainTool` names it and the folder it
runs in (a clone: the rows' config paths are relative to it), and ``tools/run_ablations.py`` gives the
clone's ``tools/lazyconfig_train_net.py``.
"""
import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from ..utils.metrics import read_metrics_json
from .stats import aggregate
from .tables import METRICS, SEED_BASE, Row, Table


@dataclass(frozen=True)
class TrainTool:
    """How a run is launched: ``python path ...`` in the folder ``cwd``. ``path`` as it is written in the
    commands (relative to ``cwd``, e.g. ``"tools/lazyconfig_train_net.py"``); the rows' configs, flags and
    ``JSON:IMAGES`` specs are relative to ``cwd`` too, and ``cwd`` is left out of the printed commands."""

    path: str
    cwd: str
    python: str = field(default=sys.executable)


def run_key(config: str, overrides: Sequence[str], extra: Sequence[str], seed: Optional[int] = None,
            args: Sequence[str] = ()) -> str:
    """Output folder name of a run: the config's name, a hash of its overrides, ``--opts`` and tool flags,
    and ``-sSEED`` (the seed is not hashed, so the seeds of one row sit side by side)."""
    name = os.path.splitext(os.path.basename(config))[0]
    key = [config, list(overrides), list(extra)] + ([list(args)] if args else [])  # old keys unchanged
    digest = hashlib.sha1(json.dumps(key).encode()).hexdigest()[:8]
    return f"{name}-{digest}" + ("" if seed is None else f"-s{seed}")


def seeds_for(n: int, base: int = SEED_BASE) -> List[int]:
    """The ``n`` seeds of every row: ``base, base + 1, ...``."""
    if n < 1:
        raise ValueError(f"--seeds must be >= 1, got {n}")
    return [base + i for i in range(n)]


def final_eval(output_dir: str) -> Optional[dict]:
    """The last "bbox/AP..." row of metrics.json, or None."""
    evals = [row for row in read_metrics_json(output_dir, missing_ok=True) if "bbox/AP" in row]
    return evals[-1] if evals else None


def _seed_args(seed: Optional[int]) -> List[str]:
    return [] if seed is None else [f"train.seed={seed}"]


def command(row: Row, output_dir: str, extra: Sequence[str], seed: Optional[int], tool: TrainTool) -> List[str]:
    """The training command of one seed of a row (``seed=None``: the config's own seed)."""
    return [tool.python, tool.path, "--config-file", row.config, *row.args, f"train.output_dir={output_dir}",
            *row.overrides, *_seed_args(seed), *extra]


def eval_command(row: Row, output_dir: str, dataset: str, extra: Sequence[str], seed: Optional[int],
                 tool: TrainTool) -> List[str]:
    """Evaluate the run's model_final.pth on ``dataset``: the training command's config, flags and
    overrides (the same model), ``--eval-only`` (a strict load) and the test set replaced: a registered
    name through ``dataloader.test.dataset.names`` (the evaluator follows it), a ``JSON:IMAGES`` spec
    through ``--dataset-val``."""
    args = list(row.args)
    if ":" in dataset:
        for i in reversed(range(len(args) - 1)):  # drop the row's own --dataset-val
            if args[i] == "--dataset-val":
                del args[i:i + 2]
        args += ["--dataset-val", dataset]
    return [tool.python, tool.path, "--config-file", row.config, "--eval-only", *args,
            f"train.init_checkpoint={os.path.join(output_dir, 'model_final.pth')}",
            f"train.output_dir={eval_dir(output_dir, dataset)}", *row.overrides, *_seed_args(seed), *extra,
            *([] if ":" in dataset else [f"dataloader.test.dataset.names={dataset}"])]


def eval_dir(output_dir: str, dataset: str) -> str:
    """``output_dir/eval_NAME``: NAME the registered name, or for a ``JSON:IMAGES`` spec the JSON's name
    and a hash of the spec."""
    if ":" in dataset:
        stem = os.path.splitext(os.path.basename(dataset.split(":")[0]))[0]
        dataset = f"{stem}-{hashlib.sha1(dataset.encode()).hexdigest()[:6]}"
    return os.path.join(output_dir, f"eval_{dataset}")


def shell_line(cmd: List[str], cwd: str) -> str:
    """The command as a user types it in ``cwd`` (the clone): ``python``, and paths below ``cwd`` (an
    argument, or a ``key=`` value) relative."""
    below = re.compile(rf"(^|=){re.escape(cwd.rstrip(os.sep) + os.sep)}")
    return " ".join(["python", *(below.sub(r"\1", a) for a in cmd[1:])])


def parse_copypaste(text: str, task: str = "bbox") -> Optional[dict]:
    """The last ``task`` result that Detectron2's ``print_csv_format`` logged ("copypaste: Task: bbox",
    then a line of metric names and one of values) as ``{"AP": .., "AP50": .., ...}``, or None."""
    lines = [ln.split("copypaste: ", 1)[1].strip() for ln in text.splitlines() if "copypaste: " in ln]
    found = None
    for i, ln in enumerate(lines[:-2]):
        if ln == f"Task: {task}":
            names, values = lines[i + 1].split(","), lines[i + 2].split(",")
            if len(names) == len(values):
                try:
                    found = {k: float(v) for k, v in zip(names, values)}
                except ValueError:
                    continue
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _acquire(output_dir: str, log, name: str) -> bool:
    """Take the run's lock; if another live runner holds it, wait for it to finish and return False (its
    result is then reused)."""
    os.makedirs(output_dir, exist_ok=True)
    lock = os.path.join(output_dir, "running.lock")
    waited = False
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(open(lock).read().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                if not waited:
                    log(f"[run_ablations] {name}: another instance (pid {pid}) is training it; waiting")
                    waited = True
                time.sleep(30)
                continue
            os.remove(lock)  # left by a killed instance
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return not waited


def run_row(row: Row, out_root: str, extra: Sequence[str], rerun: bool, log, tool: TrainTool,
            seed: Optional[int] = None, evals: Optional[Dict[str, str]] = None) -> dict:
    """Train (or reuse) one seed of a row and evaluate it on ``evals`` ({label: dataset}); returns
    ``{"name", "paper", "seed", "command", "date", "iterations", "AP", "AP50", "AP75",
    "evals": {label: {"AP", "AP50", "AP75"}}}``. ``seed=None`` keeps the config's own seed."""
    output_dir = os.path.join(out_root, run_key(row.config, row.overrides, extra, seed, row.args))
    cmd = command(row, output_dir, extra, seed, tool)
    label = row.name + ("" if seed is None else f" (seed {seed})")
    trained_here = _acquire(output_dir, log, label)
    try:
        result = None if (rerun and trained_here) else final_eval(output_dir)
        if result is None:
            result = _train(label, output_dir, cmd, log, tool)
        else:
            log(f"[run_ablations] {label}: reusing {output_dir}")
        extra_results = {name: _evaluate(row, output_dir, dataset, extra, seed, label, log, tool)
                         for name, dataset in (evals or {}).items()}
    finally:
        os.remove(os.path.join(output_dir, "running.lock"))
    date_file = os.path.join(output_dir, "finished_on")
    date = open(date_file).read().strip() if os.path.isfile(date_file) else "?"
    return {"name": row.name, "paper": row.paper, "seed": seed, "command": shell_line(cmd, tool.cwd), "date": date,
            "iterations": result.get("iteration", -1) + 1,
            **{m: result[f"bbox/{m}"] for m in METRICS}, "evals": extra_results}


def _train(label: str, output_dir: str, cmd: List[str], log, tool: TrainTool) -> dict:
    """Train one run (output_dir/run.log has the tool's output) and return its final evaluation."""
    log(f"[run_ablations] {label}: {shell_line(cmd, tool.cwd)}")
    metrics = os.path.join(output_dir, "metrics.json")
    if os.path.exists(metrics):  # a fresh run: do not mix in an interrupted one's rows
        os.remove(metrics)
    for name in os.listdir(output_dir):  # evaluations of an earlier model are stale now
        stale = os.path.join(output_dir, name, "results.json")
        if name.startswith("eval_") and os.path.isfile(stale):
            os.remove(stale)
    with open(os.path.join(output_dir, "run.log"), "w") as logf:
        # --overwrite: a rerun (or a run interrupted before its final evaluation) trains afresh in its folder,
        # which holds the earlier run's checkpoints: the tool refuses that without the flag (issue 22)
        proc = subprocess.run([*cmd[:2], "--overwrite", *cmd[2:]], cwd=tool.cwd, stdout=logf, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{label}: training failed (exit {proc.returncode}), see {output_dir}/run.log")
    result = final_eval(output_dir)
    if result is None:
        raise RuntimeError(f"{label}: no evaluation in {output_dir}/metrics.json")
    with open(os.path.join(output_dir, "finished_on"), "w") as f:
        f.write(datetime.date.today().isoformat())
    return result


def _evaluate(row: Row, output_dir: str, dataset: str, extra: Sequence[str], seed: Optional[int], label: str,
              log, tool: TrainTool) -> dict:
    """AP/AP50/AP75 of the run's final model on ``dataset``: cached in eval_DATASET/results.json, else an
    ``--eval-only`` run of the training tool (its log: eval_DATASET/run.log)."""
    out = eval_dir(output_dir, dataset)
    cached = os.path.join(out, "results.json")
    if os.path.isfile(cached):
        with open(cached) as f:
            return json.load(f)
    checkpoint = os.path.join(output_dir, "model_final.pth")
    if not os.path.isfile(checkpoint):
        raise RuntimeError(f"{label}: no {checkpoint} to evaluate on {dataset} (was train.checkpointer "
                           "changed?); rerun the row with --rerun")
    cmd = eval_command(row, output_dir, dataset, extra, seed, tool)
    log(f"[run_ablations] {label} on {dataset}: {shell_line(cmd, tool.cwd)}")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "run.log"), "w") as logf:
        proc = subprocess.run(cmd, cwd=tool.cwd, stdout=logf, stderr=subprocess.STDOUT, text=True)
    text = open(os.path.join(out, "run.log")).read()
    parsed = parse_copypaste(text)
    if proc.returncode != 0 or parsed is None:
        raise RuntimeError(f"{label}: evaluation on {dataset} failed (exit {proc.returncode}), see {out}/run.log")
    result = {m: parsed[m] for m in METRICS}
    with open(cached, "w") as f:
        json.dump(result, f)
    return result


def run_table(name: str, table: Table, seeds: Sequence[int], out_root: str, extra: Sequence[str], rerun: bool,
              log, tool: TrainTool) -> List[dict]:
    """Every row of a table with every seed, aggregated per row. COCO specs (``--dataset-*`` flags and
    ``JSON:IMAGES`` evaluation sets, relative to ``tool.cwd``) must exist first: the error names the file
    and the table."""
    specs = [a for r in table.rows for a in r.args if ":" in a] + [d for d in table.evals.values() if ":" in d]
    for spec in specs:
        json_file = spec.split(":")[0]
        if not os.path.isfile(os.path.join(tool.cwd, json_file)):
            raise FileNotFoundError(f"table {name}: {json_file} does not exist" +
                                    (f"; {table.data_hint}" if table.data_hint else ""))
    return [aggregate([run_row(r, out_root, extra, rerun, log, tool, seed=s, evals=table.evals) for s in seeds])
            for r in table.rows]


def budget_note(config: str, extra: Sequence[str], seeds: Optional[Sequence[int]], cwd: str) -> str:
    """The training budget of a config (its path relative to ``cwd``) after the extra overrides
    (iterations, images per batch, lr)."""
    from detectron2.config import LazyConfig

    cfg = LazyConfig.apply_overrides(LazyConfig.load(os.path.join(cwd, config)), list(extra))
    seed_text = f"seed {cfg.train.seed}" if seeds is None else "seeds " + ", ".join(str(s) for s in seeds)
    return (f"{cfg.train.max_iter} iterations of {cfg.dataloader.train.total_batch_size} images, AdamW lr "
            f"{cfg.optimizer.lr:g} (x{cfg.lr_multiplier['values'][1]:g} after {cfg.lr_multiplier.milestones[0]}), "
            f"{seed_text}, device {cfg.train.device}"
            + (f", OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}" if "OMP_NUM_THREADS" in os.environ else ""))
