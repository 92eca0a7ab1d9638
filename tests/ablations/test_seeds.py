"""sd_detr.ablations (tools/ablations.py --seeds): the training tool's seed really changes the initial weights and the data
order (and the same seed repeats them), the per-row aggregation (mean, sample standard deviation, count)
and its table, the evaluation-log parsing, and one tiny end-to-end run of 2 seeds."""
import json
import os

import pytest
import torch

from sd_detr import ablations
from sd_detr.ablations import runner

from ..utils import REPO

# the clone's training tool, as tools/ablations.py gives it
TOOL = ablations.TrainTool(os.path.join("tools", "lazyconfig_train_net.py"), REPO)

TINY = "projects/conditional_detr/configs/conditional_detr_tiny_synthetic.py"


def _initial_state(seed, output_dir):
    """What tools/lazyconfig_train_net.py does up to the first iteration, with ``train.seed=seed``: the
    initial weights (flattened) and the first training batch (file names and augmented image sizes)."""
    from detectron2.config import LazyConfig, instantiate
    from detectron2.engine import default_argument_parser, default_setup

    from sd_detr.engine.train_loop import build_model

    cfg = LazyConfig.load(os.path.join(REPO, TINY))
    cfg = LazyConfig.apply_overrides(cfg, [f"train.seed={seed}", f"train.output_dir={output_dir}",
                                           "dataloader.train.num_workers=0", "dataloader.train.total_batch_size=4"])
    default_setup(cfg, default_argument_parser().parse_args(["--config-file", TINY]))  # seeds: train.seed
    model = build_model(cfg)
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    batch = next(iter(instantiate(cfg.dataloader.train)))
    return weights, [(os.path.basename(d["file_name"]), tuple(d["image"].shape)) for d in batch]


def test_train_seed_changes_initial_weights_and_data_order_and_the_same_seed_repeats_them(
        synthetic_root, monkeypatch, tmp_path):
    """Catches a --seeds that does not reach the run (e.g. a key the tool ignores, or a model that reseeds
    itself): the seeds' runs would be copies and their standard deviation a false zero."""
    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", synthetic_root)
    w42, batch42 = _initial_state(42, tmp_path)
    w43, batch43 = _initial_state(43, tmp_path)
    w42_again, batch42_again = _initial_state(42, tmp_path)
    assert torch.equal(w42, w42_again) and batch42 == batch42_again
    assert not torch.allclose(w42, w43)
    assert batch42 != batch43


def test_seeds_start_at_the_configs_default_seed():
    assert ablations.seeds_for(3) == [42, 43, 44]  # 42: configs/common/train.py, the old single runs
    with pytest.raises(ValueError, match="--seeds"):
        ablations.seeds_for(0)


def test_summary_uses_the_sample_standard_deviation():
    """n - 1 in the denominator (the population one, 1.63 here, understates the spread of 3 seeds)."""
    s = ablations.summarize([10.0, 12.0, 14.0])
    assert s == {"mean": 12.0, "std": pytest.approx(2.0), "n": 3}
    assert ablations.fmt(s) == "12.0 ± 2.0 (3)"
    one = ablations.summarize([7.25])
    assert one["std"] is None and ablations.fmt(one) == "7.2 (1)"
    assert ablations.fmt(ablations.summarize([float("nan"), 1.0])) == "nan (2)"


def _run(name, seed, ap, shift_ap, date="2026-12-01"):
    return {"name": name, "paper": 41.7 if name == "A" else None, "seed": seed, "date": date, "iterations": 1500,
            "command": f"python tools/lazyconfig_train_net.py --config-file c.py train.output_dir=out/c-1234abcd-s{seed} "
                       f"train.seed={seed} train.max_iter=1500",
            "AP": ap, "AP50": 2 * ap, "AP75": ap / 2,
            "evals": {label: {"AP": k * shift_ap, "AP50": 2 * k * shift_ap, "AP75": k * shift_ap / 2}
                      for k, label in ((1, "new-domain"), (10, "new-objects"), (100, "new-background"))}}


