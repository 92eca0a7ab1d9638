"""Two CPU workers under torchrun: gloo process group, sharded data, synchronised gradients, evaluation
gathered from both workers, checkpoints from the main worker only."""
import json
import os
import subprocess
import sys

import pytest
import torch

from ..utils import REPO

TINY = os.path.join(REPO, "projects", "conditional_detr", "configs", "conditional_detr_tiny_synthetic.py")


@pytest.mark.slow  # two torchrun workers
def test_two_torchrun_cpu_workers_keep_identical_weights_and_evaluate_each_val_image_once(synthetic_env, tmp_path):
    out = tmp_path / "ddp"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", "29533", os.path.join(REPO, "tests", "engine", "ddp_worker.py"),
           "--config-file", TINY, f"train.output_dir={out}", "train.max_iter=6", "train.log_period=1",
           "train.checkpointer.period=3", "train.eval_period=1000", "lr_multiplier.milestones=[5,6]",
           "dataloader.train.total_batch_size=4", "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
           f"dataloader.evaluator.output_dir={out / 'eval'}"]
    env = dict(synthetic_env, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    ranks = [torch.load(out / f"rank{r}.pth", map_location="cpu") for r in (0, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    initial = torch.load(out / "model_0000002.pth", map_location="cpu", weights_only=False)["model"]
    changed = 0
    for k, v in ranks[0]["state"].items():
        assert torch.equal(v, ranks[1]["state"][k]), f"workers differ in {k}"
        changed += int(not torch.equal(v, initial[k]))
    assert changed > 0  # they trained, and identically

    # evaluation gathered the predictions of both workers: every val image once (num_select each)
    detections = json.loads((out / "eval" / "coco_instances_results.json").read_text())
    per_image = {}
    for d in detections:
        per_image[d["image_id"]] = per_image.get(d["image_id"], 0) + 1
    val = json.loads(open(os.path.join(synthetic_env["SD_DETR_SYNTHETIC_ROOT"], "annotations", "instances_val.json")).read())
    assert sorted(per_image) == sorted(img["id"] for img in val["images"])
    assert set(per_image.values()) == {50}
    # only the main worker wrote checkpoints and metrics
    assert sorted(p.name for p in out.glob("model_*.pth")) == ["model_0000002.pth", "model_0000005.pth", "model_final.pth"]
    assert (out / "metrics.json").exists()
