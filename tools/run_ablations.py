#!/usr/bin/env python
"""Run ablation tables on the synthetic data and write them to docs/ablations.md.

Every row is trained with N seeds (``--seeds``, default 3: ``train.seed`` = 42, 43, 44; 42 is every
config's default, configs/common/train.py). A run is tools/lazyconfig_train_net.py exactly as a user runs
it: a tiny config (with its budget, configs/common/synthetic_train.py) plus optional ``key=value``
overrides and ``train.seed=S``. Detectron2's ``default_setup`` seeds torch, numpy and random with it, so
the seed changes the model's initial weights, the training sampler's order and the augmentations. The
run's final COCO evaluation gives AP, AP50 and AP75 on the seen-domain val split; its ``model_final.pth``
is then evaluated (``--eval-only``) on each of the table's extra evaluation sets, by default the three
domain-shifted synthetic splits: ``sd_detr_synthetic_val_shift`` (new-domain AP: checkerboard backgrounds
and striped objects, never seen in training) and its one-change twins ``..._val_shift_objects`` (striped
objects on the seen backgrounds: new-objects AP) and ``..._val_shift_background`` (checkerboards behind
the seen flat objects: new-background AP). A row reports the mean, sample standard deviation and number
of seeds of each metric: ``mean ± std (n)``.

Each seed's run has its own output folder (``output/ablations/CONFIG-HASH-sSEED``; HASH from the config,
overrides and ``--opts``); rows with the same config and overrides run once and are shared between
tables. A finished run (and each finished evaluation, ``eval_DATASET/results.json``) is reused unless
``--rerun`` is given, so an interrupted session picks up where it stopped and ``--seeds 5`` after
``--seeds 3`` trains only the two new seeds.

Tables are data (``TABLES`` below): to add one, list its rows. docs/ablations.md has one section per
table between ``<!-- table:NAME -->`` markers; running a table rewrites only its own section.

On a CPU shared with other jobs, run it with ``OMP_NUM_THREADS=1``: with more threads than free cores,
PyTorch's intra-op threads spin and one training iteration costs many times the CPU time.

Examples:
  python tools/run_ablations.py                       # every table, 3 seeds per row
  python tools/run_ablations.py --table sd_detr_table2 --table sd_detr_table3
  python tools/run_ablations.py --table stage_assigner --seeds 5
  python tools/run_ablations.py --list
  python tools/run_ablations.py --table sd_detr_table2 --opts train.max_iter=100 lr_multiplier.milestones=[90,100] train.eval_period=100
"""
import argparse
import datetime
import hashlib
import json
import os
import math
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from sd_detr.utils.metrics import read_metrics_json  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_TOOL = os.path.join("tools", "lazyconfig_train_net.py")
DOC = os.path.join(REPO, "docs", "ablations.md")
SD = "projects/sd_detr/configs"
METRICS = ("AP", "AP50", "AP75")
SEED_BASE = 42  # configs/common/train.py's train.seed: the first seed is every config's default
# sd_detr.data.synthetic.SYNTHETIC_VAL_SHIFT*_NAME (not imported: this tool stays light until it trains)
SYNTHETIC_VAL_SHIFT = "sd_detr_synthetic_val_shift"
SYNTHETIC_VAL_SHIFT_OBJECTS = "sd_detr_synthetic_val_shift_objects"
SYNTHETIC_VAL_SHIFT_BACKGROUND = "sd_detr_synthetic_val_shift_background"
NEW_DOMAIN = {"new-domain": SYNTHETIC_VAL_SHIFT, "new-objects": SYNTHETIC_VAL_SHIFT_OBJECTS,
              "new-background": SYNTHETIC_VAL_SHIFT_BACKGROUND}


@dataclass
class Row:
    """One run: a config file (relative to the repository) and overrides; ``paper`` is the paper's
    COCO AP of the row, when it has one."""

    name: str
    config: str
    overrides: Sequence[str] = ()
    paper: Optional[float] = None
    args: Sequence[str] = ()  # flags of the train tool before the overrides (e.g. --dataset-train J:I)
    # the row (by name) this one's mean AP is compared with in the "AP vs" column: None for the table's
    # first row; a row that names itself is a reference and gets no comparison
    reference: Optional[str] = None


