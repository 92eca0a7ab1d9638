"""tools/gpu_check.py on a CPU machine: its plan, argument checks, verdicts and report (the GPU steps
themselves only run where CUDA is)."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from ..utils import REPO

sys.path.insert(0, os.path.join(REPO, "tools"))
import gpu_check  # noqa: E402


def test_plan_trains_every_detector_with_and_without_amp_after_its_untrained_evaluation():
    cmds = gpu_check.plan(gpu_check.parse_args(["--train-iters", "200", "--output", "out"]), python="py")
    steps = [c[0] for c in cmds]
    assert steps == ["tests"] + ["train"] * 12 + ["benchmark"] * 2
    train = [c for c in cmds if c[0] == "train"]
    for det in gpu_check.DETECTORS:
        runs = [c for c in train if c[3]["detector"] == det]
        assert [c[3]["amp"] for c in runs] == [None, False, True]  # chance level first
        assert "train.max_iter=0" in runs[0][2]
        assert "train.amp.enabled=True" in runs[2][2] and "train.amp.enabled=False" in runs[1][2]
        assert all("train.device=cuda" in c[2] for c in runs)
        assert "train.max_iter=200" in runs[1][2] and "lr_multiplier.milestones=[180,200]" in runs[1][2]
        assert runs[0][2][3] == os.path.join("projects", det, "configs", f"{det}_tiny_synthetic.py")
    fp32, amp = [c[2] for c in cmds if c[0] == "benchmark"]
    assert "--amp" in amp and "--amp" not in fp32
    for cmd in (fp32, amp):
        assert cmd[cmd.index("--batch") + 1] == "2" and cmd[cmd.index("--size") + 1: cmd.index("--size") + 3] == ["800", "1216"]
        assert sum(a.endswith("_r50_50ep.py") for a in cmd) == 4


def test_skip_and_detector_selection_are_obeyed():
    cmds = gpu_check.plan(gpu_check.parse_args(["--skip", "tests", "benchmark", "--detectors", "sd_detr"]), python="py")
    assert {c[0] for c in cmds} == {"train"} and {c[3]["detector"] for c in cmds} == {"sd_detr"}


@pytest.mark.parametrize("argv", [["--train-iters", "5"], ["--bench-iters", "0"], ["--skip", "nothing"]])
def test_bad_arguments_are_refused_naming_the_option(argv, capsys):
    with pytest.raises(SystemExit):
        gpu_check.parse_args(argv)
    assert argv[0] in capsys.readouterr().err


def test_training_verdict_needs_finite_losses_and_an_ap50_above_chance():
    good = [{"total_loss": 2.0, "iteration": 9}, {"total_loss": 1.5, "iteration": 19}, {"bbox/AP": 3.0, "bbox/AP50": 9.0}]
    assert gpu_check.judge_training(good, chance_ap50=0.01, min_ap50=1.0)["ok"]
    nan = [{"total_loss": 2.0}, {"total_loss": math.nan}, {"bbox/AP": 3.0, "bbox/AP50": 9.0}]
    v = gpu_check.judge_training(nan, 0.01, 1.0)
    assert not v["ok"] and "non-finite" in v["reason"]
    assert not gpu_check.judge_training(good, chance_ap50=1.0, min_ap50=1.0)["ok"]  # 9 <= 10 x chance
    assert not gpu_check.judge_training(good, chance_ap50=0.0, min_ap50=9.5)["ok"]  # below the floor
    assert not gpu_check.judge_training(good[:2], 0.0, 1.0)["ok"]  # never evaluated
    assert not gpu_check.judge_training([], 0.0, 1.0)["ok"]


def test_report_lists_every_run_with_its_verdict_and_the_benchmark_rows():
    results = [
        {"step": "tests", "name": "pytest tests/gpu", "returncode": 0, "seconds": 12.0, "meta": {}},
        {"step": "train", "name": "sd_detr amp", "returncode": 0, "seconds": 40.0, "s_per_iter": 0.05,
         "chance_ap50": 0.01, "meta": {"detector": "sd_detr", "amp": True},
         "verdict": {"ok": False, "reason": "3 non-finite total_loss values", "AP": 0.1, "AP50": 0.4}},
        {"step": "benchmark", "name": "R50 fp32", "returncode": 0, "seconds": 90.0, "meta": {"amp": False},
         "rows": [{"config": "projects/sd_detr/configs/sd_detr_r50_50ep.py", "inference_s": 0.0412, "train_s": 0.2,
                   "inference_mem": 1.5, "train_mem": 9.75}]},
    ]
    md = gpu_check.format_report({"gpu": "Some GPU", "cuda": "13.0", "torch": "2.14.1"}, results)
    assert "Some GPU, CUDA 13.0" in md
    assert "| sd_detr | AMP | 0.05 | 0.10 | 0.40 | 0.01 | FAIL: 3 non-finite total_loss values |" in md
    assert "| projects/sd_detr/configs/sd_detr_r50_50ep.py | fp32 | 0.041 | 0.200 | 1.500 | 9.750 |" in md
    assert "| tests | pytest tests/gpu | 0 | 12 |" in md


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
@pytest.mark.slow  # subprocesses
def test_without_cuda_the_script_says_so_and_exits_2_and_the_dry_run_prints_the_plan():
    proc = subprocess.run(["bash", "tools/gpu_check.sh", "--skip", "tests"], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, SD_DETR_PYTHON=sys.executable))
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
    dry = subprocess.run([sys.executable, "tools/gpu_check.py", "--dry-run", "--detectors", "dab_detr"], cwd=REPO,
                         capture_output=True, text=True)
    assert dry.returncode == 0
    assert "[train] dab_detr amp:" in dry.stdout and "[benchmark]" in dry.stdout and "train.amp.enabled=True" in dry.stdout


def test_benchmark_refuses_amp_without_cuda(capsys):
    import benchmark

    with pytest.raises(SystemExit):
        benchmark.main(["--config-file", "x.py", "--device", "cpu", "--amp"])
    assert "--amp needs a CUDA device" in capsys.readouterr().err


@pytest.mark.slow  # a benchmark subprocess
def test_benchmark_json_output_holds_the_rows(tmp_path):
    import benchmark

    out = tmp_path / "b.json"
    tiny = os.path.join(REPO, "projects", "conditional_detr", "configs", "conditional_detr_tiny_synthetic.py")
    benchmark.main(["--config-file", tiny, "--size", "64", "96", "--threads", "1", "--iters", "1", "--warmup", "0",
                    "--tasks", "inference", "--device", "cpu", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["device"] == "cpu" and data["amp"] is False and data["batch"] == 1
    assert data["rows"][0]["config"] == tiny and data["rows"][0]["inference_s"] > 0
