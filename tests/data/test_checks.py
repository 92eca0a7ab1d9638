"""check_inputs_before_training: the test set, the classes and train.max_iter checked before a run starts."""
import json
import uuid

import cv2
import numpy as np
import pytest
from detectron2.config import LazyCall as L
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from omegaconf import OmegaConf

from sd_detr.data import apply_custom_datasets, get_detr_dataset_dicts
from sd_detr.data.checks import check_inputs_before_training


@pytest.fixture
def register(tmp_path):
    """register(classes, num_images=2, missing=()) -> name: a COCO dataset of 30x20 PNGs, one box each,
    without the image files listed in ``missing``; removed from the catalogs afterwards."""
    names = []

    def _register(classes, num_images=2, missing=()):
        name = f"test_checks_{uuid.uuid4().hex[:8]}"
        root = tmp_path / name
        root.mkdir()
        images, annotations = [], []
        for i in range(num_images):
            file_name = f"{i}.png"
            if file_name not in missing:
                cv2.imwrite(str(root / file_name), np.zeros((20, 30, 3), np.uint8))
            images.append({"id": i + 1, "file_name": file_name, "width": 30, "height": 20})
            annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [2, 2, 10, 10],
                                "area": 100, "iscrowd": 0})
        json_file = tmp_path / f"{name}.json"
        json_file.write_text(json.dumps({"images": images, "annotations": annotations,
                                         "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)]}))
        register_coco_instances(name, {}, str(json_file), str(root))
        names.append(name)
        return name

    yield _register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _cfg(train_name, test_name, num_classes, max_iter=10, output_dir="unused"):
    """The parts of a training LazyConfig the check reads: a model with a literal num_classes and an
    interpolated one (as the project's models have), the train / test datasets, an evaluator."""
    cfg = OmegaConf.create()
    cfg.train = {"max_iter": max_iter, "output_dir": str(output_dir)}
    cfg.model = {"num_classes": num_classes, "criterion": {"num_classes": "${..num_classes}"}}
    cfg.dataloader = {
        "train": {"dataset": L(get_detr_dataset_dicts)(names=train_name, filter_empty=False)},
        "test": {"dataset": L(get_detr_dataset_dicts)(names=test_name, filter_empty=False)},
        "evaluator": {"dataset_name": "${..test.dataset.names}"},
    }
    return cfg


def test_consistent_inputs_pass_and_a_wider_head_is_allowed(register):
    """Catches a check that rejects good runs: same classes in train and test, a model with as many or more
    class logits than the data (DETR-R50 checkpoints with 91 COCO logits for 80 classes)."""
    train, test = register(["a", "b", "c"]), register(["a", "b", "c"])
    check_inputs_before_training(_cfg(train, test, num_classes=3))
    check_inputs_before_training(_cfg(train, test, num_classes=4))
    check_inputs_before_training(_cfg(train, test, num_classes=3, max_iter=0))


def test_missing_val_image_is_an_error_before_the_model_is_built(tmp_path, register, monkeypatch):
    """Catches the val set left unchecked until the first evaluation: a missing val image failed only at
    the final evaluation, after every iteration (issue 22). do_train must raise the dataset's error
    before it builds the model."""
    from sd_detr.engine import train_loop

    train, test = register(["a"]), register(["a"], num_images=3, missing=("1.png",))

    def build_model(cfg):
        raise AssertionError("the model was built before the val set was checked")

    monkeypatch.setattr(train_loop, "build_model", build_model)
    with pytest.raises(FileNotFoundError, match=r"1 of 3 image files are missing") as excinfo:
        train_loop.do_train(_cfg(train, test, num_classes=1, output_dir=tmp_path / "run"))
    assert test in str(excinfo.value) and "1.png" in str(excinfo.value)


@pytest.fixture
def cleanup_catalog():
    """Removes the datasets apply_custom_datasets registers (named custom_*)."""
    before = set(DatasetCatalog.list())
    yield
    for name in {n for n in DatasetCatalog.list() if n.startswith("custom_")} - before:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_val_set_alone_with_other_classes_than_the_train_set_names_both_counts(register, cleanup_catalog):
    """Catches --dataset-val alone on a config whose train set has other classes: the model followed the
    val set's 2 categories while the train set has 5 labels, and the matcher raised an IndexError
    (issue 22). The error must name the train set and both counts."""
    train = register(["a", "b", "c", "d", "e"])
    val = register(["x", "y"])
    cfg = _cfg(train, "unused_test", num_classes=5)
    meta = MetadataCatalog.get(val)
    apply_custom_datasets(cfg, val=f"{meta.json_file}:{meta.image_root}")
    with pytest.raises(ValueError) as excinfo:
        check_inputs_before_training(cfg)
    message = str(excinfo.value)
    assert f"train dataset {train!r} has 5 classes" in message and "num_classes is 2" in message
    assert "--dataset-train" in message


def test_test_set_of_other_classes_than_the_train_set_names_both(register):
    """Catches a test set of other classes accepted (the evaluation would score class i of one set as
    class i of the other)."""
    train, test = register(["a", "b", "c"]), register(["a", "b", "z"])
    with pytest.raises(ValueError) as excinfo:
        check_inputs_before_training(_cfg(train, test, num_classes=3))
    message = str(excinfo.value)
    assert f"train dataset {train!r} has 3 classes" in message and f"test dataset {test!r} has 3" in message
    assert "z" in message


def test_negative_max_iter_is_an_error_naming_key_and_value(register):
    """Catches train.max_iter=-5 starting a run that trains nothing and logs "resumed at iteration 0 >
    max_iter" as if it were a resume."""
    train = register(["a"])
    with pytest.raises(ValueError, match=r"train\.max_iter=-5"):
        check_inputs_before_training(_cfg(train, train, num_classes=1, max_iter=-5))