def test_rows_aggregate_per_metric_and_eval_set_and_render_mean_std_n():
    """Catches metrics mixed between seeds or eval sets, a table without the new-domain columns, and a
    command that names one seed's folder for all seeds."""
    a = ablations.aggregate([_run("A", 42, 10.0, 1.0), _run("A", 43, 12.0, 2.0), _run("A", 44, 14.0, 3.0)])
    b = ablations.aggregate([_run("B", 42, 20.0, 1.0, "2026-12-02"), _run("B", 43, 22.0, 5.0),
                                 _run("B", 44, 24.0, 3.0)])
    close = ablations.aggregate([_run("C", 42, 11.0, 0.0), _run("C", 43, 13.0, 0.0), _run("C", 44, 15.0, 0.0)])
    assert a["stats"][("", "AP50")]["mean"] == pytest.approx(24.0)
    assert a["stats"][("new-domain", "AP")] == {"mean": 2.0, "std": pytest.approx(1.0), "n": 3}
    assert b["stats"][("new-domain", "AP")]["std"] == pytest.approx(2.0)
    assert ablations.compare(a, b) == "+10.0 (>1 sd)"
    assert ablations.compare(a, close) == "+1.0 (within 1 sd)"

    table = ablations.Table("T", "desc", [], paper_source="the paper")
    section = ablations.render("t", table, [a, b, close], "a budget", [], seeds=[42, 43, 44])
    assert section.startswith("<!-- table:t -->") and section.endswith("<!-- /table:t -->")
    assert ("| row | paper AP | AP | AP50 | AP75 | new-domain AP | new-domain AP50 | new-objects AP "
            "| new-objects AP50 | new-background AP | new-background AP50 | AP vs first row |") in section
    assert ("| A | 41.7 | 12.0 ± 2.0 (3) | 24.0 ± 4.0 (3) | 6.0 ± 1.0 (3) | 2.0 ± 1.0 (3) | 4.0 ± 2.0 (3) "
            "| 20.0 ± 10.0 (3) | 40.0 ± 20.0 (3) | 200.0 ± 100.0 (3) | 400.0 ± 200.0 (3) | - |") in section
    assert b["stats"][("new-background", "AP75")]["mean"] == pytest.approx(150.0)  # kept, not shown
    assert "| B | - | 22.0 ± 2.0 (3) |" in section and section.count("(>1 sd)") == 1
    assert ("- A: AP 10.0 / 12.0 / 14.0; new-domain 1.0 / 2.0 / 3.0; new-objects 10.0 / 20.0 / 30.0; "
            "new-background 100.0 / 200.0 / 300.0: ") in section
    assert "train.output_dir=out/c-1234abcd-sSEED train.seed=SEED train.max_iter=1500`" in section
    assert "--seeds 3" in section and "SEED = 42, 43, 44" in section and "2026-12-02" in section
    for name in ("sd_detr_synthetic_val_shift", "sd_detr_synthetic_val_shift_objects",
                 "sd_detr_synthetic_val_shift_background"):
        assert f"dataloader.test.dataset.names={name}`" in section


def test_new_domain_split_names_are_the_registered_ones():
    """Each label names the split of its shift (catches the objects-only and background-only splits swapped)."""
    from sd_detr.data.synthetic import (SYNTHETIC_SPLIT_DOMAINS, SYNTHETIC_VAL_SHIFT_BACKGROUND_NAME,
                                        SYNTHETIC_VAL_SHIFT_NAME, SYNTHETIC_VAL_SHIFT_OBJECTS_NAME)

    expected = {"new-domain": SYNTHETIC_VAL_SHIFT_NAME, "new-objects": SYNTHETIC_VAL_SHIFT_OBJECTS_NAME,
                "new-background": SYNTHETIC_VAL_SHIFT_BACKGROUND_NAME}
    assert ablations.NEW_DOMAIN == expected
    assert SYNTHETIC_SPLIT_DOMAINS["val_shift_objects"] == "shifted_objects"
    assert SYNTHETIC_SPLIT_DOMAINS["val_shift_background"] == "shifted_background"
    synthetic = [t for t in ablations.TABLES.values() if not any(r.args for r in t.rows)]
    assert len(synthetic) >= 4 and all(t.evals == expected for t in synthetic)
    assert ablations.TABLES["stardist_nuclei"].eval_metrics == ablations.METRICS


def test_evaluation_on_a_coco_spec_replaces_the_rows_own_val_set():
    """The real-data table evaluates on its training images through --dataset-val (catches an eval command
    that keeps the held-out set, or that also overrides the dataset name of the synthetic config)."""
    row = ablations.TABLES["stardist_nuclei"].rows[0]
    assert row.args == ("--dataset-train", ablations.NUCLEI_TRAIN, "--dataset-val", ablations.NUCLEI_HELDOUT)
    cmd = ablations.eval_command(row, "out/run", ablations.NUCLEI_TRAIN, [], 42, TOOL)
    assert cmd[cmd.index("--dataset-val") + 1] == ablations.NUCLEI_TRAIN and cmd.count("--dataset-val") == 1
    assert ablations.NUCLEI_HELDOUT not in cmd and not any("dataset.names" in a for a in cmd)
    assert cmd.index("--dataset-val") < cmd.index("train.seed=42")  # flags before the key=value overrides
    assert "--eval-only" in cmd and "train.init_checkpoint=out/run/model_final.pth" in cmd
    synthetic = ablations.Row("x", TINY)
    cmd = ablations.eval_command(synthetic, "out/run", ablations.SYNTHETIC_VAL_SHIFT, [], None, TOOL)
    assert cmd[-1] == "dataloader.test.dataset.names=sd_detr_synthetic_val_shift" and "--dataset-val" not in cmd
    assert ablations.eval_dir("o", ablations.NUCLEI_TRAIN) != ablations.eval_dir("o", ablations.NUCLEI_HELDOUT)
    assert ":" not in os.path.basename(ablations.eval_dir("o", ablations.NUCLEI_TRAIN))
    # flags are part of a run's key (the same config on other data is another run); old keys unchanged
    assert ablations.run_key(TINY, (), [], 42, row.args) != ablations.run_key(TINY, (), [], 42)
    assert ablations.run_key(TINY, (), []) == ablations.run_key(TINY, (), [], None, ())