@dataclass
class Table:
    """A table's rows; ``evals`` maps a column label to a data set on which each run's final model is
    evaluated too: a registered dataset name (default: the three domain-shifted synthetic splits,
    :data:`NEW_DOMAIN`) or a ``JSON:IMAGES`` COCO spec (passed as ``--dataset-val``); ``eval_metrics`` are
    the columns shown for each of them. ``main_eval`` names the set of the run's own final evaluation in
    the text."""

    title: str
    description: str
    rows: List[Row] = field(default_factory=list)
    paper_source: str = ""
    evals: Dict[str, str] = field(default_factory=lambda: dict(NEW_DOMAIN))
    # metrics shown per evaluation set in the table (all of METRICS are in the per-seed results): AP75
    # on the shifted synthetic splits is ~0 for every row, so it is left out there
    eval_metrics: Sequence[str] = ("AP", "AP50")
    main_eval: str = "the seen-domain val split"
    data_hint: str = ""  # how to make the table's data, for the error when it is missing
    compare_label: str = "first row"  # what the rows' ``reference`` is, for the column header


# The nuclei of the `stardist` wheel, tiled by tools/make_stardist_nuclei_dataset.py (default output).
_NUCLEI = os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "stardist_nuclei")
NUCLEI_TRAIN = f"{_NUCLEI}/annotations/instances_train.json:{_NUCLEI}/train"
NUCLEI_HELDOUT = f"{_NUCLEI}/annotations/instances_heldout.json:{_NUCLEI}/heldout"


_BASELINE = Row("Baseline: Conditional DETR + mini-detector", f"{SD}/ablations/table2_baseline_tiny_synthetic.py", paper=41.7)
_DFL = Row("+ DFL (split cross-attention)", f"{SD}/ablations/table2_dfl_tiny_synthetic.py", paper=43.1)
_SD_DETR = f"{SD}/sd_detr_tiny_synthetic.py"

