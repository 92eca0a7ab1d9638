"""apply_custom_datasets: "JSON:IMAGES" specs registered, wired into a LazyConfig, num_classes followed."""
import json
import os

import numpy as np
import pytest
from detectron2.config import LazyConfig
from detectron2.data import DatasetCatalog, MetadataCatalog
from omegaconf import OmegaConf
from PIL import Image

from sd_detr.data.custom import (
    apply_custom_datasets,
    custom_dataset_name,
    parse_dataset_spec,
    register_custom_coco,
)

from ..utils import REPO

SD_DETR_R50 = os.path.join(REPO, "projects", "sd_detr", "configs", "sd_detr_r50_12ep.py")
CUSTOM_COCO = os.path.join(REPO, "configs", "common", "data", "custom_coco.py")


def write_coco(root, name="train", categories=("cat", "dog", "bird"), num_images=2, size=(40, 32)):
    """A COCO-format dataset: ``root/<name>.json`` and ``root/<name>/`` with ``num_images`` PNGs of
    ``size`` (w, h), one box per image. Returns (json path, image folder)."""
    image_dir = os.path.join(str(root), name)
    os.makedirs(image_dir, exist_ok=True)
    w, h = size
    images, annotations = [], []
    for i in range(num_images):
        file_name = f"{i:03d}.png"
        Image.fromarray(np.full((h, w, 3), 40 * i % 255, np.uint8)).save(os.path.join(image_dir, file_name))
        images.append({"id": i + 1, "file_name": file_name, "width": w, "height": h})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1 + i % len(categories),
                            "bbox": [4.0, 4.0, w / 2, h / 2], "area": w * h / 4, "iscrowd": 0})
    json_file = os.path.join(str(root), f"{name}.json")
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": i + 1, "name": n} for i, n in enumerate(categories)]}, f)
    return json_file, image_dir


@pytest.fixture
def cleanup_catalog():
    before = set(DatasetCatalog.list())
    yield
    for name in set(DatasetCatalog.list()) - before:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_spec_is_split_into_absolute_json_and_image_folder(tmp_path, monkeypatch):
    """Catches: relative paths kept relative (the name and the loader would depend on the cwd)."""
    json_file, image_dir = write_coco(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert parse_dataset_spec("train.json:train") == (json_file, image_dir)


def test_spec_with_a_colon_inside_a_path_picks_the_split_at_the_existing_file(tmp_path):
    """Catches: splitting at the first (or last) colon only, which breaks POSIX paths holding colons."""
    folder = tmp_path / "run:2024"
    folder.mkdir()
    json_file, image_dir = write_coco(folder, name="a:b")
    assert parse_dataset_spec(f"{json_file}:{image_dir}") == (json_file, image_dir)


@pytest.mark.parametrize("spec, error, words", [
    ("only_a_path.json", ValueError, ["only_a_path.json", "JSON:IMAGES"]),
    (":images", ValueError, ["':images'", "JSON file is missing"]),
    ("{json}:", ValueError, ["image folder is missing"]),
    ("{tmp}/nope.json:{images}", FileNotFoundError, ["nope.json", "does not exist"]),
    ("{json}:{tmp}/no_images", FileNotFoundError, ["no_images", "does not exist"]),
])
def test_bad_spec_error_names_the_spec_and_the_missing_part(tmp_path, spec, error, words):
    """Catches: a bad spec failing later with a KeyError / a pycocotools traceback that names nothing."""
    json_file, image_dir = write_coco(tmp_path)
    spec = spec.format(json=json_file, images=image_dir, tmp=tmp_path)
    with pytest.raises(error) as e:
        parse_dataset_spec(spec, what="--dataset-train")
    assert "--dataset-train" in str(e.value)
    for word in words:
        assert word.format(tmp=tmp_path) in str(e.value)


def test_missing_json_of_a_windows_style_spec_is_named_as_given(tmp_path):
    """Catches the split at the drive letter's colon being reported when no part exists: a Windows path
    C:\\data\\train.json:C:\\data\\images was reported as the annotation file "<cwd>/C"."""
    spec = r"C:\data\train.json:C:\data\images"
    with pytest.raises(FileNotFoundError) as e:
        parse_dataset_spec(spec, what="--dataset-train")
    assert r"annotation file C:\data\train.json does not exist" in str(e.value)
    assert f"annotation file {os.path.abspath('C')} " not in str(e.value)


def test_registration_is_stable_and_idempotent(tmp_path, cleanup_catalog):
    """Catches: a name from Python's randomised hash (differs between DDP processes / a resumed run), and a
    second call raising "already registered"."""
    json_file, image_dir = write_coco(tmp_path)
    name = register_custom_coco(json_file, image_dir)
    assert name == custom_dataset_name(json_file, image_dir) == register_custom_coco(json_file, image_dir)
    assert name.startswith("custom_train_")
    assert MetadataCatalog.get(name).json_file == json_file
    other_json, other_images = write_coco(tmp_path / "other")
    assert custom_dataset_name(other_json, other_images) != name
    assert len(DatasetCatalog.get(name)) == 2


def _resolved_num_classes(model_cfg):
    """Every num_classes under the model config, interpolations resolved: {dotted path: value}."""
    container = OmegaConf.to_container(model_cfg, resolve=True)
    found = {}

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "num_classes":
                    found[f"{path}.{k}"] = v
                else:
                    walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}.{i}")

    walk(container, "model")
    return found


