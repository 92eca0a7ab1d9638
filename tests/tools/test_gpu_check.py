"""tools/gpu_check.py on a CPU machine (its library, sd_detr.engine.gpu_check): its plan, option checks,
verdicts and report (the GPU steps themselves only run where CUDA is)."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from sd_detr.engine import gpu_check
from sd_detr.engine.gpu_check import CheckOptions, CheckTools

from ..utils import REPO

# the tools as tools/gpu_check.py names them (its commands run in the clone)
TOOLS = CheckTools(benchmark="tools/benchmark.py", train="tools/lazyconfig_train_net.py", cuda_tests="tests/gpu")


def test_plan_is_the_cuda_tests_then_every_registered_detectors_r50_benchmark_in_fp32_and_amp():
    from sd_detr.model_zoo import detector_names, get_config_file

    cmds = gpu_check.plan(CheckOptions(output="out"), TOOLS, python="py")
    assert [c[0] for c in cmds] == ["tests", "benchmark", "benchmark"]  # no training unless --train
    assert cmds[0][2] == ["py", "-m", "pytest", "-q", "tests/gpu"]
    fp32, amp = cmds[1], cmds[2]
    assert "--amp" in amp[2] and "--amp" not in fp32[2] and [fp32[3]["amp"], amp[3]["amp"]] == [False, True]
    names = detector_names()
    assert len(names) >= 4 and "sd_detr" in names
    for _, _, cmd, meta in (fp32, amp):
        assert cmd[cmd.index("--batch") + 1] == "2" and cmd[cmd.index("--size") + 1: cmd.index("--size") + 3] == ["800", "1216"]
        assert cmd[cmd.index("--tasks") + 1: cmd.index("--tasks") + 3] == ["inference", "train"]
        configs = cmd[cmd.index("--config-file") + 1:][:len(names)]
        assert configs == [get_config_file(f"{n}/{n}_r50_12ep.py") for n in names]  # each registered detector's R50
        assert meta["detectors"] == names and meta["configs"] == configs
        assert cmd[cmd.index("--json") + 1] == meta["json"] and meta["json"].startswith("out")


def test_plan_with_train_trains_every_detector_with_and_without_amp_after_its_untrained_evaluation():
    cmds = gpu_check.plan(CheckOptions(train=True, train_iters=200, output="out"), TOOLS, python="py")
    train = [c for c in cmds if c[0] == "train"]
    assert [c[0] for c in cmds] == ["tests", "benchmark", "benchmark"] + ["train"] * len(train)
    names = list(gpu_check.detector_table())
    assert len(train) == 3 * len(names)
    for det in names:
        runs = [c for c in train if c[3]["detector"] == det]
        assert [c[3]["amp"] for c in runs] == [None, False, True]  # chance level first
        assert "train.max_iter=0" in runs[0][2]
        assert "train.amp.enabled=True" in runs[2][2] and "train.amp.enabled=False" in runs[1][2]
        assert all("train.device=cuda" in c[2] for c in runs)
        assert "train.max_iter=200" in runs[1][2] and "lr_multiplier.milestones=[180,200]" in runs[1][2]
        assert runs[0][2][3] == gpu_check.tiny_config(det) and runs[0][2][3].endswith(f"{det}_tiny_synthetic.py")


def test_skip_and_detector_selection_are_obeyed():
    cmds = gpu_check.plan(CheckOptions(skip=["tests"], detectors=["sd_detr"]), TOOLS, python="py")
    assert [c[0] for c in cmds] == ["benchmark", "benchmark"]
    assert all(c[3]["detectors"] == ["sd_detr"] for c in cmds)
    cmds = gpu_check.plan(CheckOptions(skip=["tests", "benchmark"], train=True, detectors=["sd_detr"]), TOOLS,
                          python="py")
    assert {c[0] for c in cmds} == {"train"} and {c[3]["detector"] for c in cmds} == {"sd_detr"}


def test_a_fifth_registered_detector_is_a_choice_and_a_row_without_editing_the_script(monkeypatch):
    from sd_detr.model_zoo import Detector

    fifth = Detector("fifth_detr", "FifthDETR", "Fifth-DETR", "fifth_detr/fifth_detr_tiny_synthetic.py",
                     "fifth_detr/fifth_detr_r50_12ep.py", None)
    real = gpu_check.detectors()
    monkeypatch.setattr(gpu_check, "detectors", lambda: real + [fifth])
    monkeypatch.setattr(gpu_check, "get_config_file", lambda name: "/zoo/" + name)
    cmds = gpu_check.plan(CheckOptions(skip=["tests"]), TOOLS, python="py")
    assert "/zoo/fifth_detr/fifth_detr_r50_12ep.py" in cmds[0][2]
    bench = {"batch": 2, "rows": [{"config": "/zoo/fifth_detr/fifth_detr_r50_12ep.py", "train_s": 0.5}]}
    rows = gpu_check.table_rows([dict(step="benchmark", returncode=0, meta=cmds[0][3], bench=bench)])
    assert rows[-1]["title"] == "Fifth-DETR" and rows[-1]["train_ips_fp32"] == 4.0


def test_the_cuda_tests_cover_every_registered_detector():
    from sd_detr.model_zoo import detector_names

    from ..gpu import test_cuda

    assert sorted(test_cuda.TINY) == sorted(detector_names())
    assert all(path.endswith(f"{name}_tiny_synthetic.py") for name, path in test_cuda.TINY.items())


@pytest.mark.parametrize("argv", [["--train-iters", "5"], ["--bench-iters", "0"], ["--skip", "nothing"],
                                  ["--detectors", "nothing"]])
def test_bad_arguments_are_refused_naming_the_option(argv):
    option = {"--train-iters": {"train_iters": 5}, "--bench-iters": {"bench_iters": 0},
              "--skip": {"skip": ["nothing"]}, "--detectors": {"detectors": ["nothing"]}}[argv[0]]
    with pytest.raises(ValueError, match=argv[0]):
        CheckOptions(**option)


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


def _bench(meta_amp, det_configs, rows, batch=2, returncode=0):
    meta = {"amp": meta_amp, "detectors": [d for d, _ in det_configs], "configs": [c for _, c in det_configs]}
    r = {"step": "benchmark", "name": f"R50 {'amp' if meta_amp else 'fp32'}", "returncode": returncode,
         "seconds": 90.0, "meta": meta}
    if returncode == 0:
        r["bench"] = {"batch": batch, "rows": rows}
    return r


DETS = [("conditional_detr", "/zoo/c.py"), ("sd_detr", "/zoo/s.py")]


def test_table_has_one_row_per_detector_with_images_per_second_from_the_seconds_per_step_of_both_runs():
    """Catches: seconds per step printed as images/s (no batch), fp32 and AMP swapped, inference and training
    swapped, rows matched to detectors by position instead of by config (the JSON's rows here are reversed)."""
    fp32 = _bench(False, DETS, [{"config": "/zoo/s.py", "inference_s": 0.1, "train_s": 0.4, "train_mem": 9.5},
                                {"config": "/zoo/c.py", "inference_s": 0.08, "train_s": 0.25, "train_mem": 8.0}])
    amp = _bench(True, DETS, [{"config": "/zoo/c.py", "inference_s": 0.05, "train_s": 0.2, "train_mem": 5.0},
                              {"config": "/zoo/s.py", "inference_s": 0.0625, "train_s": 0.25, "train_mem": 6.25}])
    rows = gpu_check.table_rows([{"step": "tests", "returncode": 0, "seconds": 1.0, "meta": {}}, fp32, amp])
    assert [r["detector"] for r in rows] == ["conditional_detr", "sd_detr"]
    assert [r["title"] for r in rows] == ["Conditional DETR", "SD-DETR"]
    cond, sd = rows
    assert cond["train_ips_fp32"] == pytest.approx(8.0) and cond["train_ips_amp"] == pytest.approx(10.0)
    assert cond["inference_ips_fp32"] == pytest.approx(25.0) and cond["inference_ips_amp"] == pytest.approx(40.0)
    assert sd["train_ips_fp32"] == pytest.approx(5.0) and sd["inference_ips_amp"] == pytest.approx(32.0)
    assert (sd["train_mem_fp32"], sd["train_mem_amp"]) == (9.5, 6.25)
    table = gpu_check.format_table(rows)
    assert table.count("\n") == 3  # header, rule, two rows: one table
    assert "| SD-DETR | 5.0 | 8.0 | 20.0 | 32.0 | 9.50 | 6.25 |" in table
    assert table.startswith("| detector | train img/s fp32 | train img/s AMP | inference img/s fp32 | "
                            "inference img/s AMP | peak mem train fp32 (GB) | peak mem train AMP (GB) |")


def test_a_failed_benchmark_leaves_its_columns_empty_and_the_report_names_it():
    fp32 = _bench(False, DETS, [{"config": "/zoo/c.py", "inference_s": 0.1, "train_s": 0.5, "train_mem": 3.0}])
    amp = _bench(True, DETS, None, returncode=1)
    rows = gpu_check.table_rows([fp32, amp])
    assert rows[0]["train_ips_fp32"] == pytest.approx(4.0) and rows[0]["train_ips_amp"] is None
    assert all(v is None for k, v in rows[1].items() if k not in ("detector", "title"))  # missing from the JSON
    md = gpu_check.format_report({"gpu": "Some GPU", "cuda": "13.0", "torch": "2.14.1"},
                                 [{"step": "tests", "name": "pytest tests/gpu", "returncode": 0, "seconds": 12.0,
                                   "meta": {}}, fp32, amp])
    assert "| SD-DETR | - | - | - | - | - | - |" in md
    assert "Failed: benchmark `R50 amp` (exit 1)" in md
    assert "CUDA tests (`pytest tests/gpu`): passed (12 s)" in md and "Some GPU, CUDA 13.0" in md
    assert md.count("| detector |") == 1  # the one table


def test_report_with_train_adds_the_tiny_runs_verdicts_and_a_failed_test_run_says_so():
    results = [
        {"step": "tests", "name": "pytest tests/gpu", "returncode": 1, "seconds": 12.0, "meta": {}},
        {"step": "train", "name": "sd_detr amp", "returncode": 0, "seconds": 40.0, "s_per_iter": 0.05,
         "chance_ap50": 0.01, "meta": {"detector": "sd_detr", "amp": True},
         "verdict": {"ok": False, "reason": "3 non-finite total_loss values", "AP": 0.1, "AP50": 0.4}},
    ]
    md = gpu_check.format_report({"gpu": "Some GPU", "cuda": "13.0", "torch": "2.14.1"}, results)
    assert "| sd_detr | AMP | 0.05 | 0.10 | 0.40 | 0.01 | FAIL: 3 non-finite total_loss values |" in md
    assert "CUDA tests (`pytest tests/gpu`): FAILED" in md and "Failed: tests `pytest tests/gpu` (exit 1)" in md


def test_main_runs_the_plan_and_writes_the_one_table(monkeypatch, tmp_path, capsys):
    """The whole pipeline with the commands faked (no GPU): each benchmark command's JSON is read back into
    the table, the report is printed and written, and the exit status follows the commands'."""
    ran = []

    def fake_run(cmd, cwd):
        ran.append(cmd)
        if "tools/benchmark.py" in cmd:
            path, configs = cmd[cmd.index("--json") + 1], cmd[cmd.index("--config-file") + 1:]
            configs = [c for c in configs if c != "--amp"]
            speed = 2.0 if "--amp" in cmd else 1.0
            rows = [{"config": c, "inference_s": 0.1 / speed, "train_s": 0.5 / speed, "train_mem": 4.0 / speed}
                    for c in configs]
            with open(os.path.join(cwd, path), "w") as f:
                json.dump({"batch": 2, "rows": rows}, f)
        return subprocess.CompletedProcess(cmd, 0, "", ""), 3.0

    out = tmp_path / "gc"
    assert gpu_check.run_gpu_check(CheckOptions(output=str(out)), TOOLS, cwd=REPO, run=fake_run,
                                   environment=lambda: {"gpu": "Fake GPU", "cuda": "13.0", "torch": "x"}) == 0
    assert len(ran) == 3
    md = (out / "gpu_check.md").read_text()
    printed = capsys.readouterr().out.split("[gpu_check] benchmark: R50 800x1216 batch 2 amp\n", 1)[1]
    assert md == printed.rstrip("\n") + "\n"
    assert "| SD-DETR | 4.0 | 8.0 | 20.0 | 40.0 | 4.00 | 2.00 |" in md
    assert "Fake GPU" in md and json.loads((out / "gpu_check.json").read_text())["env"]["gpu"] == "Fake GPU"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
@pytest.mark.slow  # subprocesses
def test_without_cuda_the_script_says_so_and_exits_2_and_the_dry_run_prints_the_plan():
    proc = subprocess.run(["bash", "tools/gpu_check.sh", "--skip", "tests"], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, SD_DETR_PYTHON=sys.executable))
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
    dry = subprocess.run([sys.executable, "tools/gpu_check.py", "--dry-run", "--train", "--detectors", "dab_detr"],
                         cwd=REPO, capture_output=True, text=True)
    assert dry.returncode == 0
    assert "[train] dab_detr amp:" in dry.stdout and "[benchmark]" in dry.stdout and "train.amp.enabled=True" in dry.stdout
    assert "dab_detr_r50_12ep.py" in dry.stdout and "[tests] pytest tests/gpu" in dry.stdout


