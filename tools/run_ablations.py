#!/usr/bin/env python
"""Run ablation tables on the synthetic data and write them to docs/ablations.md.

Every row is a training run of tools/lazyconfig_train_net.py, exactly as a user runs it: a tiny config
(with its budget, configs/common/synthetic_train.py) plus optional ``key=value`` overrides; its final
COCO evaluation gives the row's AP, AP50 and AP75. Rows with the same config and overrides run once and
are shared between tables. A finished run is reused (its output folder holds the evaluation) unless
``--rerun`` is given, so an interrupted session picks up where it stopped.

Tables are data (``TABLES`` below): to add one, list its rows. docs/ablations.md has one section per
table between ``<!-- table:NAME -->`` markers; running a table rewrites only its own section.

On a CPU shared with other jobs, run it with ``OMP_NUM_THREADS=1``: with more threads than free cores,
PyTorch's intra-op threads spin and one training iteration costs many times the CPU time.

Examples:
  python tools/run_ablations.py                       # every table
  python tools/run_ablations.py --table sd_detr_table2 --table sd_detr_table3
  python tools/run_ablations.py --list
  python tools/run_ablations.py --table sd_detr_table2 --opts train.max_iter=100 lr_multiplier.milestones=[90,100] train.eval_period=100
"""
import argparse
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_TOOL = os.path.join("tools", "lazyconfig_train_net.py")
DOC = os.path.join(REPO, "docs", "ablations.md")
SD = "projects/sd_detr/configs"
METRICS = ("AP", "AP50", "AP75")


@dataclass
class Row:
    """One run: a config file (relative to the repository) and overrides; ``paper`` is the paper's
    COCO AP of the row, when it has one."""

    name: str
    config: str
    overrides: Sequence[str] = ()
    paper: Optional[float] = None


@dataclass
class Table:
    title: str
    description: str
    rows: List[Row] = field(default_factory=list)
    paper_source: str = ""


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
              for row in (Row(name, f"projects/{proj}/configs/{proj}_tiny_synthetic.py"),
                          Row(f"{name} + cross-stage assigner",
                              f"projects/{proj}/configs/{proj}_tiny_synthetic_stage_assigner.py"))]
        + [Row(f"{name} + cross-stage assigner, own matches always positive (not in the paper)",
               f"projects/{proj}/configs/{proj}_tiny_synthetic_stage_assigner.py",
               ("model.criterion.assigner.keep_own_matches=True",))
           for name, proj in (("Conditional DETR", "conditional_detr"), ("DAB-DETR", "dab_detr"))],
    ),
}


def run_key(config: str, overrides: Sequence[str], extra: Sequence[str]) -> str:
    """Output folder name of a run: the config's name and a hash of its overrides."""
    name = os.path.splitext(os.path.basename(config))[0]
    digest = hashlib.sha1(json.dumps([config, list(overrides), list(extra)]).encode()).hexdigest()[:8]
    return f"{name}-{digest}"


def final_eval(output_dir: str) -> Optional[dict]:
    """The last "bbox/AP..." row of metrics.json, or None."""
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        return None
    last = None
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "bbox/AP" in row:
                last = row
    return last


def command(row: Row, output_dir: str, extra: Sequence[str]) -> List[str]:
    return [sys.executable, TRAIN_TOOL, "--config-file", row.config, f"train.output_dir={output_dir}",
            *row.overrides, *extra]


def shell_line(cmd: List[str]) -> str:
    """The command as a user types it from the repository root."""
    return " ".join(["python", *(a.replace(REPO + os.sep, "") for a in cmd[1:])])


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


def run_row(row: Row, out_root: str, extra: Sequence[str], rerun: bool, log) -> dict:
    output_dir = os.path.join(out_root, run_key(row.config, row.overrides, extra))
    cmd = command(row, output_dir, extra)
    trained_here = _acquire(output_dir, log, row.name)
    try:
        result = None if (rerun and trained_here) else final_eval(output_dir)
        if result is None:
            result = _train(row, output_dir, cmd, log)
        else:
            log(f"[run_ablations] {row.name}: reusing {output_dir}")
    finally:
        os.remove(os.path.join(output_dir, "running.lock"))
    date_file = os.path.join(output_dir, "finished_on")
    date = open(date_file).read().strip() if os.path.isfile(date_file) else "?"
    return {"name": row.name, "paper": row.paper, "command": shell_line(cmd), "date": date,
            "iterations": result.get("iteration", -1) + 1,
            **{m: result[f"bbox/{m}"] for m in METRICS}}


