"""A kill or a bad step at any moment loses nothing (issue 22): checkpoints are complete whenever a run
dies, a non-finite loss or gradient stops the run before the optimizer steps (the last good checkpoint
stays tagged), a --resume runs a final evaluation that did not finish, and one run owns an output folder
(a lock; a fresh run refuses another run's checkpoints unless --overwrite)."""
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from sd_detr.engine import do_train
from sd_detr.engine.output_dir import (
    OutputDirInUseError, OutputDirNotEmptyError, final_evaluation_done, lock_output_dir, unlock_output_dir,
)
from sd_detr.engine.trainer import DETRTrainer

from ..utils import REPO, TRAIN_TOOL, read_metrics
from .test_resume_metrics import TINY, _raw_rows, _tiny_cfg

SLOW_SAVE_TRAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "slow_save_train.py")


# ---------------------------------------------------------------- non-finite loss or gradient (fast)
class _TwoLayers(nn.Module):
    """A tiny "detector": its forward takes the data and returns a loss dict, like the meta-architectures."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.second = nn.Linear(4, 1)

    def forward(self, data):
        return {"loss_a": self.second(torch.relu(self.first(data))).pow(2).mean(), "loss_b": data.sum() * 0}


def _trainer(clip_max_norm):
    torch.manual_seed(0)
    model = _TwoLayers()
    loader = iter(lambda: torch.randn(8, 4), None)  # an endless stream of batches
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, DETRTrainer(model, loader, optimizer, clip_max_norm=clip_max_norm)


def _run_one_step(trainer, iteration):
    from detectron2.utils.events import EventStorage

    with EventStorage(iteration) as trainer.storage:
        trainer.iter = iteration
        trainer.run_step()


@pytest.mark.parametrize("clip_max_norm", [0.1, 0.0])
def test_a_nan_gradient_stops_before_the_step_naming_iteration_and_parameter(clip_max_norm):
    """A finite loss with a NaN in one parameter's gradient (what optimizer.lr=100 gives at iteration 1):
    FloatingPointError naming the iteration and that parameter, and the weights untouched. Catches the
    old run_step (only the loss was checked, the optimizer stepped NaN into every weight), and naming the
    parameter after clipping (clipping by a NaN norm makes every gradient NaN: "first.weight" would be
    named, not the culprit "second.weight")."""
    model, trainer = _trainer(clip_max_norm)
    _run_one_step(trainer, 0)  # a normal step works
    model.second.weight.register_hook(lambda g: torch.full_like(g, float("nan")))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(FloatingPointError, match=r"iteration 7\b.*second\.weight") as err:
        _run_one_step(trainer, 7)
    assert "first.weight" not in str(err.value)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed: the optimizer stepped"


def test_a_nan_loss_stops_before_the_step():
    """A NaN loss: FloatingPointError naming the iteration and the loss terms, no step."""
    model, trainer = _trainer(0.1)
    with torch.no_grad():
        model.second.bias.fill_(float("nan"))
    before = model.first.weight.detach().clone()
    with pytest.raises(FloatingPointError, match=r"the loss is nan at iteration 3 \(loss_a=nan, loss_b=-?0"):
        _run_one_step(trainer, 3)
    assert torch.equal(model.first.weight, before)


def test_lr_100_stops_at_iteration_1_and_keeps_the_last_good_checkpoint(synthetic_root, tmp_path, monkeypatch):
    """The issue's run: optimizer.lr=100 gives a NaN gradient norm at iteration 1. The run stops there with
    an error naming iteration 1 and a parameter, last_checkpoint still names iteration 0's checkpoint, and
    no checkpoint in the folder holds a non-finite tensor (the old code checkpointed 309 of them)."""
    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", synthetic_root)
    cfg = _tiny_cfg(tmp_path, max_iter=4, checkpoint_period=1)
    cfg.optimizer.lr = 100
    with pytest.raises(FloatingPointError, match=r"at iteration 1 .*first parameter with a non-finite gradient: "
                                                 r"backbone\.\S+\.weight"):
        do_train(cfg)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000000.pth"
    saved = sorted(p for p in os.listdir(tmp_path) if p.endswith(".pth"))
    assert saved == ["model_0000000.pth"]
    state = torch.load(tmp_path / "model_0000000.pth", map_location="cpu", weights_only=False)
    bad = [k for k, v in state["model"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
    assert bad == []


# ---------------------------------------------------------------- the final evaluation is part of the run (fast)
def test_resume_runs_a_final_evaluation_that_failed(synthetic_root, tmp_path, monkeypatch, sd_detr_log):
    """The final evaluation fails (here: the test set cannot be read, as with a missing image; a kill
    during it is the same, minus the traceback) after model_final.pth was saved. The --resume after the
    fix runs the evaluation and writes the AP row at iteration max_iter, once; a further --resume has
    nothing to do. Catches the old "--resume: nothing to train", exit 0, no AP row ever written."""
    import sd_detr.engine.train_loop as train_loop

    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", synthetic_root)
    real = train_loop.inference_on_dataset

    def unreadable(*args, **kwargs):
        raise FileNotFoundError("val image 3.png is missing")

    monkeypatch.setattr(train_loop, "inference_on_dataset", unreadable)
    with pytest.raises(FileNotFoundError):
        do_train(_tiny_cfg(tmp_path, max_iter=2, checkpoint_period=100, evaluate=True))
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert not final_evaluation_done(str(tmp_path), 2)
    with open(tmp_path / "metrics.json", "a") as f:  # a kill while the row was being written
        f.write('{"bbox/AP": 1.0, "iterat')

    monkeypatch.setattr(train_loop, "inference_on_dataset", real)  # the image is back
    do_train(_tiny_cfg(tmp_path, max_iter=2, checkpoint_period=100, evaluate=True), resume=True)
    assert "the final evaluation did not finish: running it now" in sd_detr_log.text
    rows = _raw_rows(tmp_path)  # every line parses: the cut row is gone
    assert [r["iteration"] for r in rows if "bbox/AP" in r] == [2]
    assert [r["iteration"] for r in rows if "total_loss" in r] == [0, 1]
    assert final_evaluation_done(str(tmp_path), 2)

    before = (tmp_path / "metrics.json").read_text()
    do_train(_tiny_cfg(tmp_path, max_iter=2, checkpoint_period=100, evaluate=True), resume=True)
    assert "resumed at iteration 2 = max_iter (2), nothing to train" in sd_detr_log.text
    assert (tmp_path / "metrics.json").read_text() == before


# ---------------------------------------------------------------- one run per folder (fast)
def _hold_lock_in_child(folder):
    """A child process that takes the folder's lock (output_dir.py loaded by path: no torch import) and
    sleeps; returns it once the lock is held."""
    code = ("import importlib.util, sys, time\n"
            f"spec = importlib.util.spec_from_file_location('od', {os.path.join(REPO, 'sd_detr', 'engine', 'output_dir.py')!r})\n"
            "od = importlib.util.module_from_spec(spec); spec.loader.exec_module(od)\n"
            f"od.lock_output_dir({str(folder)!r}); print('locked', flush=True); time.sleep(120)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_second_run_on_a_folder_in_use_stops_at_once_and_a_killed_holder_leaves_no_lock(
        synthetic_root, tmp_path, monkeypatch):
    """While another process holds the folder, do_train fails before building anything, naming the folder
    and the holder's pid, and writes nothing there. The holder SIGKILLed, the lock is free (flock dies with
    its process: no stale lock file to delete by hand). Catches a missing lock (two runs interleaving
    metrics.json rows and checkpoints), and a lock that outlives a killed run."""
    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", synthetic_root)
    holder = _hold_lock_in_child(tmp_path)
    try:
        with pytest.raises(OutputDirInUseError) as err:
            do_train(_tiny_cfg(tmp_path, max_iter=2))
        assert str(tmp_path) in str(err.value) and f"pid {holder.pid}" in str(err.value)
        assert sorted(os.listdir(tmp_path)) == ["train.lock"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock_output_dir(str(tmp_path))  # free again
    unlock_output_dir(str(tmp_path))
    do_train(_tiny_cfg(tmp_path, max_iter=2, checkpoint_period=100))
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"


def test_a_fresh_run_refuses_another_runs_checkpoints_unless_overwrite(synthetic_root, tmp_path, monkeypatch):
    """A fresh run (no resume) into a folder holding another run's checkpoints refuses, naming the folder
    and the ways out, and touches nothing; with overwrite it deletes that run's checkpoints and metrics
    and trains: metrics.json holds the new run's rows only, once, and no old checkpoint is left for a
    later --resume to pick up. Catches the old behaviour (rows of two runs interleaved; the old run's
    model_0000003.pth and last_checkpoint left behind), and an overwrite that deletes nothing."""
    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", synthetic_root)
    do_train(_tiny_cfg(tmp_path, max_iter=4, checkpoint_period=2))
    before = {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)}
    assert "model_0000003.pth" in before
    with pytest.raises(OutputDirNotEmptyError, match=r"--resume.*--overwrite") as err:
        do_train(_tiny_cfg(tmp_path, max_iter=2, checkpoint_period=100))
    assert str(tmp_path) in str(err.value) and "model_0000003.pth" in str(err.value)
    assert {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)} == before

    do_train(_tiny_cfg(tmp_path, max_iter=2, checkpoint_period=100), overwrite=True)
    assert [r["iteration"] for r in _raw_rows(tmp_path)] == [0, 1]
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith(".pth")) == ["model_final.pth"]
    final = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=False)
    assert final["iteration"] == 1


# ---------------------------------------------------------------- through the tool, in subprocesses (slow)
FEW = ["train.log_period=1", "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
       "dataloader.test.num_workers=0"]


def _tool(env, *args, timeout=300):
    return subprocess.run([sys.executable, TRAIN_TOOL, "--config-file", TINY, *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_tool_refuses_a_folder_in_use_and_another_runs_checkpoints_and_overwrite_proceeds(synthetic_env,
                                                                                          tmp_path):
    """Through tools/lazyconfig_train_net.py: with the folder locked by another process the tool exits
    non-zero naming the folder and pid before default_setup writes config.yaml/log.txt into it; a fresh
    run over a finished run's folder refuses without --overwrite (exit non-zero, nothing changed) and
    trains with it. Catches the flag not wired to do_train, and the checks placed after default_setup."""
    out = tmp_path / "run"
    args = [f"train.output_dir={out}", "train.max_iter=2", "lr_multiplier.milestones=[1,2]",
            "train.checkpointer.period=100", "train.eval_period=0", *FEW]
    lock_output_dir(str(out))
    try:
        proc = _tool(synthetic_env, *args)
    finally:
        unlock_output_dir(str(out))
    assert proc.returncode != 0
    assert f"{out} is in use by another training run (pid {os.getpid()}" in proc.stderr
    assert sorted(os.listdir(out)) == ["train.lock"]

    proc = _tool(synthetic_env, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = (out / "metrics.json").read_text()
    proc = _tool(synthetic_env, *args)
    assert proc.returncode != 0 and f"{out} holds another run's outputs" in proc.stderr
    assert (out / "metrics.json").read_text() == first
    proc = _tool(synthetic_env, "--overwrite", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["iteration"] for r in read_metrics(out) if "total_loss" in r] == [0, 1]


def _complete_checkpoint(out, max_iter):
    """The checkpoint last_checkpoint names loads completely, its iteration fits its name, every tensor is
    finite; returns that iteration (-1 when there is no checkpoint yet)."""
    if not (out / "last_checkpoint").exists():
        return -1
    name = (out / "last_checkpoint").read_text().strip()
    assert name.endswith(".pth"), name
    state = torch.load(out / name, map_location="cpu", weights_only=False)  # a cut file raises here
    it = state["iteration"]
    if name == "model_final.pth":
        assert it <= max_iter - 1
    else:
        assert it == int(name[len("model_"):-len(".pth")]), (name, it)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    return it


def _started_writing(out, since_ns, prefix="model_"):
    """Whether a checkpoint write began after ``since_ns``: a temporary file, or (the old in-place write) a
    checkpoint file modified since."""
    for entry in os.listdir(out) if out.exists() else []:
        if entry.startswith(prefix):
            if ".tmp-" in entry:
                return True
            try:
                if os.stat(out / entry).st_mtime_ns > since_ns:
                    return True
            except FileNotFoundError:
                pass
    return False


def _run_and_kill(cmd, env, out, rng, when, max_delay, timeout=900):
    """Start ``cmd``; once ``when(since_ns)`` holds, wait a random delay in [0, max_delay] s and SIGKILL it.
    Returns the exit code (-9 when killed; the run may finish first). ``timeout`` is generous: the first
    run generates the synthetic data (lazily, on the first load) before its first checkpoint."""
    since = time.time_ns()
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if when(since):
            time.sleep(rng.uniform(0, max_delay))
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode in (0, -signal.SIGKILL), err[-3000:]
    return proc.returncode


@pytest.mark.slow
def test_random_kills_around_checkpoint_writes_always_resume_from_a_complete_checkpoint(synthetic_env, tmp_path):
    """SIGKILL the tool at seeded random moments around its checkpoint writes (writes slowed to 0.4 s by
    slow_save_train.py so that kills land inside them), --resume after each: every resume starts from a
    complete checkpoint named by last_checkpoint, and the run ends with model_final.pth, each iteration
    logged once and the AP row written. Then the issue's case: a finished run extended by --resume with a
    larger max_iter and no periodic checkpoint on the way, killed while writing model_final.pth (the
    file last_checkpoint names), and killed again during the final evaluation. Catches the old in-place
    write (a cut model_final.pth, every later --resume fails) and the old "nothing to train" after a kill
    during the final evaluation."""
    rng = random.Random(22)
    out = tmp_path / "run"
    cmd = [sys.executable, SLOW_SAVE_TRAIN, "--config-file", TINY]
    args = [f"train.output_dir={out}", "train.eval_period=0", *FEW]
    first = [*args, "train.max_iter=6", "lr_multiplier.milestones=[5,6]", "train.checkpointer.period=1"]

    def log_count(text):
        return (out / "log.txt").read_text().count(text) if (out / "log.txt").exists() else 0

    # 1. kills at random moments after a checkpoint write began (period 1: one per iteration)
    resumed_from = []
    kills = 0
    for attempt in range(8):
        flags = [] if attempt == 0 else ["--resume"]
        code = _run_and_kill(cmd + flags + first, synthetic_env, out, rng, lambda t: _started_writing(out, t), 0.6)
        resumed_from.append(_complete_checkpoint(out, 6))
        if code == 0:
            break
        kills += 1
    assert kills >= 3, resumed_from
    if not final_evaluation_done(str(out), 6):
        proc = subprocess.run(cmd + ["--resume"] + first, env=synthetic_env, cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert _complete_checkpoint(out, 6) == 5
    rows = read_metrics(out)
    assert sorted(r["iteration"] for r in rows if "total_loss" in r) == list(range(6))
    assert [r["iteration"] for r in rows if "bbox/AP" in r] == [6]

    # 2. extend to 9 iterations (off the period: no periodic checkpoint), kill inside the model_final write
    longer = [*args, "train.max_iter=9", "lr_multiplier.milestones=[8,9]", "train.checkpointer.period=1000"]
    code = _run_and_kill(cmd + ["--resume"] + longer, synthetic_env, out, rng,
                         lambda t: _started_writing(out, t, "model_final"), 0.3)
    assert code == -signal.SIGKILL
    assert _complete_checkpoint(out, 9) in (5, 8)  # the old model_final or the complete new one

    # 3. kill during the final evaluation, then resume: it runs the evaluation
    starts = log_count("Start inference on")
    code = _run_and_kill(cmd + ["--resume"] + longer, synthetic_env, out, rng,
                         lambda t: log_count("Start inference on") > starts, 0.2)
    assert code == -signal.SIGKILL
    assert _complete_checkpoint(out, 9) == 8
    proc = subprocess.run(cmd + ["--resume"] + longer, env=synthetic_env, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_metrics(out)
    assert sorted(r["iteration"] for r in rows if "total_loss" in r) == list(range(9))
    assert [r["iteration"] for r in rows if "bbox/AP" in r] == [9]
    assert [e for e in os.listdir(out) if ".tmp-" in e] == []


def test_a_forked_worker_does_not_keep_the_lock_after_its_trainer_is_killed(tmp_path):
    """Bug caught: a data-loader worker (forked) inherits the lock's descriptor, so after a kill -9 of the
    trainer the orphaned worker kept the folder locked and --resume failed with 'in use' (seen in CI)."""
    from sd_detr.engine.output_dir import OutputDirInUseError, lock_output_dir, unlock_output_dir

    code = (f"import os, signal, time\nfrom sd_detr.engine.output_dir import lock_output_dir\n"
            f"lock_output_dir({str(tmp_path)!r})\npid = os.fork()\n"
            f"if pid == 0:\n    null = os.open(os.devnull, os.O_RDWR)\n    os.dup2(null, 1)\n    os.dup2(null, 2)\n"
            f"    time.sleep(30)\n    os._exit(0)\n"
            f"print(pid, flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    worker = int(proc.stdout.split()[0])
    try:
        os.kill(worker, 0)  # the worker outlives its trainer
        try:
            lock_output_dir(str(tmp_path))
        except OutputDirInUseError as e:
            pytest.fail(f"the orphaned worker holds the lock: {e}")
        unlock_output_dir(str(tmp_path))
    finally:
        os.kill(worker, signal.SIGKILL)