def test_benchmark_refuses_amp_without_cuda():
    proc = subprocess.run([sys.executable, "tools/benchmark.py", "--config-file", "x.py", "--device", "cpu", "--amp"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "--amp needs a CUDA device" in proc.stderr


@pytest.mark.slow  # a benchmark subprocess
def test_benchmark_json_output_holds_the_rows(tmp_path):
    out = tmp_path / "b.json"
    tiny = os.path.join(REPO, "projects", "conditional_detr", "configs", "conditional_detr_tiny_synthetic.py")
    subprocess.run([sys.executable, "tools/benchmark.py", "--config-file", tiny, "--size", "64", "96", "--threads", "1",
                    "--iters", "1", "--warmup", "0", "--tasks", "inference", "--device", "cpu", "--json", str(out)],
                   cwd=REPO, check=True)
    data = json.loads(out.read_text())
    assert data["device"] == "cpu" and data["amp"] is False and data["batch"] == 1
    assert data["rows"][0]["config"] == tiny and data["rows"][0]["inference_s"] > 0


def test_the_plan_runs_the_tools_it_is_given():
    """Bug caught: a tool's path fixed inside the package (it may not find files by the repository's layout)."""
    tools = CheckTools(benchmark="/elsewhere/bench.py", train="/elsewhere/train.py", cuda_tests="/elsewhere/gpu")
    cmds = gpu_check.plan(CheckOptions(train=True, detectors=["sd_detr"]), tools, python="py")
    assert cmds[0][:3] == ("tests", "pytest /elsewhere/gpu", ["py", "-m", "pytest", "-q", "/elsewhere/gpu"])
    assert {tuple(c[2][:2]) for c in cmds if c[0] == "benchmark"} == {("py", "/elsewhere/bench.py")}
    assert {tuple(c[2][:2]) for c in cmds if c[0] == "train"} == {("py", "/elsewhere/train.py")}
