"""Own COCO-format data in one command: ``tools/lazyconfig_train_net.py --dataset-train JSON:IMAGES
--dataset-val JSON:IMAGES`` trains and evaluates the tiny SD-DETR on a generated 3-image dataset with
the classes of its JSON."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from ..utils import REPO, read_metrics, run_train_tool

SD_DETR_TINY = os.path.join(REPO, "projects", "sd_detr", "configs", "sd_detr_tiny_synthetic.py")
CATEGORIES = {2: "cup", 5: "fork", 9: "plate"}  # non-contiguous ids: 3 classes


def write_dataset(root, name, num_images=3, degenerate=False):
    """``root/<name>.json`` + ``root/<name>/`` with ``num_images`` 160x128 PNGs, two boxes each (one of
    them of zero width in the first image if ``degenerate``). Returns the ``JSON:IMAGES`` spec."""
    folder = root / name
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    images, annotations = [], []
    for i in range(num_images):
        pixels = rng.randint(0, 255, (128, 160, 3)).astype(np.uint8)
        pixels[20:70, 30:90] = (200, 40, 40)
        Image.fromarray(pixels).save(folder / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 160, "height": 128})
        for j, (box, cat) in enumerate((([30, 20, 60, 50], 2), ([100, 60, 40, 50], 5 if i % 2 else 9))):
            if degenerate and i == 0 and j == 1:
                box = [100, 60, 0, 50]
            annotations.append({"id": 10 * i + j + 1, "image_id": i + 1, "category_id": cat, "bbox": box,
                                "area": box[2] * box[3], "iscrowd": 0})
    json_file = root / f"{name}.json"
    json_file.write_text(json.dumps({"images": images, "annotations": annotations,
                                     "categories": [{"id": k, "name": v} for k, v in CATEGORIES.items()]}))
    return f"{json_file}:{folder}"


@pytest.mark.slow  # a run of the train tool
def test_dataset_flags_train_and_evaluate_on_own_coco_data_with_its_classes(tmp_path, synthetic_root):
    """Catches flags that are parsed but not applied (the synthetic data would be used: 5 classes),
    num_classes left at the config's value in the model or the criterion (the run would fail or build
    a 5-class head), the saved config.yaml not naming the data, and the data's messages (the dropped
    degenerate box) missing from log.txt."""
    train = write_dataset(tmp_path, "train", degenerate=True)
    val = write_dataset(tmp_path, "val")
    out = tmp_path / "run"
    env = dict(os.environ, SD_DETR_SYNTHETIC_ROOT=synthetic_root, OMP_NUM_THREADS="1")
    run_train_tool(SD_DETR_TINY, env, "--dataset-train", train, "--dataset-val", val,
                   f"train.output_dir={out}", "train.max_iter=2", "lr_multiplier.milestones=[1,2]",
                   "train.eval_period=1000", "train.checkpointer.period=1000", "train.log_period=1",
                   "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
                   "dataloader.test.num_workers=0", timeout=600)
    state = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    # the detector's class head and SD-DETR's mini-detector's (the tiny config has 5 synthetic classes)
    heads = {k: state[k].shape[0] for k in ("class_embed.weight", "query_init.mini_detector.class_head.weight")}
    assert set(heads.values()) == {len(CATEGORIES)}, heads
    evals = [r for r in read_metrics(out) if "bbox/AP" in r]
    assert evals, "no evaluation on the val set"
    log = (out / "log.txt").read_text()
    assert "dropped 1 degenerate boxes" in log
    assert "3 classes" in log and "cup" in log  # apply_custom_datasets' summary
    saved = (out / "config.yaml").read_text()
    assert "names: custom_train_" in saved and "names: custom_val_" in saved and "sd_detr_synthetic_" not in saved
    assert f"{tmp_path / 'train.json'}" in saved and f"{tmp_path / 'val.json'}" in saved


@pytest.mark.slow  # a python start-up of the train tool
def test_option_after_the_overrides_is_an_error_saying_where_options_go(tmp_path):
    """argparse swallows options after the first key=value into the overrides; say so instead of a
    "not of the form key=value" error or a silently ignored flag."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "lazyconfig_train_net.py"), "--config-file",
                           SD_DETR_TINY, f"train.output_dir={tmp_path}", "--dataset-train", "a.json:imgs"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode != 0
    assert "--dataset-train" in proc.stderr and "before the first key=value" in proc.stderr