def _train(row: Row, output_dir: str, cmd: List[str], log) -> dict:
    """Train one row (output_dir/run.log has the tool's output) and return its final evaluation."""
    log(f"[run_ablations] {row.name}: {shell_line(cmd)}")
    metrics = os.path.join(output_dir, "metrics.json")
    if os.path.exists(metrics):  # a fresh run: do not mix in an interrupted one's rows
        os.remove(metrics)
    with open(os.path.join(output_dir, "run.log"), "w") as logf:
        proc = subprocess.run(cmd, cwd=REPO, stdout=logf, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{row.name}: training failed (exit {proc.returncode}), see {output_dir}/run.log")
    result = final_eval(output_dir)
    if result is None:
        raise RuntimeError(f"{row.name}: no evaluation in {output_dir}/metrics.json")
    with open(os.path.join(output_dir, "finished_on"), "w") as f:
        f.write(datetime.date.today().isoformat())
    return result


def budget_note(config: str, extra: Sequence[str]) -> str:
    """The training budget of a config after the extra overrides (iterations, images per batch, lr)."""
    from detectron2.config import LazyConfig

    sys.path.insert(0, REPO)
    cfg = LazyConfig.apply_overrides(LazyConfig.load(os.path.join(REPO, config)), list(extra))
    return (f"{cfg.train.max_iter} iterations of {cfg.dataloader.train.total_batch_size} images, AdamW lr "
            f"{cfg.optimizer.lr:g} (x{cfg.lr_multiplier['values'][1]:g} after {cfg.lr_multiplier.milestones[0]}), "
            f"seed {cfg.train.seed}, device {cfg.train.device}"
            + (f", OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}" if "OMP_NUM_THREADS" in os.environ else ""))


def render(name: str, table: Table, results: List[dict], budget: str, extra: Sequence[str]) -> str:
    lines = [f"<!-- table:{name} -->", f"## {table.title}", "", table.description, ""]
    has_paper = any(r["paper"] is not None for r in results)
    header = ["row"] + (["paper AP"] if has_paper else []) + ["AP", "AP50", "AP75"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        cells = [r["name"]]
        if has_paper:
            cells.append("-" if r["paper"] is None else f"{r['paper']:.1f}")
        cells += [f"{r[m]:.1f}" for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""]
    if has_paper and table.paper_source:
        lines += [f"Paper column: {table.paper_source}. This implementation: synthetic shapes data (val, 80 images), "
                  "COCO AP of the final evaluation, one run per row.", ""]
    lines += [f"Budget per row: {budget}" + (f"; extra overrides `{' '.join(extra)}`" if extra else "") + ".",
              f"Run on {max(r['date'] for r in results)} with `python tools/run_ablations.py --table {name}`; "
              "the commands of the rows:", ""]
    lines += [f"- {r['name']}: `{r['command']}`" for r in results]
    lines += ["", f"<!-- /table:{name} -->"]
    return "\n".join(lines)


def update_doc(path: str, name: str, section: str) -> None:
    """Replace the section of table ``name`` in the markdown file (append it if absent)."""
    head = ("# Ablations on the synthetic data\n\nWritten by `tools/run_ablations.py` (one section per table; "
            "a run rewrites only its own section). AP numbers are COCO AP x 100 on the synthetic shapes "
            "validation set; they test the papers' orderings at a tiny scale, not their COCO numbers.\n")
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
    args = parser.parse_args(argv)
    names = args.table or list(TABLES)
    if args.list:
        for n in names:
            print(f"{n}: {TABLES[n].title}")
            for r in TABLES[n].rows:
                print(f"  - {r.name}: {r.config} {' '.join(r.overrides)}")
        return
    for n in names:
        table = TABLES[n]
        results = [run_row(r, args.output_root, args.opts, args.rerun, print) for r in table.rows]
        section = render(n, table, results, budget_note(table.rows[0].config, args.opts), args.opts)
        update_doc(args.doc, n, section)
        print(section, flush=True)


if __name__ == "__main__":
    main()
