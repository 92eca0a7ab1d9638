"""A table's markdown section (:func:`render`), its place in the ablations document (:func:`update_doc`),
the ``--list`` text, and :func:`run_tables`, what ``tools/run_ablations.py`` does after parsing its flags."""
import os
import re
from typing import Dict, List, Optional, Sequence

from .runner import TrainTool, budget_note, eval_dir, run_table
from .stats import compare, fmt
from .tables import METRICS, NEW_DOMAIN, TABLES, Table


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
    """A table's markdown section from :func:`sd_detr.ablations.stats.aggregate`'d rows."""
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


def list_text(names: Sequence[str], tables: Optional[Dict[str, Table]] = None) -> str:
    """The ``--list`` text: per table its title, rows (config and overrides) and evaluation sets."""
    tables = TABLES if tables is None else tables
    lines = []
    for n in names:
        lines.append(f"{n}: {tables[n].title}")
        for r in tables[n].rows:
            lines.append(f"  - {r.name}: {r.config} {' '.join(r.overrides)}")
        lines.append(f"  evaluated on: {tables[n].main_eval}" + "".join(f", {k} ({v})" for k, v in tables[n].evals.items()))
    return "\n".join(lines)


def run_tables(names: Sequence[str], seeds: Sequence[int], out_root: str, extra: Sequence[str], rerun: bool,
               doc: str, tool: TrainTool, log=print, tables: Optional[Dict[str, Table]] = None) -> List[str]:
    """Run each named table (every row, every seed), render it and rewrite its section of the markdown file
    ``doc``; returns the sections (each also given to ``log``)."""
    tables = TABLES if tables is None else tables
    sections = []
    for n in names:
        table = tables[n]
        results = run_table(n, table, seeds, out_root, extra, rerun, log, tool)
        section = render(n, table, results, budget_note(table.rows[0].config, extra, seeds, tool.cwd), extra, seeds)
        update_doc(doc, n, section)
        log(section)
        sections.append(section)
    return sections
