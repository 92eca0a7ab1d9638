"""sd_detr.benchmark (the library of tools/benchmark.py): the interleaved rounds, the presets, and the tool's
command line end to end (subprocesses)."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from sd_detr import benchmark
from sd_detr.benchmark import child, run  # noqa: F401  (benchmark.child, benchmark.run below)

from ..utils import REPO

TINY = [os.path.join(REPO, "projects", p, "configs", f"{p}_tiny_synthetic.py") for p in ("conditional_detr", "sd_detr")]


def _tool(argv):
    """tools/benchmark.py as a user runs it from the clone; fails the test with its output if it fails."""
    proc = subprocess.run([sys.executable, os.path.join("tools", "benchmark.py"), *argv], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


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


@pytest.mark.slow  # a benchmark subprocess
def test_benchmark_command_writes_params_flops_and_interleaved_latency_to_markdown(tmp_path):
    md = tmp_path / "bench.md"
    _tool(["--config-file", *TINY, "--size", "256", "384", "--threads", "1", "--iters", "2", "--warmup", "1",
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


R50 = {p: os.path.join(REPO, "projects", p, "configs", f"{p}_r50_50ep.py") for p in ("conditional_detr", "sd_detr")}


def _small(path, *opts):
    cfg = LazyConfig.load(path)
    return LazyConfig.apply_overrides(cfg, benchmark.preset_overrides(cfg, "small") + list(opts))


def test_small_preset_sets_the_issue_13_size_and_fits_the_repeated_positives_to_three_layers():
    """Bug caught: a preset key that misses (the R50 size kept) or SD-DETR's repeat_stages [0..4] left to
    wrap around 3 decoder layers (repeats in the last layer too)."""
    for name, path in R50.items():
        m = _small(path).model
        assert (m.backbone.depth, m.backbone.res2_out_channels, m.hidden_dim) == (18, 64, 128)
        assert (m.encoder.num_layers, m.decoder.num_layers, m.query_init.num_queries) == (3, 3, 100)
        if name == "sd_detr":
            assert list(m.criterion.assigner.repeat_stages) == [0, 1]
        else:
            assert "assigner" not in m.criterion
    assert benchmark.preset_overrides(LazyConfig.load(R50["sd_detr"]), None) == []
    # the user's overrides come after the preset's and win
    assert _small(R50["sd_detr"], "model.hidden_dim=64").model.hidden_dim == 64


def test_small_preset_builds_a_resnet18_width_128_detector():
    """Bug caught: the overrides accepted but the built model not small (e.g. a part that ignores
    ${..hidden_dim}, res5 channels of a bottleneck ResNet)."""
    torch.manual_seed(0)
    model = instantiate(_small(R50["sd_detr"]).model)
    assert model.backbone.output_shape()["res5"].channels == 512
    assert len(model.encoder.layers) == 3 and len(model.decoder.layers) == 3
    assert model.query_init.num_queries == 100 and model.class_embed.in_features == 128
    assert model.criterion.assigner.repeats_for(1, 3) == 2 and model.criterion.assigner.repeats_for(2, 3) == 1


@pytest.mark.parametrize("preset, given_size, given_batch, size, batch", [
    (None, None, None, [800, 1216], 1),
    ("small", None, None, [320, 320], 4),
    ("small", [64, 96], None, [64, 96], 4),
    ("small", None, 2, [320, 320], 2),
])
def test_explicit_size_and_batch_win_over_the_preset(preset, given_size, given_batch, size, batch):
    """Bug caught: the preset's size/batch replacing the user's, or set without --preset (the tool's
    --preset, --size and --batch, None where not given)."""
    args = benchmark.apply_preset_sizes(SimpleNamespace(preset=preset, size=given_size, batch=given_batch))
    assert (args.size, args.batch) == (size, batch)


@pytest.mark.slow  # a benchmark subprocess
def test_preset_reaches_the_measuring_process_and_the_user_size_wins(tmp_path):
    """Bug caught: the parent's --preset not passed to the child (the flops child would build the tiny
    model) or the preset's 320x320 overriding the user's --size."""
    out = tmp_path / "bench.json"
    _tool(["--config-file", TINY[1], "--preset", "small", "--size", "64", "96", "--threads", "1",
                    "--tasks", "flops", "--device", "cpu", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["size"] == [64, 96] and result["batch"] == 4 and result["preset"] == "small"
    torch.manual_seed(0)
    expected = sum(p.numel() for p in instantiate(_small(TINY[1]).model).parameters())
    tiny = sum(p.numel() for p in instantiate(LazyConfig.load(TINY[1]).model).parameters())
    assert result["rows"][0]["params"] == expected != tiny


def test_interleaved_train_times_a_training_step_of_every_model_in_rotating_rounds():
    """Bug caught: the step run in eval mode (no losses), the rounds not rotated (one model always
    first), or the ratios taken against another config than the first."""
    parsed = SimpleNamespace(config_file=TINY, device="cpu", batch=2, size=(64, 96), warmup=1, iters=3)
    calls = []

    def load(path):
        torch.manual_seed(0)
        model = instantiate(LazyConfig.load(path).model)
        forward = model.forward

        def traced(batched_inputs):
            out = forward(batched_inputs)
            calls.append((path, model.training, len(batched_inputs), sorted(out) if isinstance(out, dict) else None))
            return out

        model.forward = traced
        return model

    rows = benchmark.run_interleaved_train(parsed, load)
    assert len(calls) == 2 * 4 and all(training and n == 2 for _, training, n, _ in calls)
    assert all("loss_class" in keys for *_, keys in calls)  # losses, so the backward ran through them
    assert [c[0] for c in calls[:2]] == TINY and [c[0] for c in calls[2:4]] == TINY[::-1]
    assert [r["config"] for r in rows] == TINY
    for r in rows:
        assert len(r["interleaved_train_s_all"]) == 3 and all(t > 0 for t in r["interleaved_train_s_all"])
        lo, hi = r["train_relative_iqr"]
        assert lo <= r["train_relative"] <= hi
    assert rows[0]["train_relative"] == 1.0 and rows[0]["train_relative_min"] == 1.0
    t0, t1 = rows[0]["interleaved_train_s_all"], rows[1]["interleaved_train_s_all"]
    assert rows[1]["train_relative"] == pytest.approx(sorted(a / b for a, b in zip(t1, t0))[1])
    assert rows[1]["train_relative_min"] == pytest.approx(min(t1) / min(t0))
    assert rows[1]["interleaved_train_min_s"] == min(t1)


@pytest.mark.slow  # a benchmark subprocess
def test_benchmark_command_writes_the_interleaved_training_columns(tmp_path):
    md = tmp_path / "bench.md"
    _tool(["--config-file", *TINY, "--size", "64", "96", "--threads", "1", "--iters", "2", "--warmup", "1",
                    "--tasks", "interleaved_train", "--device", "cpu", "--markdown", str(md), "--title", "tiny"])
    text = md.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| config"))
    assert "train step / first config's (median [IQR] over rounds)" in header
    assert "latency / first config's" not in header  # inference columns only with --tasks interleaved
    table = [line for line in text.splitlines() if line.startswith("| ") and "tiny_synthetic" in line]
    assert len(table) == 2
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    assert cells[0][-2:] == ["1.000 [1.000, 1.000]", "1.000"]
    median, fastest = (float(v) for v in cells[1][-3].split(","))
    assert 0 < fastest <= median
    ratio = float(cells[1][-2].split(" ")[0])
    assert ratio > 0 and float(cells[1][-1]) > 0


def test_the_measuring_process_gets_every_setting_of_the_parent():
    """The child's JSON settings (bug caught: a flag of the parent, e.g. --preset, --no-cpu-accel or the
    overrides, not passed to the measuring process, which would then measure another model)."""
    args = SimpleNamespace(config_file=TINY, size=(64, 96), batch=3, threads=1, iters=4, warmup=2, device="cpu",
                           amp=False, no_cpu_accel=True, preset="small", opts=["model.hidden_dim=64"], tasks=["flops"])
    settings = json.loads(json.dumps(benchmark.child.child_settings(args, "inference", TINY[1:])))
    assert settings == {"task": "inference", "config_file": TINY[1:], "size": [64, 96], "batch": 3, "threads": 1,
                        "iters": 4, "warmup": 2, "device": "cpu", "amp": False, "no_cpu_accel": True,
                        "preset": "small", "opts": ["model.hidden_dim=64"]}
    model = benchmark.child.load_model(TINY[1], SimpleNamespace(**settings))
    assert model.class_embed.in_features == 64 and len(model.decoder.layers) == 3  # overrides after the preset's


def test_a_failed_measuring_process_is_an_error_naming_its_configs_and_output(monkeypatch):
    calls = []

    def failing(cmd, **kwargs):
        calls.append((cmd, kwargs["env"]))
        return SimpleNamespace(returncode=1, stdout="partial output", stderr="Traceback: boom")

    monkeypatch.setattr(benchmark.run.subprocess, "run", failing)
    args = SimpleNamespace(config_file=TINY, size=[64, 96], batch=1, threads=1, iters=1, warmup=0, device="cpu",
                           amp=False, no_cpu_accel=False, preset=None, opts=[])
    with pytest.raises(benchmark.BenchmarkError, match=r"(?s)conditional_detr_tiny_synthetic.py \(flops\) failed.*boom"):
        benchmark.run_child(args, "flops", TINY[:1])
    (cmd, env), = calls
    assert cmd[1:3] == ["-m", "sd_detr.benchmark.child"] and json.loads(cmd[3])["task"] == "flops"
    assert env["OMP_NUM_THREADS"] == "1"
    # the child imports this copy of sd_detr (e.g. a clone on sys.path by hand), not another installed one
    import sd_detr

    assert env["PYTHONPATH"].split(os.pathsep)[0] == os.path.dirname(os.path.dirname(os.path.abspath(sd_detr.__file__)))
