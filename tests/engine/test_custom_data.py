"""Own COCO-format data end to end in one process: a generated 4-image dataset (non-contiguous category
ids) through apply_custom_datasets, 2 training iterations of the tiny SD-DETR, then COCOEvaluator on the
own val set; the built model has the dataset's number of classes (README "Training on your own
COCO-format data")."""
import json
import os

import numpy as np
from detectron2.config import LazyConfig
from PIL import Image

from sd_detr.data import apply_custom_datasets
from sd_detr.engine import do_train

from ..utils import REPO, read_metrics

SD_DETR_TINY = os.path.join(REPO, "projects", "sd_detr", "configs", "sd_detr_tiny_synthetic.py")
CATEGORIES = {3: "apple", 7: "pear", 8: "plum", 20: "fig"}  # 4 classes, ids as a user's export may have


def write_dataset(root, split, num_images=4):
    """``root/<split>.json`` and ``root/<split>/*.jpg`` (144x112 px, two boxes each, absolute XYWH).
    Returns the "JSON:IMAGES" spec."""
    folder = os.path.join(str(root), split)
    os.makedirs(folder)
    rng = np.random.RandomState(len(split))
    images, annotations = [], []
    ids = sorted(CATEGORIES)
    for i in range(num_images):
        pixels = rng.randint(0, 80, (112, 144, 3)).astype(np.uint8)
        pixels[10:60, 20:80] = (220, 200, 30)
        Image.fromarray(pixels).save(os.path.join(folder, f"img{i}.jpg"))
        images.append({"id": 100 + i, "file_name": f"img{i}.jpg", "width": 144, "height": 112})
        for j, box in enumerate(([20, 10, 60, 50], [90, 60, 40, 40])):
            annotations.append({"id": 1000 + 10 * i + j, "image_id": 100 + i, "category_id": ids[(i + j) % 4],
                                "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
    json_file = os.path.join(str(root), f"{split}.json")
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": k, "name": v} for k, v in CATEGORIES.items()]}, f)
    return f"{json_file}:{folder}"


def test_tiny_sd_detr_trains_and_evaluates_on_own_coco_data(synthetic_root, tmp_path, monkeypatch):
    """Catches: num_classes left at the config's 5 anywhere (the head, the criterion, SD-DETR's
    mini-detector: a shape error or a wrong head), the test loader or the evaluator left on the synthetic
    val set (its 5 classes would show in the per-class AP), and a mapping of the non-contiguous ids that
    breaks the loader or COCOEvaluator."""
    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", synthetic_root)  # the tiny config registers it on load
    cfg = LazyConfig.load(SD_DETR_TINY)
    apply_custom_datasets(cfg, train=write_dataset(tmp_path / "data", "train"),
                          val=write_dataset(tmp_path / "data", "val"))
    cfg.train.update(output_dir=str(tmp_path / "run"), max_iter=2, log_period=1, eval_period=0, device="cpu")
    cfg.train.checkpointer.period = 1000
    cfg.lr_multiplier.milestones = [1, 2]
    cfg.dataloader.train.update(total_batch_size=2, num_workers=0)
    cfg.dataloader.test.num_workers = 0

    model = do_train(cfg).model
    assert model.class_embed.weight.shape[0] == len(CATEGORIES)
    assert model.query_init.mini_detector.class_head.weight.shape[0] == len(CATEGORIES)
    assert model.criterion.num_classes == len(CATEGORIES)

    evals = [r for r in read_metrics(tmp_path / "run") if "bbox/AP" in r]
    assert len(evals) == 1  # the final evaluation
    per_class = {k[len("bbox/AP-"):] for k in evals[0] if k.startswith("bbox/AP-")}
    assert per_class == set(CATEGORIES.values())
