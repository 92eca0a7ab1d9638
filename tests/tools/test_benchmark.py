import os
import sys
from types import SimpleNamespace

import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from ..utils import REPO

sys.path.insert(0, os.path.join(REPO, "tools"))
import benchmark  # noqa: E402

TINY = [os.path.join(REPO, "projects", p, "configs", f"{p}_tiny_synthetic.py") for p in ("conditional_detr", "sd_detr")]


def test_interleaved_rounds_time_every_model_and_the_first_config_is_the_unit():
    parsed = SimpleNamespace(config_file=TINY, device="cpu", batch=1, size=(64, 96), warmup=1, iters=3)

    def load(path):
        torch.manual_seed(0)
        return instantiate(LazyConfig.load(path).model)

    rows = benchmark.run_interleaved(parsed, load)
    assert [r["config"] for r in rows] == TINY
    for r in rows:
        assert len(r["interleaved_s_all"]) == 3 and all(t > 0 for t in r["interleaved_s_all"])
        lo, hi = r["relative_iqr"]
        assert lo <= r["relative"] <= hi
    assert rows[0]["relative"] == 1.0 and rows[0]["relative_iqr"] == [1.0, 1.0] and rows[0]["relative_min"] == 1.0
    assert rows[1]["relative_min"] == min(rows[1]["interleaved_s_all"]) / min(rows[0]["interleaved_s_all"])
    expected = sorted(a / b for a, b in zip(rows[1]["interleaved_s_all"], rows[0]["interleaved_s_all"]))[1]
    assert rows[1]["relative"] == pytest.approx(expected)


def test_benchmark_command_writes_params_flops_and_interleaved_latency_to_markdown(tmp_path):
    md = tmp_path / "bench.md"
    benchmark.main(["--config-file", *TINY, "--size", "256", "384", "--threads", "1", "--iters", "2", "--warmup", "1",
                    "--tasks", "flops", "interleaved", "--device", "cpu", "--markdown", str(md), "--title", "tiny"])
    text = md.read_text()
    assert "## tiny" in text and "--tasks flops interleaved" in text
    table = [line for line in text.splitlines() if line.startswith("| ") and "tiny_synthetic" in line]
    assert len(table) == 2
    for line, path in zip(table, TINY):
        cells = [c.strip() for c in line.strip("|").split("|")]
        torch.manual_seed(0)
        params = sum(p.numel() for p in instantiate(LazyConfig.load(path).model).parameters())
        assert float(cells[1]) == pytest.approx(params / 1e6, abs=0.006)
        assert float(cells[2]) > 0  # GFLOPs
        assert cells[3] == "-" and cells[4] == "-"  # inference / train not asked for
        median, fastest = (float(v) for v in cells[7].split(","))
        assert 0 < fastest <= median
    assert [c.strip() for c in table[0].split("|")[-3:-1]] == ["1.000 [1.000, 1.000]", "1.000"]
