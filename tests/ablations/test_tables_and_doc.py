"""sd_detr.ablations (the tables of tools/ablations.py): a table rewrites only its own section of the
markdown file, finished runs are reused without training, every row names an existing config."""
import json
import os

import pytest

from sd_detr import ablations

from ..utils import REPO

TOOL = ablations.TrainTool(os.path.join("tools", "lazyconfig_train_net.py"), REPO)


def test_every_row_names_an_existing_config_and_valid_override_keys():
    from detectron2.config import LazyConfig

    from sd_detr.config import check_override_keys

    for table in ablations.TABLES.values():
        for row in table.rows:
            path = os.path.join(REPO, row.config)
            assert os.path.isfile(path), row
            if row.overrides:
                check_override_keys(LazyConfig.load(path), list(row.overrides))


def test_a_table_rewrites_only_its_own_section(tmp_path):
    doc = tmp_path / "ablations.md"
    ablations.update_doc(str(doc), "a", "<!-- table:a -->\nold a\n<!-- /table:a -->")
    ablations.update_doc(str(doc), "b", "<!-- table:b -->\nold b\n<!-- /table:b -->")
    ablations.update_doc(str(doc), "a", "<!-- table:a -->\nnew a\n<!-- /table:a -->")
    text = doc.read_text()
    assert "new a" in text and "old a" not in text and "old b" in text
    assert text.index("table:a") < text.index("table:b")  # the section keeps its place


def test_finished_run_is_reused_and_rendered_with_its_command(tmp_path):
    """A run with the config's own seed (seed=None: the folder name of the single-seed runs) is reused, and
    a table without extra evaluation sets renders as one seed."""
    row = ablations.Row("+ DFL", "projects/sd_detr/configs/ablations/table2_dfl_tiny_synthetic.py", paper=43.1)
    out = tmp_path / ablations.run_key(row.config, row.overrides, [])
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"iteration": 2999, "bbox/AP": 12.5, "bbox/AP50": 30.5, "bbox/AP75": 9.0}) + "\n")
    (out / "finished_on").write_text("2026-01-02")
    result = ablations.run_row(row, str(tmp_path), [], rerun=False, log=lambda *_: None, tool=TOOL)
    assert (result["AP"], result["AP50"], result["AP75"], result["iterations"]) == (12.5, 30.5, 9.0, 3000)
    assert result["evals"] == {} and "train.seed" not in result["command"]
    assert not (out / "running.lock").exists()
    table = ablations.Table("T", "desc", [row], paper_source="paper", evals={})
    section = ablations.render("t", table, [ablations.aggregate([result])], "a budget", [])
    assert "| + DFL | 43.1 | 12.5 (1) | 30.5 (1) | 9.0 (1) | - |" in section
    assert "--config-file projects/sd_detr/configs/ablations/table2_dfl_tiny_synthetic.py" in section
    assert "2026-01-02" in section


@pytest.mark.parametrize("name", sorted(ablations.TABLES))
def test_tables_have_distinct_rows(name):
    keys = [(r.config, tuple(r.overrides)) for r in ablations.TABLES[name].rows]
    assert len(set(keys)) == len(keys)


def test_per_detector_tables_list_every_registered_detector_with_sd_detr_last():
    """The stage-assigner and nuclei tables take their detectors from the registry (catches a list written
    out again, or SD-DETR's place moved: the doc's row order)."""
    from sd_detr.model_zoo import detectors

    titles = [t for t, _ in ablations.table_detectors()]
    assert sorted(titles) == sorted(d.title for d in detectors()) and titles[-1] == "SD-DETR"
    assert [r.name for r in ablations.TABLES["stardist_nuclei"].rows] == titles
    alone = [r.name for r in ablations.TABLES["stage_assigner"].rows if r.reference == r.name]
    assert alone == titles


def test_a_fifth_registered_detector_gets_its_rows_without_editing_the_tables():
    """Bug caught: a table that enumerates the detectors by hand (the fifth would be missing)."""
    from sd_detr.model_zoo import Detector, detectors

    fifth = Detector("new_detr", "NewDETR", "New-DETR", "new_detr/new_detr_tiny_synthetic.py",
                     "new_detr/new_detr_r50_12ep.py", None)
    tables = ablations.make_tables(detectors() + [fifth])
    nuclei = [r.name for r in tables["stardist_nuclei"].rows]
    assert nuclei[-2:] == ["New-DETR", "SD-DETR"]  # SD-DETR stays last
    assert tables["stardist_nuclei"].rows[-2].config == "projects/new_detr/configs/new_detr_tiny_synthetic.py"
    assert {"New-DETR", "New-DETR + cross-stage assigner"} <= {r.name for r in tables["stage_assigner"].rows}


def test_commands_are_printed_relative_to_the_tools_folder():
    """The doc's commands are typed in the clone (catches the clone's path left in, or a path outside it cut)."""
    cmd = ["/venv/bin/python", "tools/t.py", "--config-file", "c.py", "train.output_dir=/clone/out/run-1",
           "train.init_checkpoint=/elsewhere/clone/w.pth"]
    assert ablations.shell_line(cmd, "/clone") == ("python tools/t.py --config-file c.py train.output_dir=out/run-1 "
                                                   "train.init_checkpoint=/elsewhere/clone/w.pth")
    assert ablations.shell_line(cmd, "/clone/") == ablations.shell_line(cmd, "/clone")
