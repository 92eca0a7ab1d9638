"""Multi-machine launching as Detectron2 does it (``--num-machines``, ``--machine-rank``, ``--dist-url``):
two "machines" of one CPU process each on this host, through ``tools/lazyconfig_train_net.py`` (gloo);
and the launcher's rank arithmetic and argument checks without processes."""
import os
import re
import socket
import subprocess
import sys

import pytest
import torch

from sd_detr.engine import distributed

from ..utils import REPO, TRAIN_TOOL, final_eval

TINY = os.path.join(REPO, "projects", "conditional_detr", "configs", "conditional_detr_tiny_synthetic.py")


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # two subprocesses of the train tool (about 40 s on 2 cores)
def test_two_machines_of_one_cpu_process_train_together_and_evaluate_once(synthetic_root, tmp_path):
    """Catches: the tool refusing --num-machines without CUDA, the machine rank not mapped to the global
    rank (both ranks 0: the second cannot join, or each trains alone), each machine training alone (world
    size 1: rank 1 would write checkpoints and evaluate all images), and evaluation not gathered to rank 0."""
    url = f"tcp://127.0.0.1:{_free_port()}"
    outs = [tmp_path / f"machine{r}" for r in (0, 1)]  # each "machine" its own disk
    env = dict(os.environ, SD_DETR_SYNTHETIC_ROOT=synthetic_root, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONWARNINGS="ignore")
    procs = []
    for rank, out in enumerate(outs):
        cmd = [sys.executable, TRAIN_TOOL, "--num-gpus", "1", "--num-machines", "2", "--machine-rank", str(rank),
               "--dist-url", url, "--config-file", TINY, f"train.output_dir={out}", "train.max_iter=3",
               "lr_multiplier.milestones=[2,3]", "train.eval_period=1000", "train.checkpointer.period=1000",
               "train.log_period=1", "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
               "dataloader.test.num_workers=0", f"dataloader.evaluator.output_dir={out / 'eval'}"]
        procs.append(subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    try:
        logs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rank, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"machine {rank}:\n{log[-4000:]}"

    # each process knows its place in a world of two (Detectron2's default_setup logs it into each log file)
    files = [outs[0] / "log.txt", outs[1] / "log.txt.rank1"]
    for rank, f in enumerate(files):
        assert f"Rank of current process: {rank}. World size: 2" in f.read_text()
    # the 6 val images were split between the two ranks (3 each) and gathered to rank 0 for COCO evaluation
    for f in files:
        assert re.search(r"Start inference on 3 batches", f.read_text()), f
    synthetic_val = 6  # the synthetic_root fixture
    import json

    detections = json.loads((outs[0] / "eval" / "coco_instances_results.json").read_text())
    assert len({d["image_id"] for d in detections}) == synthetic_val
    assert "bbox/AP50" in final_eval(outs[0])
    assert json.loads((outs[0] / "final_evaluation.json").read_text())["iteration"] == 3

    # rank 0 alone writes the checkpoint, metrics and the evaluation; rank 1 writes only its log
    assert (outs[0] / "model_final.pth").exists()
    torch.load(outs[0] / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    assert sorted(p.name for p in outs[1].rglob("*") if p.is_file()) == ["log.txt.rank1"]


def test_global_rank_counts_the_processes_of_the_machines_before():
    assert [distributed.global_rank(m, 2, r) for m in (0, 1, 2) for r in (0, 1)] == [0, 1, 2, 3, 4, 5]
    assert distributed.global_rank(1, 1, 0) == 1


def test_cpu_worker_joins_gloo_as_its_global_rank_with_its_machine_local_group(monkeypatch):
    """Machine 1 of 2, process 1 of 2: global rank 3 of 4, local group = ranks 2 and 3; the group is
    released afterwards (an in-process worker leaves the caller's process as it was)."""
    calls = {}
    monkeypatch.setattr(distributed.dist, "init_process_group",
                        lambda backend, **kw: calls.update(backend=backend, **kw))
    monkeypatch.setattr(distributed.dist, "new_group", lambda ranks: tuple(ranks))
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: calls.update(destroyed=True))
    monkeypatch.setattr(distributed.comm, "synchronize", lambda: None)
    seen = {}

    def main(x):
        seen.update(x=x, local=distributed.comm._LOCAL_PROCESS_GROUP)
        return "done"

    out = distributed._cpu_worker(1, main, 4, 2, 1, "tcp://127.0.0.1:1234", ("arg",), distributed.DEFAULT_TIMEOUT)
    assert out == "done" and seen == {"x": "arg", "local": (2, 3)}
    assert calls["backend"] == "gloo" and calls["rank"] == 3 and calls["world_size"] == 4
    assert calls["init_method"] == "tcp://127.0.0.1:1234" and calls["destroyed"]
    assert distributed.comm._LOCAL_PROCESS_GROUP is None


def test_launch_on_cpu_runs_one_machine_of_one_process_directly_and_the_machines_worker_in_process(monkeypatch):
    monkeypatch.setattr(distributed.torch.cuda, "is_available", lambda: False)
    assert distributed.launch(lambda a, b: a + b, 1, args=(2, 3)) == 5  # world of one: no process group
    joined = []
    monkeypatch.setattr(distributed, "_cpu_worker", lambda local_rank, *a: joined.append((local_rank, a[1:5])))
    distributed.launch(print, 1, num_machines=2, machine_rank=1, dist_url="tcp://10.0.0.1:29500")
    assert joined == [(0, (2, 1, 1, "tcp://10.0.0.1:29500"))]  # world 2, 1 per machine, machine rank 1


@pytest.mark.parametrize("argv,message", [
    ((1, 2, 2, "tcp://127.0.0.1:1"), "--machine-rank 2 is not one of 0 .. 1"),
    ((1, 2, -1, "tcp://127.0.0.1:1"), "--machine-rank -1"),
    ((1, 2, 0, "auto"), "needs --dist-url"),
    ((1, 2, 1, ""), "needs --dist-url"),
    ((0, 1, 0, "auto"), "--num-gpus 0"),
])
def test_launch_refuses_arguments_that_would_hang_or_fail_late(argv, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        distributed.launch(print, *argv)
    distributed.check_launch_args(1, 2, 1, "tcp://127.0.0.1:1")  # a good one passes