TABLES: Dict[str, Table] = {
    "sd_detr_table2": Table(
        title="SD-DETR Table 2: components",
        description="Each row adds one component (DFL: disentangled feature learning, shared self-attention "
                    "and per-branch cross-attention; TAQ: task-aware query generation; TAL: task-alignment "
                    "loss with each ground truth matched twice in all decoder layers but the last).",
        paper_source="SD-DETR Table 2 (R50, 50 epochs, COCO val2017 AP)",
        rows=[
            _BASELINE,
            _DFL,
            Row("+ DFL + TAQ", f"{SD}/ablations/table2_taq_tiny_synthetic.py", paper=43.6),
            Row("+ DFL + TAQ + TAL (SD-DETR)", _SD_DETR, paper=45.5),
        ],
    ),
    "sd_detr_table3": Table(
        title="SD-DETR Table 3: decoupling structures",
        description="No task-aware queries and no task-alignment loss in any row (as Table 3's 43.1 = Table 2's "
                    "+DFL row).",
        paper_source="SD-DETR Table 3 (R50, 50 epochs, COCO val2017 AP)",
        rows=[
            Row("Baseline (shared decoder)", _BASELINE.config, paper=41.7),
            Row("Split decoder (two complete decoders)", f"{SD}/ablations/table3_split_decoder_tiny_synthetic.py", paper=42.2),
            Row("Split cross-attention (shared self-attention)", _DFL.config, paper=43.1),
        ],
    ),
    "sd_detr_repeats": Table(
        title="SD-DETR repeated positives: which decoder layers",
        description="The full tiny SD-DETR (TAL) with each ground truth matched k times by the Hungarian "
                    "matcher. Without NMS, k > 1 in the last layer trains two queries per object to score "
                    "high, which may leave duplicates at inference; the default is the better row.",
        rows=[
            Row("k = 2 in layers 0-1, one-to-one in the last (default)", _SD_DETR),
            Row("k = 2 in every layer", _SD_DETR, ("model.criterion.assigner.repeat_stages=null",)),
            Row("k = 1 (one-to-one everywhere)", _SD_DETR, ("model.criterion.assigner.num_repeats=1",)),
        ],
    ),
    "stage_assigner": Table(
        title="StageInteractor's cross-stage label assigner, every detector",
        description="Each tiny detector with its own assignment and with the cross-stage assigner (appendix J "
                    "defaults: every stage, range [i-1, L], IoU >= 0.5; localisation from the stage's own "
                    "match). SD-DETR keeps its repeated positives and task-alignment loss in both rows.",
        paper_source="none: StageInteractor reports the assigner on AdaMixer and DINO (its Tables 1, 4), "
                     "not on these detectors",
        rows=[row for name, proj in (("Conditional DETR", "conditional_detr"), ("DAB-DETR", "dab_detr"),
                                     ("SMCA-DETR", "smca_detr"), ("SD-DETR", "sd_detr"))
              for row in (Row(name, f"projects/{proj}/configs/{proj}_tiny_synthetic.py", reference=name),
                          Row(f"{name} + cross-stage assigner",
                              f"projects/{proj}/configs/{proj}_tiny_synthetic_stage_assigner.py", reference=name))]
        + [Row(f"{name} + cross-stage assigner, own matches always positive (not in the paper)",
               f"projects/{proj}/configs/{proj}_tiny_synthetic_stage_assigner.py",
               ("model.criterion.assigner.keep_own_matches=True",), reference=name)
           for name, proj in (("Conditional DETR", "conditional_detr"), ("DAB-DETR", "dab_detr"))],
        # the question is what the assigner does to each detector, not how the detectors rank
        compare_label="the detector alone",
    ),
    "stardist_nuclei": Table(
        title="Real data: the nuclei image of the stardist wheel, four detectors from scratch",
        description="The four tiny detectors (one class, ``num_classes`` from the JSON) trained from scratch on "
                    "12 tiles of 128x128 px of stardist's bundled fluorescence image (99 nuclei, plus cut ones "
                    "marked iscrowd) and evaluated on the 4 held-out tiles of its right-most column (25 "
                    "nuclei), and on the training tiles themselves (fit vs generalisation). Data: "
                    "`python tools/make_stardist_nuclei_dataset.py` (from the installed package or "
                    "`--source` its wheel; nothing is downloaded).",
        rows=[Row(name, f"projects/{proj}/configs/{proj}_tiny_synthetic.py",
                  args=("--dataset-train", NUCLEI_TRAIN, "--dataset-val", NUCLEI_HELDOUT))
              for name, proj in (("Conditional DETR", "conditional_detr"), ("DAB-DETR", "dab_detr"),
                                 ("SMCA-DETR", "smca_detr"), ("SD-DETR", "sd_detr"))],
        evals={"training-tiles": NUCLEI_TRAIN},
        eval_metrics=METRICS,
        main_eval="the 4 held-out tiles",
        data_hint="make it with `python tools/make_stardist_nuclei_dataset.py` (needs the stardist package "
                  "installed, `pip install --no-deps stardist==0.9.2`, or `--source` its wheel)",
    ),
}


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


def command(row: Row, output_dir: str, extra: Sequence[str], seed: Optional[int] = None) -> List[str]:
    return [sys.executable, TRAIN_TOOL, "--config-file", row.config, *row.args, f"train.output_dir={output_dir}",
            *row.overrides, *_seed_args(seed), *extra]