_RUN_MAINS = r"""
import importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("train_net", os.path.join(sys.argv[1], "tools", "lazyconfig_train_net.py"))
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
for argv in json.loads(sys.argv[2]):
    try:
        tool.main(tool.get_parser().parse_args(argv))
        result = {"type": None, "message": ""}
    except Exception as e:
        result = {"type": type(e).__name__, "message": str(e)}
    print("RESULT " + json.dumps(result), flush=True)
"""


@pytest.mark.slow  # a subprocess (about 20 s of CPU)
def test_bad_inputs_are_reported_before_training_with_clear_messages(tmp_path, synthetic_root):
    """The train tool's main() on five bad command lines, in one Python process (each start costs
    seconds). Catches (issue 22): no --config-file failing obscurely inside LazyConfig.load; a missing
    val image reported only at the final evaluation, after training (no metrics.json may be written);
    --dataset-val alone with 3 classes on the 5-class synthetic train set building a 3-class model that
    failed with an IndexError in the matcher; a negative train.max_iter training nothing silently; a
    Windows JSON:IMAGES path reported as "<cwd>/C"."""
    import subprocess
    import sys

    train = write_dataset(tmp_path, "train")
    val = write_dataset(tmp_path, "val")
    (tmp_path / "val" / "1.png").unlink()
    val3 = write_dataset(tmp_path, "val3")  # CATEGORIES: 3 classes; the synthetic train set has 5
    tiny = ["--config-file", SD_DETR_TINY]
    quick = ["train.max_iter=2", "dataloader.train.num_workers=0", "dataloader.test.num_workers=0"]
    runs = {
        "no config": [],
        "missing val image": tiny + ["--dataset-train", train, "--dataset-val", val,
                                     f"train.output_dir={tmp_path / 'missing'}"] + quick,
        "val alone": tiny + ["--dataset-val", val3, f"train.output_dir={tmp_path / 'alone'}"] + quick,
        "negative max_iter": tiny + [f"train.output_dir={tmp_path / 'negative'}", "train.max_iter=-1"],
        "windows spec": tiny + ["--dataset-train", r"C:\data\train.json:C:\data\images"],
    }
    proc = subprocess.run([sys.executable, "-c", _RUN_MAINS, REPO, json.dumps(list(runs.values()))], cwd=REPO,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, SD_DETR_SYNTHETIC_ROOT=synthetic_root, OMP_NUM_THREADS="1"))
    lines = [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == len(runs), proc.stdout[-3000:] + proc.stderr[-3000:]
    results = dict(zip(runs, lines))

    assert "--config-file is required" in results["no config"]["message"], results["no config"]

    missing = results["missing val image"]
    assert missing["type"] == "FileNotFoundError" and str(tmp_path / "val" / "1.png") in missing["message"], missing
    assert not (tmp_path / "missing" / "metrics.json").exists(), "the run trained before checking the val set"

    alone = results["val alone"]
    assert alone["type"] == "ValueError", alone
    assert "has 5 classes" in alone["message"] and "num_classes is 3" in alone["message"], alone
    assert not (tmp_path / "alone" / "metrics.json").exists()

    negative = results["negative max_iter"]
    assert negative["type"] == "ValueError" and "train.max_iter=-1" in negative["message"], negative

    windows = results["windows spec"]
    assert windows["type"] == "FileNotFoundError", windows
    assert r"annotation file C:\data\train.json does not exist" in windows["message"], windows