def test_a_table_whose_data_is_missing_fails_before_training_naming_the_file_and_the_tool(monkeypatch):
    monkeypatch.setattr(runner.subprocess, "run", lambda *a, **k: pytest.fail("nothing should run"))
    row = ablations.Row("r", TINY, args=("--dataset-train", "nowhere/train.json:nowhere/train"))
    table = ablations.Table("T", "d", [row], evals={}, data_hint="make it with tools/make_x.py")
    with pytest.raises(FileNotFoundError, match=r"table t: nowhere/train.json does not exist; make it with tools/make_x.py"):
        ablations.run_table("t", table, [42], "/tmp/unused", [], rerun=False, log=lambda *_: None, tool=TOOL)


# lines of a real --eval-only log (tools/lazyconfig_train_net.py, Detectron2's print_csv_format)
_LOG = """[12/02 02:08:19 d2.evaluation.evaluator]: Total inference time: 0:00:00.237216
[12/02 02:08:19 d2.evaluation.testing]: copypaste: Task: bbox
[12/02 02:08:19 d2.evaluation.testing]: copypaste: AP,AP50,AP75,APs,APm,APl
[12/02 02:08:19 d2.evaluation.testing]: copypaste: 1.2500,3.5000,0.0100,0.0000,2.0000,nan
"""


def test_evaluation_results_are_read_from_the_copypaste_lines():
    """Catches columns read in the wrong order and an earlier evaluation taken instead of the last one."""
    got = ablations.parse_copypaste(_LOG)
    assert (got["AP"], got["AP50"], got["AP75"]) == (1.25, 3.5, 0.01)
    later = _LOG + _LOG.replace("1.2500,3.5000", "9.0000,8.0000")
    assert ablations.parse_copypaste(later)["AP"] == 9.0
    assert ablations.parse_copypaste("no evaluation here") is None
    assert ablations.parse_copypaste(_LOG, task="segm") is None


def test_finished_seed_runs_and_evaluations_are_reused_without_running_anything(tmp_path, monkeypatch):
    """Each seed has its own folder; a finished run and a finished evaluation are not redone (catches a
    cache keyed without the seed, which would give one run for all seeds)."""
    row = ablations.Row("+ DFL", "projects/sd_detr/configs/ablations/table2_dfl_tiny_synthetic.py")
    for seed, ap in ((42, 10.0), (43, 14.0)):
        out = tmp_path / ablations.run_key(row.config, row.overrides, [], seed)
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps({"iteration": 1499, "bbox/AP": ap, "bbox/AP50": 30.0,
                                                      "bbox/AP75": 9.0}) + "\n")
        for k, split in enumerate(ablations.NEW_DOMAIN.values(), 1):
            (out / f"eval_{split}").mkdir()
            (out / f"eval_{split}" / "results.json").write_text(json.dumps({"AP": k * ap / 10, "AP50": 1.0, "AP75": 0.5}))
    assert ablations.run_key(row.config, (), [], 42) != ablations.run_key(row.config, (), [], 43)

    def no_subprocess(*a, **k):
        raise AssertionError("nothing should run")

    monkeypatch.setattr(runner.subprocess, "run", no_subprocess)
    table = ablations.Table("T", "d", [row])
    (result,) = ablations.run_table("t", table, [42, 43], str(tmp_path), [], rerun=False, log=lambda *_: None, tool=TOOL)
    assert result["stats"][("", "AP")]["mean"] == 12.0 and result["stats"][("", "AP")]["n"] == 2
    assert result["stats"][("new-domain", "AP")]["mean"] == pytest.approx(1.2)
    assert result["stats"][("new-background", "AP")]["mean"] == pytest.approx(3.6)  # each set its own cache
    assert [r["seed"] for r in result["runs"]] == [42, 43]
    assert "train.seed=43" in result["runs"][1]["command"]


