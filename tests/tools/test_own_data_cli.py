"""Own COCO-format data in one command: ``tools/lazyconfig_train_net.py --dataset-train JSON:IMAGES
--dataset-val JSON:IMAGES`` trains and evaluates the tiny SD-DETR on a generated 3-image dataset with
the classes of its JSON."""
import json
import os

import numpy as np
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