def test_config_follows_the_dataset_names_and_categories(tmp_path, cleanup_catalog):
    """Catches: only model.num_classes changed while a literal num_classes elsewhere (or the mini-detector
    reached through an interpolation) stays 80; the evaluator left on coco_2017_val."""
    train = write_coco(tmp_path, "train")
    val = write_coco(tmp_path, "val")
    cfg = LazyConfig.load(SD_DETR_R50)
    cfg.model.criterion.num_classes = 80  # a literal, as a user's config might have it
    apply_custom_datasets(cfg, train=":".join(train), val=":".join(val))

    assert cfg.dataloader.train.dataset.names == custom_dataset_name(*train)
    assert cfg.dataloader.test.dataset.names == custom_dataset_name(*val)
    resolved = OmegaConf.to_container(cfg.dataloader, resolve=True)
    assert resolved["evaluator"]["dataset_name"] == custom_dataset_name(*val)
    num_classes = _resolved_num_classes(cfg.model)
    assert {"model.num_classes", "model.criterion.num_classes",
            "model.query_init.mini_detector.num_classes"} <= set(num_classes)
    assert set(num_classes.values()) == {3}, num_classes
    assert cfg.dataloader.custom.train_json == train[0] and cfg.dataloader.custom.val_images == val[1]
    # a second call (the train loop calls it again) changes nothing
    before = OmegaConf.to_yaml(cfg)
    apply_custom_datasets(cfg)
    assert OmegaConf.to_yaml(cfg) == before


def test_train_and_val_with_different_categories_is_an_error_naming_both_files(tmp_path, cleanup_catalog):
    """Catches: the val categories silently ignored (the evaluator would map class ids wrongly)."""
    train = write_coco(tmp_path, "train", categories=("cat", "dog"))
    val = write_coco(tmp_path, "val", categories=("cat", "horse"))
    cfg = LazyConfig.load(SD_DETR_R50)
    with pytest.raises(ValueError) as e:
        apply_custom_datasets(cfg, train=":".join(train), val=":".join(val))
    assert train[0] in str(e.value) and val[0] in str(e.value)
    assert "horse" in str(e.value)


def test_only_a_train_set_with_a_test_set_of_other_classes_is_an_error(tmp_path, cleanup_catalog):
    """Catches: a 3-class model trained for hours, then evaluated on COCO val's 80 classes."""
    train = write_coco(tmp_path, "train")
    cfg = LazyConfig.load(SD_DETR_R50)
    with pytest.raises(ValueError, match="coco_2017_val.*--dataset-val"):
        apply_custom_datasets(cfg, train=":".join(train))


def test_json_without_categories_is_an_error_naming_the_file(tmp_path, cleanup_catalog):
    """Catches: num_classes silently set to 0."""
    json_file, image_dir = write_coco(tmp_path)
    content = json.load(open(json_file))
    del content["categories"]
    json.dump(content, open(json_file, "w"))
    cfg = LazyConfig.load(SD_DETR_R50)
    with pytest.raises(ValueError, match=f"{json_file}.*categories"):
        apply_custom_datasets(cfg, val=f"{json_file}:{image_dir}")


def test_nothing_given_leaves_the_config_unchanged():
    """Catches: the train tool's unconditional call touching a config that does not use own data."""
    cfg = LazyConfig.load(SD_DETR_R50)
    before = OmegaConf.to_yaml(cfg)
    assert apply_custom_datasets(cfg) is cfg
    assert OmegaConf.to_yaml(cfg) == before


def test_custom_coco_config_keys_are_applied(tmp_path, cleanup_catalog):
    """configs/common/data/custom_coco.py driven by dataloader.custom.* keys (as key=value overrides set
    them). Catches: the keys ignored (placeholders left as dataset names), the evaluator not following."""
    train = write_coco(tmp_path, "train")
    val = write_coco(tmp_path, "val")
    cfg = LazyConfig.load(SD_DETR_R50)
    cfg.dataloader = LazyConfig.load(CUSTOM_COCO).dataloader
    cfg = LazyConfig.apply_overrides(cfg, [
        f"dataloader.custom.train_json={train[0]}", f"dataloader.custom.train_images={train[1]}",
        f"dataloader.custom.val_json={val[0]}", f"dataloader.custom.val_images={val[1]}"])
    apply_custom_datasets(cfg)
    resolved = OmegaConf.to_container(cfg.dataloader, resolve=True)
    assert resolved["train"]["dataset"]["names"] == custom_dataset_name(*train)
    assert resolved["evaluator"]["dataset_name"] == resolved["test"]["dataset"]["names"] == custom_dataset_name(*val)
    assert cfg.model.num_classes == 3


def test_custom_coco_config_without_paths_says_which_keys_to_set():
    """Catches: an unset path failing later as "Dataset 'custom_coco_train_unset' is not registered"."""
    cfg = LazyConfig.load(SD_DETR_R50)
    cfg.dataloader = LazyConfig.load(CUSTOM_COCO).dataloader
    with pytest.raises(ValueError, match="dataloader.custom.train_json=.*--dataset-train"):
        apply_custom_datasets(cfg)


def test_a_second_call_keeps_overrides_made_after_the_first(tmp_path, cleanup_catalog):
    """The train tool applies the flags, then the user's overrides, then the train loop calls again.
    Catches: the second call resetting num_classes (or the names) from the recorded paths; and a new
    process (a reloaded config.yaml) not registering the recorded datasets."""
    train = write_coco(tmp_path, "train")
    val = write_coco(tmp_path, "val")
    cfg = LazyConfig.load(SD_DETR_R50)
    apply_custom_datasets(cfg, train=":".join(train), val=":".join(val))
    cfg.model.num_classes = 4  # e.g. a user's override (one class more, on purpose)
    saved = OmegaConf.to_yaml(cfg)
    for name in (custom_dataset_name(*train), custom_dataset_name(*val)):
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    apply_custom_datasets(cfg)
    assert OmegaConf.to_yaml(cfg) == saved
    assert custom_dataset_name(*train) in DatasetCatalog.list() and custom_dataset_name(*val) in DatasetCatalog.list()