def eval_command(row: Row, output_dir: str, dataset: str, extra: Sequence[str], seed: Optional[int] = None) -> List[str]:
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
    return [sys.executable, TRAIN_TOOL, "--config-file", row.config, "--eval-only", *args,
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


def shell_line(cmd: List[str]) -> str:
    """The command as a user types it from the repository root."""
    return " ".join(["python", *(a.replace(REPO + os.sep, "") for a in cmd[1:])])


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
    """Take the run's lock; if another live instance of this script holds it, wait for it to finish and
    return False (its result is then reused)."""
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


def run_row(row: Row, out_root: str, extra: Sequence[str], rerun: bool, log, seed: Optional[int] = None,
            evals: Optional[Dict[str, str]] = None) -> dict:
    """Train (or reuse) one seed of a row and evaluate it on ``evals`` ({label: dataset}); returns
    ``{"name", "paper", "seed", "command", "date", "iterations", "AP", "AP50", "AP75",
    "evals": {label: {"AP", "AP50", "AP75"}}}``. ``seed=None`` keeps the config's own seed."""
    output_dir = os.path.join(out_root, run_key(row.config, row.overrides, extra, seed, row.args))
    cmd = command(row, output_dir, extra, seed)
    label = row.name + ("" if seed is None else f" (seed {seed})")
    trained_here = _acquire(output_dir, log, label)
    try:
        result = None if (rerun and trained_here) else final_eval(output_dir)
        if result is None:
            result = _train(label, output_dir, cmd, log)
        else:
            log(f"[run_ablations] {label}: reusing {output_dir}")
        extra_results = {name: _evaluate(row, output_dir, dataset, extra, seed, label, log)
                         for name, dataset in (evals or {}).items()}
    finally:
        os.remove(os.path.join(output_dir, "running.lock"))
    date_file = os.path.join(output_dir, "finished_on")
    date = open(date_file).read().strip() if os.path.isfile(date_file) else "?"
    return {"name": row.name, "paper": row.paper, "seed": seed, "command": shell_line(cmd), "date": date,
            "iterations": result.get("iteration", -1) + 1,
            **{m: result[f"bbox/{m}"] for m in METRICS}, "evals": extra_results}


def _train(label: str, output_dir: str, cmd: List[str], log) -> dict:
    """Train one run (output_dir/run.log has the tool's output) and return its final evaluation."""
    log(f"[run_ablations] {label}: {shell_line(cmd)}")
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
        proc = subprocess.run([*cmd[:2], "--overwrite", *cmd[2:]], cwd=REPO, stdout=logf, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{label}: training failed (exit {proc.returncode}), see {output_dir}/run.log")
    result = final_eval(output_dir)
    if result is None:
        raise RuntimeError(f"{label}: no evaluation in {output_dir}/metrics.json")
    with open(os.path.join(output_dir, "finished_on"), "w") as f:
        f.write(datetime.date.today().isoformat())
    return result


def _evaluate(row: Row, output_dir: str, dataset: str, extra: Sequence[str], seed: Optional[int], label: str,
              log) -> dict:
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
    cmd = eval_command(row, output_dir, dataset, extra, seed)
    log(f"[run_ablations] {label} on {dataset}: {shell_line(cmd)}")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "run.log"), "w") as logf:
        proc = subprocess.run(cmd, cwd=REPO, stdout=logf, stderr=subprocess.STDOUT, text=True)
    text = open(os.path.join(out, "run.log")).read()
    parsed = parse_copypaste(text)
    if proc.returncode != 0 or parsed is None:
        raise RuntimeError(f"{label}: evaluation on {dataset} failed (exit {proc.returncode}), see {out}/run.log")
    result = {m: parsed[m] for m in METRICS}
    with open(cached, "w") as f:
        json.dump(result, f)
    return result


def summarize(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation (n - 1 in the denominator; None for one value) and count."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values to summarise")
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None  # NaN stays NaN
    return {"mean": mean, "std": std, "n": n}


def fmt(stat: dict) -> str:
    """``mean ± std (n)`` with one decimal; ``mean (1)`` for one seed; ``nan`` where COCOeval gave none."""
    if math.isnan(stat["mean"]):
        return f"nan ({stat['n']})"
    if stat["std"] is None:
        return f"{stat['mean']:.1f} ({stat['n']})"
    return f"{stat['mean']:.1f} ± {stat['std']:.1f} ({stat['n']})"


def aggregate(runs: Sequence[dict]) -> dict:
    """One row from its seeds' results (:func:`run_row`): name, paper, the seeds' commands, dates and AP,
    and ``stats[(eval_label or "", metric)]`` = :func:`summarize` of that metric over the seeds."""
    if not runs:
        raise ValueError("a row needs at least one run")
    stats = {("", m): summarize([r[m] for r in runs]) for m in METRICS}
    for label in runs[0]["evals"]:
        stats.update({(label, m): summarize([r["evals"][label][m] for r in runs]) for m in METRICS})
    return {"name": runs[0]["name"], "paper": runs[0]["paper"], "runs": list(runs), "stats": stats,
            "date": max(r["date"] for r in runs), "iterations": sorted({r["iterations"] for r in runs})}


def compare(first: dict, other: dict) -> str:
    """How a row's mean AP stands against its reference row (``first``): the difference, and ">1 sd" when it
    holds beyond one standard deviation (the mean ± std intervals do not overlap: |diff| > std_a + std_b),
    "within 1 sd" otherwise; only the difference for single seeds."""
    a, b = first["stats"][("", "AP")], other["stats"][("", "AP")]
    diff = b["mean"] - a["mean"]
    shown = f"{round(diff, 1) + 0.0:+.1f}"  # + 0.0: no "-0.0" for a difference that rounds to zero
    if a["std"] is None or b["std"] is None:
        return shown
    return f"{shown} ({'>1 sd' if abs(diff) > a['std'] + b['std'] else 'within 1 sd'})"


