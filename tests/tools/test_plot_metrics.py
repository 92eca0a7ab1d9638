"""tools/plot_metrics.py's library, sd_detr.utils.plot_metrics: a run's rows and the one PNG of runs overlaid."""
import json

import cv2
import pytest

from sd_detr.utils import plot_metrics


def _write(path, rows, tail=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


def test_metrics_of_a_resumed_run_keep_the_later_row_and_skip_a_cut_line(tmp_path):
    f = tmp_path / "run" / "metrics.json"
    _write(f, [{"iteration": 0, "total_loss": 5.0}, {"iteration": 1, "total_loss": 4.0},
               {"iteration": 1, "total_loss": 3.5}, {"iteration": 1, "bbox/AP": 2.0}], tail='{"iteration": 2, "tot')
    rows = plot_metrics.load_metrics(str(tmp_path / "run"))
    assert [r["iteration"] for r in rows] == [0, 1]
    assert rows[1]["total_loss"] == 3.5 and rows[1]["bbox/AP"] == 2.0


def test_two_runs_are_drawn_into_one_png(tmp_path):
    a, b = tmp_path / "a" / "metrics.json", tmp_path / "b" / "metrics.json"
    _write(a, [{"iteration": i, "total_loss": 10 - i, "loss_class": 1.0 / (i + 1)} for i in range(10)] + [{"iteration": 9, "bbox/AP": 3.0}])
    _write(b, [{"iteration": i, "total_loss": 9 - i, "loss_class": 2.0 / (i + 1)} for i in range(10)])
    out = tmp_path / "plot.png"
    runs = [str(a), str(b.parent)]
    assert plot_metrics.default_labels(runs) == ["a", "b"]  # the run folders' names
    keys = plot_metrics.plot([plot_metrics.load_metrics(r) for r in runs], plot_metrics.default_labels(runs),
                             ["total_loss", "loss_class", "bbox/AP", "loss_unknown"], str(out))
    assert keys == ["total_loss", "loss_class", "bbox/AP"]  # a key no run holds is left out
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] == 1500  # three panels of 5 inches at 100 dpi


def test_missing_metrics_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        plot_metrics.load_metrics(str(tmp_path / "nowhere"))
