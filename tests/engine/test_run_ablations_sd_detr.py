"""tools/run_ablations.py (the SD-DETR ablation tables): a table rewrites only its own section of the
markdown file, finished runs are reused without training, every row names an existing config."""
import importlib.util
import json
import os

import pytest

from ..utils import REPO

_spec = importlib.util.spec_from_file_location("run_ablations", os.path.join(REPO, "tools", "run_ablations.py"))
run_ablations = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_ablations)


def test_every_row_names_an_existing_config_and_valid_override_keys():
    from detectron2.config import LazyConfig

    from sd_detr.config import check_override_keys

    for table in run_ablations.TABLES.values():
        for row in table.rows:
            path = os.path.join(REPO, row.config)
            assert os.path.isfile(path), row
            if row.overrides:
                check_override_keys(LazyConfig.load(path), list(row.overrides))


def test_a_table_rewrites_only_its_own_section(tmp_path):
    doc = tmp_path / "ablations.md"
    run_ablations.update_doc(str(doc), "a", "<!-- table:a -->\nold a\n<!-- /table:a -->")
    run_ablations.update_doc(str(doc), "b", "<!-- table:b -->\nold b\n<!-- /table:b -->")
    run_ablations.update_doc(str(doc), "a", "<!-- table:a -->\nnew a\n<!-- /table:a -->")
    text = doc.read_text()
    assert "new a" in text and "old a" not in text and "old b" in text
    assert text.index("table:a") < text.index("table:b")  # the section keeps its place


def test_finished_run_is_reused_and_rendered_with_its_command(tmp_path):
    """A run with the config's own seed (seed=None: the folder name of the single-seed runs) is reused, and
    a table without extra evaluation sets renders as one seed."""
    row = run_ablations.Row("+ DFL", "projects/sd_detr/configs/ablations/table2_dfl_tiny_synthetic.py", paper=43.1)
    out = tmp_path / run_ablations.run_key(row.config, row.overrides, [])
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"iteration": 2999, "bbox/AP": 12.5, "bbox/AP50": 30.5, "bbox/AP75": 9.0}) + "\n")
    (out / "finished_on").write_text("2026-01-02")
    result = run_ablations.run_row(row, str(tmp_path), [], rerun=False, log=lambda *_: None)
    assert (result["AP"], result["AP50"], result["AP75"], result["iterations"]) == (12.5, 30.5, 9.0, 3000)
    assert result["evals"] == {} and "train.seed" not in result["command"]
    assert not (out / "running.lock").exists()
    table = run_ablations.Table("T", "desc", [row], paper_source="paper", evals={})
    section = run_ablations.render("t", table, [run_ablations.aggregate([result])], "a budget", [])
    assert "| + DFL | 43.1 | 12.5 (1) | 30.5 (1) | 9.0 (1) | - |" in section
    assert "--config-file projects/sd_detr/configs/ablations/table2_dfl_tiny_synthetic.py" in section
    assert "2026-01-02" in section


@pytest.mark.parametrize("name", sorted(run_ablations.TABLES))
def test_tables_have_distinct_rows(name):
    keys = [(r.config, tuple(r.overrides)) for r in run_ablations.TABLES[name].rows]
    assert len(set(keys)) == len(keys)