@pytest.mark.slow  # two short trainings (about 60 s)
def test_two_seeds_of_one_row_end_to_end(synthetic_root, monkeypatch, tmp_path):
    """The tool as a user runs it, at 2 iterations on the 12/6/6/6/6-image fixture data: 2 seeds x (training +
    evaluation on val_shift and on val_shift_objects) = 6 runs of tools/lazyconfig_train_net.py (about 65 s CPU
    on 2 idle cores), the doc section with mean ± std (2). Catches a broken command line, eval-only run or log
    parsing, and an evaluation that reads another split than its own."""
    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", synthetic_root)
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    tables = {"tiny": ablations.Table("Tiny", "one row", [ablations.Row("Conditional DETR", TINY)],
                                      evals={k: ablations.NEW_DOMAIN[k] for k in ("new-domain", "new-objects")})}
    doc, out = tmp_path / "ablations.md", tmp_path / "out"
    ablations.run_tables(["tiny"], ablations.seeds_for(2), str(out),
                         ["train.max_iter=2", "lr_multiplier.milestones=[1,2]", "train.eval_period=2",
                          "dataloader.train.total_batch_size=2"], False, str(doc), TOOL, log=lambda *_: None,
                         tables=tables)
    text = doc.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| Conditional DETR |"))
    assert row.count("(2) |") == 7, row  # AP, AP50, AP75 + AP, AP50 of each evaluation set
    dirs = sorted(p.name for p in out.iterdir())
    assert len(dirs) == 2 and dirs[0].endswith("-s42") and dirs[1].endswith("-s43")
    for d in dirs:
        cached = json.loads((out / d / f"eval_{ablations.SYNTHETIC_VAL_SHIFT}" / "results.json").read_text())
        assert set(cached) == {"AP", "AP50", "AP75"}
        log = (out / d / f"eval_{ablations.SYNTHETIC_VAL_SHIFT}" / "run.log").read_text()
        assert "Loaded 6 images in COCO format from" in log and "instances_val_shift.json" in log
        log = (out / d / f"eval_{ablations.SYNTHETIC_VAL_SHIFT_OBJECTS}" / "run.log").read_text()
        assert "Loaded 6 images in COCO format from" in log and "instances_val_shift_objects.json" in log


def test_rows_with_a_reference_are_compared_with_it_not_with_the_first_row():
    """The assigner table compares each detector + assigner with the same detector alone (catches the
    column falling back to the first row, or comparing a reference row with itself)."""
    runs = {name: ablations.aggregate([_run(name, s, ap + d, 0.0) for s, d in ((42, -1.0), (43, 0.0), (44, 1.0))])
            for name, ap in (("X", 2.0), ("X + a", 1.0), ("Y", 20.0), ("Y + a", 30.0))}
    rows = [ablations.Row("X", "x.py", reference="X"), ablations.Row("X + a", "xa.py", reference="X"),
            ablations.Row("Y", "y.py", reference="Y"), ablations.Row("Y + a", "ya.py", reference="Y")]
    table = ablations.Table("T", "desc", rows, compare_label="the detector alone")
    section = ablations.render("t", table, list(runs.values()), "a budget", [], seeds=[42, 43, 44])
    lines = {line.split(" | ")[0][2:]: line for line in section.splitlines() if line.startswith("| ")}
    assert "AP vs the detector alone |" in lines["row"]
    assert lines["X"].endswith("| - |") and lines["Y"].endswith("| - |")
    assert lines["X + a"].endswith("| -1.0 (within 1 sd) |")
    assert lines["Y + a"].endswith("| +10.0 (>1 sd) |")  # vs the first row it would read +28.0
    table.rows[1].reference = "Z"
    with pytest.raises(KeyError, match="'X \\+ a'.*'Z'"):
        ablations.render("t", table, list(runs.values()), "a budget", [], seeds=[42, 43, 44])


def test_assigner_table_compares_every_assigner_row_with_its_own_detector():
    rows = ablations.TABLES["stage_assigner"].rows
    names = {r.name for r in rows}
    for r in rows:
        assert r.reference in names and r.name.startswith(r.reference)
        assert (r.reference == r.name) == ("assigner" not in r.name)


def test_a_difference_that_rounds_to_zero_has_no_minus_sign():
    a = ablations.aggregate([_run("A", s, ap, 0.0) for s, ap in ((42, 1.0), (43, 2.0), (44, 3.0))])
    b = ablations.aggregate([_run("B", s, ap, 0.0) for s, ap in ((42, 0.99), (43, 1.99), (44, 2.97))])
    assert ablations.compare(a, b) == "+0.0 (within 1 sd)"
