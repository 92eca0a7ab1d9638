"""End to end through tools/lazyconfig_train_net.py, as a user runs it: the tiny Conditional DETR trains
on the synthetic data and its COCO AP beats an untrained model's by far; a killed run resumes."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ..utils import REPO

TOOL = os.path.join(REPO, "tools", "lazyconfig_train_net.py")
TINY = os.path.join(REPO, "projects", "conditional_detr", "configs", "conditional_detr_tiny_synthetic.py")
E2E_BUDGET = ["train.max_iter=1500", "lr_multiplier.milestones=[1300,1500]", "train.eval_period=1500"]
E2E_MIN_AP50, E2E_MIN_AP = 5.0, 1.0


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Each test module generates its own synthetic data (320 + 80 images, about 2 s)."""
    root = tmp_path_factory.mktemp("synthetic")
    return dict(os.environ, SD_DETR_SYNTHETIC_ROOT=str(root), PYTHONWARNINGS="ignore")


def run_tool(env, *args, timeout=900):
    proc = subprocess.run([sys.executable, TOOL, "--config-file", TINY, *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def read_metrics(output_dir):
    """metrics.json lines (a line cut by a kill is skipped: it is written again after resuming)."""
    rows = []
    with open(os.path.join(output_dir, "metrics.json")) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return rows


def final_ap(output_dir):
    evals = [r for r in read_metrics(output_dir) if "bbox/AP" in r]
    assert evals, "no evaluation results in metrics.json"
    return evals[-1]


def test_tiny_conditional_detr_learns_on_synthetic_data(env, tmp_path):
    # untrained model (max_iter=0 runs only the final evaluation) = the chance level of this protocol
    run_tool(env, f"train.output_dir={tmp_path / 'untrained'}", "train.max_iter=0")
    chance = final_ap(tmp_path / "untrained")
    run_tool(env, f"train.output_dir={tmp_path / 'trained'}", *E2E_BUDGET)
    trained = final_ap(tmp_path / "trained")
    assert trained["bbox/AP50"] > max(10 * chance["bbox/AP50"], E2E_MIN_AP50), (chance, trained)
    assert trained["bbox/AP"] > max(10 * chance["bbox/AP"], E2E_MIN_AP), (chance, trained)


def test_killed_run_resumes_from_last_checkpoint_without_losing_iterations(env, tmp_path):
    out = tmp_path / "run"
    args = [f"train.output_dir={out}", "train.max_iter=60", "train.checkpointer.period=20", "train.log_period=1",
            "train.eval_period=1000", "lr_multiplier.milestones=[50,60]"]
    proc = subprocess.Popen([sys.executable, TOOL, "--config-file", TINY, *args], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = out / "last_checkpoint"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and last.read_text().strip() == "model_0000019.pth":
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = max(r["iteration"] for r in read_metrics(out))
    assert 19 <= killed_at < 59

    run_tool(env, "--resume", *args)
    rows = [r for r in read_metrics(out) if "total_loss" in r]
    assert {r["iteration"] for r in rows} == set(range(60))  # nothing lost
    resumed = [r for r in rows if r["iteration"] >= 20]
    assert resumed[-1]["iteration"] == 59
    # the scheduler state came back too: lr x0.1 after iteration 50
    lr = {r["iteration"]: r["lr"] for r in rows}
    assert lr[55] == pytest.approx(0.1 * lr[10])
    import torch

    assert torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["iteration"] == 59
