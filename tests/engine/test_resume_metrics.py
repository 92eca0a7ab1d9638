"""A run killed after a checkpoint and resumed logs every iteration once in metrics.json (issue 11,
fault 2: seen 9, 19, 29, 29, 39, ...), and a resume of a finished run says there is nothing to train."""
import json
import logging
import os

import pytest
from detectron2.config import LazyConfig

from sd_detr.engine import do_train
from sd_detr.engine.train_loop import trim_metrics

from ..utils import REPO

TINY = os.path.join(REPO, "projects", "conditional_detr", "configs", "conditional_detr_tiny_synthetic.py")


def _tiny_cfg(output_dir, max_iter=6, checkpoint_period=3, evaluate=False):
    cfg = LazyConfig.load(TINY)
    cfg.train.update(output_dir=str(output_dir), max_iter=max_iter, log_period=1, eval_period=0, device="cpu")
    cfg.train.checkpointer.period = checkpoint_period
    cfg.lr_multiplier.milestones = [max_iter - 1, max_iter]
    cfg.dataloader.train.update(total_batch_size=2, num_workers=0)
    cfg.dataloader.test.num_workers = 0
    if not evaluate:
        cfg.dataloader.pop("evaluator")
    return cfg


def _raw_rows(output_dir):
    """Every line of metrics.json parsed: a line that is not JSON fails the test."""
    with open(os.path.join(str(output_dir), "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_resume_after_a_kill_logs_each_iteration_once(synthetic_root, tmp_path, monkeypatch, sd_detr_log):
    """A run with checkpoints at iterations 2 and 5; then the state a kill -9 at iteration 5 leaves when
    the last checkpoint is iteration 2: last_checkpoint names model_0000002.pth, metrics.json holds rows
    3-5 of the killed run and a half-written line. Catches: the writer appending 3-5 a second time, the
    truncated line left in the file (readers' json.loads fails), or rows <= the checkpoint removed."""
    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", synthetic_root)
    do_train(_tiny_cfg(tmp_path))
    assert [r["iteration"] for r in _raw_rows(tmp_path)] == list(range(6))
    assert os.path.isfile(tmp_path / "model_0000002.pth")
    first_rows = _raw_rows(tmp_path)[:3]
    (tmp_path / "last_checkpoint").write_text("model_0000002.pth")
    with open(tmp_path / "metrics.json", "a") as f:
        f.write('{"iteration": 6, "total_lo')  # the killed process stopped mid-line

    trainer = do_train(_tiny_cfg(tmp_path), resume=True)
    assert trainer.start_iter == 3
    rows = _raw_rows(tmp_path)
    assert [r["iteration"] for r in rows] == list(range(6))
    assert rows[:3] == first_rows  # the rows up to the checkpoint are the first run's, untouched
    assert "removed 3 rows" in sd_detr_log.text


def test_resume_of_a_finished_run_says_nothing_to_train(synthetic_root, tmp_path, monkeypatch, sd_detr_log):
    """Catches: a --resume of a finished run exiting silently (or training again and logging twice), and
    its final evaluation row (logged at iteration max_iter, past the last checkpoint's) trimmed away."""
    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", synthetic_root)
    do_train(_tiny_cfg(tmp_path, max_iter=2, checkpoint_period=100, evaluate=True))
    before = (tmp_path / "metrics.json").read_text()
    assert [r["iteration"] for r in _raw_rows(tmp_path) if "bbox/AP" in r] == [2]
    do_train(_tiny_cfg(tmp_path, max_iter=2, checkpoint_period=100, evaluate=True), resume=True)
    assert "resumed at iteration 2 = max_iter (2), nothing to train" in sd_detr_log.text
    assert (tmp_path / "metrics.json").read_text() == before


def _write_lines(path, lines):
    path.write_text("".join(lines))
    return str(path)


def test_trim_keeps_rows_up_to_the_checkpoint_and_drops_a_truncated_last_line(tmp_path):
    """Catches: an off-by-one at the resumed iteration, rows without "iteration" lost, a malformed line in
    the middle deleted (not ours to delete), the truncated tail kept."""
    lines = [json.dumps({"iteration": i, "loss": 1.0}) + "\n" for i in (9, 19, 29)]
    lines.insert(1, "not json\n")
    lines.append(json.dumps({"note": "no iteration"}) + "\n")
    lines += [json.dumps({"iteration": i, "loss": 0.5}) + "\n" for i in (30, 39)]
    lines.append('{"iteration": 4')
    path = _write_lines(tmp_path / "metrics.json", lines)
    assert trim_metrics(path, start_iter=30) == 3
    assert open(path).read().splitlines() == [
        '{"iteration": 9, "loss": 1.0}', "not json", '{"iteration": 19, "loss": 1.0}',
        '{"iteration": 29, "loss": 1.0}', '{"note": "no iteration"}']


def test_trim_leaves_a_clean_file_and_a_missing_file_alone(tmp_path):
    """Catches: a rewrite of a file that needs none (mtime/permissions changed for nothing), or a crash on
    a first --resume without metrics.json."""
    assert trim_metrics(str(tmp_path / "missing.json"), 10) == 0
    path = _write_lines(tmp_path / "metrics.json", [json.dumps({"iteration": i}) + "\n" for i in range(3)])
    before = os.stat(path).st_mtime_ns
    assert trim_metrics(path, start_iter=3) == 0
    assert os.stat(path).st_mtime_ns == before


def test_a_checkpoint_is_saved_only_after_its_iteration_is_logged(synthetic_root, tmp_path, monkeypatch):
    """A kill -9 can fall between any two hooks of a step. If the checkpointer ran before the writer (as
    in Detectron2's DefaultTrainer), a kill right after saving model_0000002.pth would lose row 2 for good:
    the resume starts at 3. So at the moment each periodic checkpoint is saved, metrics.json must already
    hold the row of its iteration (seen in CI: killed after model_0000019.pth, the last row was 18)."""
    from sd_detr.checkpoint import DETRCheckpointer

    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", synthetic_root)
    seen = {}
    save = DETRCheckpointer.save

    def save_and_look(self, name, **kwargs):
        if name.startswith("model_0"):
            metrics = tmp_path / "metrics.json"
            rows = _raw_rows(tmp_path) if metrics.exists() else []
            seen[name] = max((r["iteration"] for r in rows), default=-1)
        return save(self, name, **kwargs)

    monkeypatch.setattr(DETRCheckpointer, "save", save_and_look)
    do_train(_tiny_cfg(tmp_path))
    assert seen == {"model_0000002": 2, "model_0000005": 5}, seen