def run_table(name: str, table: Table, seeds: Sequence[int], out_root: str, extra: Sequence[str], rerun: bool,
              log) -> List[dict]:
    """Every row of a table with every seed, aggregated per row. COCO specs (``--dataset-*`` flags and
    ``JSON:IMAGES`` evaluation sets) must exist first: the error names the file and the table."""
    specs = [a for r in table.rows for a in r.args if ":" in a] + [d for d in table.evals.values() if ":" in d]
    for spec in specs:
        json_file = spec.split(":")[0]
        if not os.path.isfile(os.path.join(REPO, json_file)):
            raise FileNotFoundError(f"table {name}: {json_file} does not exist" +
                                    (f"; {table.data_hint}" if table.data_hint else ""))
    return [aggregate([run_row(r, out_root, extra, rerun, log, seed=s, evals=table.evals) for s in seeds])
            for r in table.rows]


def budget_note(config: str, extra: Sequence[str], seeds: Optional[Sequence[int]] = None) -> str:
    """The training budget of a config after the extra overrides (iterations, images per batch, lr)."""
    from detectron2.config import LazyConfig

    sys.path.insert(0, REPO)
    cfg = LazyConfig.apply_overrides(LazyConfig.load(os.path.join(REPO, config)), list(extra))
    seed_text = f"seed {cfg.train.seed}" if seeds is None else "seeds " + ", ".join(str(s) for s in seeds)
    return (f"{cfg.train.max_iter} iterations of {cfg.dataloader.train.total_batch_size} images, AdamW lr "
            f"{cfg.optimizer.lr:g} (x{cfg.lr_multiplier['values'][1]:g} after {cfg.lr_multiplier.milestones[0]}), "
            f"{seed_text}, device {cfg.train.device}"
            + (f", OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}" if "OMP_NUM_THREADS" in os.environ else ""))


def _template(command_line: str, seed: Optional[int]) -> str:
    """A seed's command with its seed written as SEED (the same for every seed of a row)."""
    if seed is None:
        return command_line
    return command_line.replace(f"-s{seed} ", "-sSEED ").replace(f"train.seed={seed}", "train.seed=SEED")


def _reference_indices(table: Table, results: List[dict]) -> List[int]:
    """Per result, the index of the row its AP is compared with (the first row unless its ``Row``, matched
    by name, names another)."""
    index = {r["name"]: i for i, r in enumerate(results)}
    refs = {row.name: row.reference for row in table.rows}
    out = []
    for r in results:
        ref = refs.get(r["name"])
        if ref is not None and ref not in index:
            raise KeyError(f"row {r['name']!r}: its reference row {ref!r} is not in the table")
        out.append(0 if ref is None else index[ref])
    return out


