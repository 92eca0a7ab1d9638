"""The project's logger ``sd_detr`` goes through Detectron2's logging set-up in the train tool: its
messages reach ``output_dir/log.txt`` and the console, those logged while the config is loaded too, and a
``--resume`` of a finished run says that there is nothing to train."""
import os

import pytest

from sd_detr.data.synthetic import generate_synthetic_dataset

from ..utils import REPO, run_train_tool

TINY = os.path.join(REPO, "projects", "conditional_detr", "configs", "conditional_detr_tiny_synthetic.py")
FEW_ITERS = ["train.max_iter=2", "lr_multiplier.milestones=[1,2]", "train.log_period=1", "train.eval_period=1000",
             "train.checkpointer.period=1000", "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
             "dataloader.test.num_workers=0"]


@pytest.mark.slow  # two runs of the train tool
def test_sd_detr_messages_reach_log_txt_and_resume_of_a_finished_run_says_so(tmp_path):
    """Catches the ``sd_detr`` logger left without handlers (its info lines vanish, its warnings reach only
    stderr through Python's last-resort handler and never log.txt), and records logged before
    ``default_setup`` (while the config file is loaded) being lost."""
    root = tmp_path / "synthetic"
    # train and val only: a training loads no shifted split, so none is generated (issue 23)
    generate_synthetic_dataset(str(root), num_train=4, num_val=2, splits=["train", "val"], progress=False)
    env = dict(os.environ, SD_DETR_SYNTHETIC_ROOT=str(root), OMP_NUM_THREADS="1")
    out = tmp_path / "run"
    # --dataset-train (the synthetic train split as own data) logs its registration while the config loads
    args = ["--resume", f"--dataset-train={root}/annotations/instances_train.json:{root}/train",
            f"train.output_dir={out}", *FEW_ITERS]

    first = run_train_tool(TINY, env, *args, timeout=600)  # --resume with no checkpoint yet: a warning
    log = (out / "log.txt").read_text()
    assert "no checkpoint in" in log and "starting from train.init_checkpoint" in log
    # logged by apply_custom_datasets during setup (before default_setup), held and replayed
    assert "Registered dataset 'custom_instances_train_" in log
    assert f"annotations {root}/annotations/instances_train.json" in log
    assert "Generating the sd_detr synthetic dataset" not in log and not (root / "val_shift").exists()
    assert "sd_detr" in log.split("no checkpoint in")[0].splitlines()[-1]  # under the logger's own name
    assert (out / "model_final.pth").is_file(), first.stdout[-2000:]

    second = run_train_tool(TINY, env, *args, timeout=600)
    log = (out / "log.txt").read_text()
    assert "resumed at iteration 2 = max_iter (2), nothing to train" in log
    assert "nothing to train" in second.stdout + second.stderr  # shown, not only written