def render(name: str, table: Table, results: List[dict], budget: str, extra: Sequence[str],
           seeds: Optional[Sequence[int]] = None) -> str:
    """A table's markdown section from :func:`aggregate`'d rows."""
    seeds = list(seeds) if seeds is not None else sorted({r["seed"] for row in results for r in row["runs"]},
                                                         key=lambda s: (s is None, s))
    labels = list(table.evals)
    lines = [f"<!-- table:{name} -->", f"## {table.title}", "", table.description, ""]
    has_paper = any(r["paper"] is not None for r in results)
    header = (["row"] + (["paper AP"] if has_paper else []) + list(METRICS)
              + [f"{label} {m}" for label in labels for m in table.eval_metrics] + [f"AP vs {table.compare_label}"])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    references = _reference_indices(table, results)
    for i, r in enumerate(results):
        cells = [r["name"]]
        if has_paper:
            cells.append("-" if r["paper"] is None else f"{r['paper']:.1f}")
        cells += [fmt(r["stats"][("", m)]) for m in METRICS]
        cells += [fmt(r["stats"][(label, m)]) for label in labels for m in table.eval_metrics]
        ref = references[i]
        cells.append("-" if ref == i else compare(results[ref], r))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""]
    data = "synthetic shapes data (val, 80 images)" if labels == list(NEW_DOMAIN) else "the table's data"
    lines += ["Cells: mean ± sample standard deviation (number of seeds) of the final COCO evaluation; AP, AP50, "
              f"AP75 on {table.main_eval}" + "".join(
                  f"; {label}: the final model evaluated on `{table.evals[label]}`" for label in labels)
              + (f" ({', '.join(table.eval_metrics)})" if labels else "")
              + f". \"AP vs {table.compare_label}\": difference of mean AP, \">1 sd\" where the two rows' mean ± std intervals "
              "do not overlap.", ""]
    if has_paper and table.paper_source:
        lines += [f"Paper column: {table.paper_source}. This implementation: {data}.", ""]
    lines += [f"Budget per run: {budget}" + (f"; extra overrides `{' '.join(extra)}`" if extra else "") + ".",
              f"Run on {max(r['date'] for r in results)} with `python tools/run_ablations.py --table {name} "
              f"--seeds {len(seeds)}`; each row's training command ("
              + ("SEED = " + ", ".join(str(s) for s in seeds) if None not in seeds else "the config's own seed")
              + "), its AP per seed"
              + "".join(f" and {label} AP" for label in labels) + ":", ""]
    for r in results:
        per_seed = " / ".join(f"{x['AP']:.1f}" for x in r["runs"])
        for label in labels:
            per_seed += f"; {label} " + " / ".join(f"{x['evals'][label]['AP']:.1f}" for x in r["runs"])
        lines.append(f"- {r['name']}: AP {per_seed}: `{_template(r['runs'][0]['command'], r['runs'][0]['seed'])}`")
    for label in labels:
        ds = table.evals[label]
        lines += ["", f"{label} evaluation of each run (DIR its output folder, ROW_OVERRIDES its overrides): "
                  f"`python tools/lazyconfig_train_net.py --config-file CONFIG --eval-only "
                  + (f"--dataset-val {ds} " if ":" in ds else "")
                  + f"train.init_checkpoint=DIR/model_final.pth train.output_dir=DIR/{os.path.basename(eval_dir('', ds))} "
                  + "ROW_OVERRIDES" + ("" if ":" in ds else f" dataloader.test.dataset.names={ds}") + "`."]
    lines += ["", f"<!-- /table:{name} -->"]
    return "\n".join(lines)


def update_doc(path: str, name: str, section: str) -> None:
    """Replace the section of table ``name`` in the markdown file (append it if absent)."""
    head = ("# Ablations on the synthetic data\n\nWritten by `tools/run_ablations.py` (one section per table; "
            "a run rewrites only its own section). AP numbers are COCO AP x 100, mean ± std (n seeds), on the "
            "synthetic shapes validation set (seen domain) and its domain-shifted twin (new domain); they test "
            "the papers' orderings at a tiny scale, not their COCO numbers.\n")
    text = open(path).read() if os.path.isfile(path) else head
    pattern = re.compile(rf"<!-- table:{re.escape(name)} -->.*?<!-- /table:{re.escape(name)} -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="append", choices=sorted(TABLES), help="table(s) to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the tables and their rows")
    parser.add_argument("--output-root", default=os.path.join(REPO, "output", "ablations"))
    parser.add_argument("--doc", default=DOC, help="markdown file to update")
    parser.add_argument("--rerun", action="store_true", help="train again even when a finished run exists")
    parser.add_argument("--opts", nargs="*", default=[], help="key=value overrides added to every row")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per row (train.seed = 42, 43, ...; default 3)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    seeds = seeds_for(args.seeds)
    names = args.table or list(TABLES)
    if args.list:
        for n in names:
            print(f"{n}: {TABLES[n].title}")
            for r in TABLES[n].rows:
                print(f"  - {r.name}: {r.config} {' '.join(r.overrides)}")
            print(f"  evaluated on: {TABLES[n].main_eval}" + "".join(f", {k} ({v})" for k, v in TABLES[n].evals.items()))
        return
    for n in names:
        table = TABLES[n]
        results = run_table(n, table, seeds, args.output_root, args.opts, args.rerun, print)
        section = render(n, table, results, budget_note(table.rows[0].config, args.opts, seeds), args.opts, seeds)
        update_doc(args.doc, n, section)
        print(section, flush=True)


if __name__ == "__main__":
    main()
