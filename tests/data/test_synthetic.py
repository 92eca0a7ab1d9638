import filecmp
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from sd_detr.data import synthetic
from sd_detr.data.make_synthetic import make_synthetic_dataset
from sd_detr.data.datasets import get_detr_dataset_dicts
from sd_detr.data.synthetic import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_SPLIT_DOMAINS,
    SYNTHETIC_VAL_SHIFT_BACKGROUND_NAME,
    SYNTHETIC_VAL_SHIFT_NAME,
    SYNTHETIC_VAL_SHIFT_OBJECTS_NAME,
    default_synthetic_root,
    generate_synthetic_dataset,
    is_generated,
    register_synthetic_dataset,
    render_synthetic_image,
    synthetic_paths,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load(root, split):
    with open(synthetic_paths(root, split)[0]) as f:
        return json.load(f)


def _files(root):
    out = []
    for dirpath, _, names in os.walk(root):
        out += [os.path.relpath(os.path.join(dirpath, n), root) for n in names]
    return sorted(out)


def test_same_seed_gives_byte_identical_json_and_images(tmp_path, synthetic_root):
    other = str(tmp_path / "again")
    generate_synthetic_dataset(other, num_train=12, num_val=6, seed=0, progress=False)
    files = _files(synthetic_root)
    assert files == _files(other)
    # 12 train, 6 val, 6 in each of val_shift, val_shift_objects, val_shift_background
    assert len([f for f in files if f.endswith(".png")]) == 36
    match, mismatch, errors = filecmp.cmpfiles(synthetic_root, other, files, shallow=False)
    assert mismatch == [] and errors == []
    assert len(match) == len(files)


def test_different_seed_gives_different_data(tmp_path, synthetic_root):
    other = str(tmp_path / "seed1")
    generate_synthetic_dataset(other, num_train=3, num_val=1, seed=1, progress=False)
    with open(os.path.join(synthetic_root, "train", "000000.png"), "rb") as a, open(
        os.path.join(other, "train", "000000.png"), "rb"
    ) as b:
        assert a.read() != b.read()


def test_image_content_does_not_depend_on_the_number_of_images(tmp_path, synthetic_root):
    other = str(tmp_path / "fewer")
    generate_synthetic_dataset(other, num_train=2, num_val=1, seed=0, progress=False)
    for rel in ("train/000000.png", "train/000001.png", "val/000000.png"):
        a, b = os.path.join(synthetic_root, rel), os.path.join(other, rel)
        assert filecmp.cmp(a, b, shallow=False)


def test_json_is_valid_coco_with_boxes_inside_images(synthetic_root):
    from pycocotools.coco import COCO

    for split, num in (("train", 12), ("val", 6)):
        json_file, image_root = synthetic_paths(synthetic_root, split)
        coco = COCO(json_file)  # pycocotools accepts it
        data = _load(synthetic_root, split)
        assert set(data) >= {"images", "annotations", "categories"}
        assert [c["id"] for c in data["categories"]] == list(range(1, len(SYNTHETIC_CLASSES) + 1))
        assert [c["name"] for c in data["categories"]] == list(SYNTHETIC_CLASSES)
        assert len(data["images"]) == num
        images = {im["id"]: im for im in data["images"]}
        assert len(images) == num
        for im in data["images"]:
            path = os.path.join(image_root, im["file_name"])
            assert os.path.isfile(path)
            arr = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            assert arr.shape == (im["height"], im["width"], 3)
            assert 128 <= im["width"] <= 192 and 128 <= im["height"] <= 192
        ann_ids = [a["id"] for a in data["annotations"]]
        assert len(set(ann_ids)) == len(ann_ids)
        for a in data["annotations"]:
            im = images[a["image_id"]]
            x, y, w, h = a["bbox"]
            assert w > 0 and h > 0
            assert x >= 0 and y >= 0 and x + w <= im["width"] and y + h <= im["height"]
            assert 1 <= a["category_id"] <= len(SYNTHETIC_CLASSES)
            assert a["iscrowd"] == 0
            assert 0 < a["area"] <= w * h
        assert len(coco.getAnnIds()) == len(data["annotations"])


def test_several_classes_and_several_objects_per_image(synthetic_root):
    data = _load(synthetic_root, "train")
    classes = {a["category_id"] for a in data["annotations"]}
    assert len(classes) >= 4
    per_image = np.bincount([a["image_id"] for a in data["annotations"]], minlength=13)[1:]
    assert per_image.mean() >= 2.0
    assert per_image.min() >= 1 and per_image.max() <= 6


def test_train_and_val_differ(synthetic_root):
    train, val = _load(synthetic_root, "train"), _load(synthetic_root, "val")
    assert train["annotations"][:5] != val["annotations"][:5]
    assert not filecmp.cmp(
        os.path.join(synthetic_root, "train", "000000.png"),
        os.path.join(synthetic_root, "val", "000000.png"),
        shallow=False,
    )


def test_written_annotations_are_tight_boxes_of_visible_rendered_pixels(synthetic_root):
    data = _load(synthetic_root, "train")
    for index in range(4):
        image, objects = render_synthetic_image(synthetic._image_rng(0, "train", index), 128, 192)
        # the generator writes exactly what render_synthetic_image returns
        png = cv2.imread(os.path.join(synthetic_root, "train", f"{index:06d}.png"))
        np.testing.assert_array_equal(png[:, :, ::-1], image)
        annos = [a for a in data["annotations"] if a["image_id"] == index + 1]
        assert [a["bbox"] for a in annos] == [o["bbox"] for o in objects]
        assert [a["category_id"] - 1 for a in annos] == [o["category"] for o in objects]
        for obj in objects:
            mask = obj["mask"]
            x, y, w, h = (int(v) for v in obj["bbox"])
            assert mask.sum() == obj["area"]
            # all visible pixels lie in the box, and each side of the box touches the mask
            assert mask[y : y + h, x : x + w].sum() == mask.sum()
            assert mask[y, x : x + w].any() and mask[y + h - 1, x : x + w].any()
            assert mask[y : y + h, x].any() and mask[y : y + h, x + w - 1].any()


def test_objects_contrast_with_their_surroundings():
    rng = np.random.default_rng(123)
    contrasts = []
    for _ in range(10):
        image, objects = render_synthetic_image(rng)
        img = image.astype(np.float32)
        for obj in objects:
            mask = obj["mask"].astype(np.uint8)
            ring = cv2.dilate(mask, np.ones((5, 5), np.uint8)).astype(bool) & ~obj["mask"]
            if ring.sum() < 20:
                continue
            contrasts.append(np.linalg.norm(img[obj["mask"]].mean(0) - img[ring].mean(0)))
    assert len(contrasts) >= 20
    assert np.median(contrasts) > 60


def test_objects_sizes_and_aspect_ratios_vary(synthetic_root):
    boxes = np.array([a["bbox"] for a in _load(synthetic_root, "train")["annotations"]])
    sides = np.maximum(boxes[:, 2], boxes[:, 3])
    assert sides.min() < 25 and sides.max() > 50
    aspect = boxes[:, 2] / boxes[:, 3]
    assert aspect.min() < 0.8 and aspect.max() > 1.25


def test_is_generated_only_after_both_json_files_are_written(tmp_path):
    root = str(tmp_path / "d")
    assert not is_generated(root)
    summary = generate_synthetic_dataset(root, num_train=2, num_val=1, progress=False)
    assert is_generated(root)
    assert summary["train"]["images"] == 2 and summary["val"]["images"] == 1
    assert summary["train"]["annotations"] == len(_load(root, "train")["annotations"])
    assert not [f for f in _files(root) if ".tmp" in f]
    os.remove(synthetic_paths(root, "val")[0])
    assert not is_generated(root)


def test_default_root_follows_environment(monkeypatch):
    monkeypatch.delenv("SD_DETR_SYNTHETIC_ROOT", raising=False)
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    assert default_synthetic_root() == os.path.join("datasets", "sd_detr_synthetic")
    monkeypatch.setenv("DETECTRON2_DATASETS", "/data/d2")
    assert default_synthetic_root() == "/data/d2/sd_detr_synthetic"
    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", "/elsewhere/syn")
    assert default_synthetic_root() == "/elsewhere/syn"


def test_register_registers_both_splits_and_second_call_is_a_noop(synthetic_root):
    names = register_synthetic_dataset(synthetic_root)
    assert names == ("sd_detr_synthetic_train", "sd_detr_synthetic_val")
    loaders = {n: DatasetCatalog[n] for n in names}
    for name, num in zip(names, (12, 6)):
        assert MetadataCatalog.get(name).thing_classes == list(SYNTHETIC_CLASSES)
        assert MetadataCatalog.get(name).evaluator_type == "coco"
        records = DatasetCatalog.get(name)
        assert len(records) == num
        assert sum(len(r["annotations"]) for r in records) > num
        assert all(os.path.isfile(r["file_name"]) for r in records)
    assert register_synthetic_dataset(synthetic_root) == names
    assert {n: DatasetCatalog[n] for n in names} == loaders  # same loader functions: not redone


def test_register_generates_missing_data_on_first_load_and_reregisters_a_new_root(tmp_path, synthetic_root):
    """Registering a new root points the catalog at it and writes nothing; the first load generates the
    data with the registration's arguments (catches gen_kwargs dropped: 320 train images, not 3)."""
    new_root = str(tmp_path / "new")
    try:
        train, val = register_synthetic_dataset(new_root, num_train=3, num_val=2, progress=False)
        assert os.listdir(tmp_path) == []
        assert MetadataCatalog.get(train).json_file == synthetic_paths(new_root, "train")[0]
        assert len(DatasetCatalog.get(train)) == 3 and len(DatasetCatalog.get(val)) == 2
        assert is_generated(new_root)
        assert os.path.isfile(new_root + ".lock")
        assert MetadataCatalog.get(val).thing_classes == list(SYNTHETIC_CLASSES)
    finally:  # leave the catalog pointing to the shared fixture data for other tests
        register_synthetic_dataset(synthetic_root)
    assert len(DatasetCatalog.get(train)) == 12


# ------------------------------------------------------------------------------------------------
# Generated where first needed, never when a config is loaded (issue 23)
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def small_default_generation(monkeypatch, tmp_path):
    """The config registers with no generation arguments (320 train / 80 val images by default, ~20 s):
    make every generation small (3 train, 2 val and 2 per shifted split) and count the calls."""
    calls = []
    original = synthetic.generate_synthetic_dataset

    def small(root, **kwargs):
        calls.append(kwargs.get("splits"))
        return original(root, **{"num_train": 3, "num_val": 2, "progress": False, **kwargs})

    monkeypatch.setattr(synthetic, "generate_synthetic_dataset", small)
    return calls


def test_loading_a_config_writes_nothing_and_the_first_load_of_a_split_generates_once(
        tmp_path, monkeypatch, synthetic_root, small_default_generation):
    """LazyConfig.load of the data config and of a tiny project config creates no file under (or beside: the
    lock) $SD_DETR_SYNTHETIC_ROOT; DatasetCatalog.get generates the data once and loads them, a second get
    reads them again without regenerating. Catches the generation put back at registration (files after the
    load) and a loader that regenerates on every call (second call, new mtime)."""
    from detectron2.config import LazyConfig

    root = tmp_path / "syn"
    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", str(root))
    try:
        LazyConfig.load(os.path.join(REPO_ROOT, "configs", "common", "data", "synthetic.py"))
        LazyConfig.load(os.path.join(REPO_ROOT, "projects", "conditional_detr", "configs",
                                     "conditional_detr_tiny_synthetic.py"))
        assert os.listdir(tmp_path) == []  # no data, no folder, no lock file
        assert MetadataCatalog.get("sd_detr_synthetic_val").json_file == synthetic_paths(str(root), "val")[0]
        assert MetadataCatalog.get("sd_detr_synthetic_val").thing_classes == list(SYNTHETIC_CLASSES)
        assert small_default_generation == []

        records = DatasetCatalog.get("sd_detr_synthetic_val")
        assert len(records) == 2 and all(os.path.isfile(r["file_name"]) for r in records)
        assert [r["annotations"] for r in records] == [r["annotations"] for r in get_detr_dataset_dicts(
            "sd_detr_synthetic_val", filter_empty=False)]
        assert is_generated(str(root)) and len(small_default_generation) == 1  # every split, at once
        mtime = os.path.getmtime(synthetic_paths(str(root), "val")[0])
        assert len(DatasetCatalog.get("sd_detr_synthetic_val")) == 2
        assert len(DatasetCatalog.get("sd_detr_synthetic_train")) == 3
        assert len(small_default_generation) == 1
        assert os.path.getmtime(synthetic_paths(str(root), "val")[0]) == mtime
    finally:
        register_synthetic_dataset(synthetic_root)


def test_evaluator_and_checked_loading_of_a_split_not_generated_yet_generate_it(
        tmp_path, synthetic_root, small_default_generation):
    """COCOEvaluator reads the metadata's json_file when it is built (do_test builds it before the test
    loader; --eval-only loads nothing before), and get_detr_dataset_dicts checks the json_file before it
    calls the loader: both must generate a missing split first. Catches the hook left out of
    build_coco_evaluator (pycocotools: no such file) or of get_detr_dataset_dicts ('does not exist')."""
    from sd_detr.evaluation import build_coco_evaluator

    try:
        register_synthetic_dataset(str(tmp_path / "eval_first"))
        evaluator = build_coco_evaluator("sd_detr_synthetic_val_shift")
        json_file = synthetic_paths(str(tmp_path / "eval_first"), "val_shift")[0]
        assert evaluator._metadata.json_file == json_file  # the real file, not a converted cache
        assert len(evaluator._coco_api.getImgIds()) == 2
        assert not [f for f in _files(str(tmp_path)) if "coco_format" in f]

        register_synthetic_dataset(str(tmp_path / "load_first"))
        assert len(get_detr_dataset_dicts("sd_detr_synthetic_val", filter_empty=False)) == 2
        assert len(small_default_generation) == 2
    finally:
        register_synthetic_dataset(synthetic_root)


def test_register_without_generate_does_not_create_data(tmp_path, synthetic_root):
    root = str(tmp_path / "absent")
    try:
        register_synthetic_dataset(root, generate=False)
        assert not os.path.exists(root)
        assert MetadataCatalog.get("sd_detr_synthetic_val").image_root == os.path.join(root, "val")
        with pytest.raises(FileNotFoundError, match="make_synthetic_dataset"):
            get_detr_dataset_dicts("sd_detr_synthetic_val")
    finally:
        register_synthetic_dataset(synthetic_root)


def test_cli_generates_then_skips_unless_forced(tmp_path, capsys):
    """tools/make_synthetic_dataset.py's library function (what the tool prints is what it logs)."""
    root = str(tmp_path / "cli")
    args = dict(num_train=2, num_val=1, progress=False)
    assert make_synthetic_dataset(root, **args) is not None
    assert is_generated(root)
    assert "train: 2 images" in capsys.readouterr().out
    mtime = os.path.getmtime(synthetic_paths(root, "train")[0])
    assert make_synthetic_dataset(root, **args) is None
    assert "skipping" in capsys.readouterr().out
    assert os.path.getmtime(synthetic_paths(root, "train")[0]) == mtime
    assert make_synthetic_dataset(root, num_train=3, num_val=1, force=True, progress=False) is not None
    assert len(_load(root, "train")["images"]) == 3


@pytest.mark.slow  # a python + torch start-up (the tool's command line, as a user runs it)
def test_cli_help_shows_an_example():
    proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "tools", "make_synthetic_dataset.py"), "--help"],
                          cwd=REPO_ROOT, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "python tools/make_synthetic_dataset.py --root" in out
    assert "--force" in out


def _generate_in_child(root):
    synthetic._ensure_generated(root, num_train=4, num_val=2, progress=False)


def test_concurrent_processes_generate_only_once(tmp_path, monkeypatch):
    import multiprocessing

    root = str(tmp_path / "shared")
    calls = tmp_path / "calls.txt"
    original = synthetic.generate_synthetic_dataset

    def counting_generate(*args, **kwargs):
        with open(calls, "a") as f:
            f.write(f"{os.getpid()}\n")
        return original(*args, **kwargs)

    monkeypatch.setattr(synthetic, "generate_synthetic_dataset", counting_generate)
    ctx = multiprocessing.get_context("fork")  # children inherit the patched function
    procs = [ctx.Process(target=_generate_in_child, args=(root,)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert is_generated(root)
    assert len(calls.read_text().split()) == 1
    assert len(_load(root, "train")["images"]) == 4


# ------------------------------------------------------------------------------------------------
# The domain-shifted validation split (val_shift)
# ------------------------------------------------------------------------------------------------
# sha256 (first 16 hex digits) of what the generator made before val_shift existed (commit 3663316):
# the RGB pixels of images 0-2 of train and 0-1 of val (seed 0, sizes 128-192), and the two JSON files
# of generate_synthetic_dataset(num_train=3, num_val=2, seed=0).
_OLD_PIXELS = {
    ("train", 0): "646c1d9e0569e529",
    ("train", 1): "2132a9083cfe192d",
    ("train", 2): "20830103a1ce2900",
    ("val", 0): "bcacfc850807ae6b",
    ("val", 1): "b06dd336c9319260",
}
_OLD_JSON = {"train": "3bc82554432b5c95", "val": "ad0009c88219852b"}
# The same for val_shift before the one-change splits existed (commit f347099): images 0-1, and its JSON.
_OLD_SHIFT_PIXELS = {0: "bf6260a74e832135", 1: "0fbf7f40e5a90dab"}
_OLD_SHIFT_JSON = "7bc46af6e4d73266"


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()[:16]


def test_train_and_val_are_byte_identical_to_the_generator_before_val_shift(tmp_path):
    """Catches a shifted-domain change that draws one more random number (or alters a drawing step) in
    the seen domain: every train/val image and box would change and old results stop being comparable."""
    for (split, index), digest in _OLD_PIXELS.items():
        image, _ = render_synthetic_image(synthetic._image_rng(0, split, index), 128, 192)
        assert _sha(image.tobytes()) == digest, (split, index)
    root = str(tmp_path / "d")
    generate_synthetic_dataset(root, num_train=3, num_val=2, seed=0, progress=False)
    for split, digest in _OLD_JSON.items():
        with open(synthetic_paths(root, split)[0], "rb") as f:
            assert _sha(f.read()) == digest, split
        png = cv2.imread(os.path.join(root, split, "000000.png"))[:, :, ::-1]
        assert _sha(np.ascontiguousarray(png).tobytes()) == _OLD_PIXELS[(split, 0)]


def test_val_shift_is_byte_identical_to_the_generator_before_the_one_change_splits(tmp_path):
    """Catches the one-change domains altering what the full shift draws (e.g. the stripes' random
    numbers drawn for every domain): the new-domain AP already reported would no longer be reproducible."""
    for index, digest in _OLD_SHIFT_PIXELS.items():
        image, _ = render_synthetic_image(synthetic._image_rng(0, "val_shift", index), 128, 192, domain="shifted")
        assert _sha(image.tobytes()) == digest, index
    root = str(tmp_path / "d")
    generate_synthetic_dataset(root, num_train=3, num_val=2, seed=0, progress=False, splits=["val_shift"])
    with open(synthetic_paths(root, "val_shift")[0], "rb") as f:
        assert _sha(f.read()) == _OLD_SHIFT_JSON


def _max_neighbour_step(img: np.ndarray) -> np.ndarray:
    """L2 RGB difference of horizontally and vertically neighbouring pixels, flattened."""
    f = img.astype(np.float32)
    return np.concatenate([
        np.linalg.norm(f[:, 1:] - f[:, :-1], axis=2).ravel(),
        np.linalg.norm(f[1:] - f[:-1], axis=2).ravel(),
    ])


def test_shifted_backgrounds_are_a_texture_family_the_seen_ones_never_produce():
    """By construction: the seen backgrounds are smooth (steepest step < 120 in L2 RGB between neighbouring
    pixels, stripes included), every shifted background is a hard-edged checkerboard with steps >= 150 on
    a good part of its pixels. Catches val_shift drawing seen backgrounds (no shift) or low-contrast ones."""
    rng = np.random.default_rng(7)
    seen_max, shifted_frac = [], []
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(128, 193, size=2))
        seen_max.append(_max_neighbour_step(synthetic._background(rng, h, w)).max())
        step = _max_neighbour_step(synthetic._shifted_background(rng, h, w))
        shifted_frac.append((step >= 150).mean())
        assert np.all((step == 0) | (step >= 150))  # flat cells, hard edges: nothing in between
    assert max(seen_max) < 120
    assert min(shifted_frac) > 0.05


def _rendered_statistics(split: str, domain: str, n: int = 25):
    """Per image: fraction of background pixel steps >= 120; per object: fraction of its visible pixels
    farther than 45 (L2 RGB) from its median colour."""
    bg, spread = [], []
    for i in range(n):
        image, objects = render_synthetic_image(synthetic._image_rng(0, split, i), 128, 192, domain=domain)
        f = image.astype(np.float32)
        near_object = np.zeros(image.shape[:2], np.uint8)
        for obj in objects:
            near_object |= obj["mask"].astype(np.uint8)
        near_object = cv2.dilate(near_object, np.ones((3, 3), np.uint8)).astype(bool)
        step = np.linalg.norm(f[:, 1:] - f[:, :-1], axis=2)
        free = ~(near_object[:, 1:] | near_object[:, :-1])
        bg.append((step[free] >= 120).mean())
        for obj in objects:
            px = f[obj["mask"]]
            spread.append((np.linalg.norm(px - np.median(px, axis=0), axis=1) > 45).mean())
    return np.array(bg), np.array(spread)


def test_val_shift_backgrounds_and_object_colourings_are_disjoint_from_train():
    """The rendered images (noise included): no train image has hard-edged background texture and no train
    object more than one colour; every val_shift image and object has. Catches val_shift rendered with
    the seen domain (e.g. the split's domain not passed to the renderer) and one-colour 'stripes'."""
    train_bg, train_spread = _rendered_statistics("train", "seen")
    shift_bg, shift_spread = _rendered_statistics("val_shift", "shifted")
    assert train_bg.max() < 0.01 and shift_bg.min() > 0.05
    assert train_spread.max() < 0.05 and shift_spread.min() > 0.2
    assert len(train_spread) > 40 and len(shift_spread) > 40


def test_each_one_change_split_shifts_only_its_own_half():
    """val_shift_objects: seen smooth backgrounds, every object striped in two colours; val_shift_background:
    checkerboard behind every object, every object one flat colour. Catches the two switches swapped (each
    split would shift the other half), one ignored (no shift) or both applied (the full shift)."""
    bg, spread = _rendered_statistics("val_shift_objects", "shifted_objects")
    assert bg.max() < 0.01 and spread.min() > 0.2 and len(spread) > 40
    bg, spread = _rendered_statistics("val_shift_background", "shifted_background")
    assert bg.min() > 0.05 and spread.max() < 0.05 and len(spread) > 40


def test_one_change_splits_are_written_and_registered_with_their_domains(synthetic_root):
    """Each one-change split is a COCO split of the fixture rendered in its own domain, registered under its
    name with that domain (catches a split written with the wrong domain or left unregistered)."""
    register_synthetic_dataset(synthetic_root)
    for split, name in (("val_shift_objects", SYNTHETIC_VAL_SHIFT_OBJECTS_NAME),
                        ("val_shift_background", SYNTHETIC_VAL_SHIFT_BACKGROUND_NAME)):
        domain = SYNTHETIC_SPLIT_DOMAINS[split]
        data = _load(synthetic_root, split)
        assert data["info"]["domain"] == domain and data["info"]["split"] == split
        image, objects = render_synthetic_image(synthetic._image_rng(0, split, 0), domain=domain)
        png = cv2.imread(os.path.join(synthetic_paths(synthetic_root, split)[1], "000000.png"))[:, :, ::-1]
        np.testing.assert_array_equal(png, image)
        assert [a["bbox"] for a in data["annotations"] if a["image_id"] == 1] == [o["bbox"] for o in objects]
        assert MetadataCatalog.get(name).domain == domain
        assert len(DatasetCatalog.get(name)) == 6


def test_val_shift_has_the_same_shapes_and_placement_rules_as_train():
    """Only appearance shifts: the annotation statistics stay in the ranges of the seen domain (catches a
    shifted split whose objects got lost, e.g. all rejected as invisible on the checkerboard)."""
    counts, classes, sides = [], set(), []
    for i in range(25):
        image, objects = render_synthetic_image(synthetic._image_rng(0, "val_shift", i), domain="shifted")
        assert 128 <= image.shape[0] <= 192 and 128 <= image.shape[1] <= 192
        counts.append(len(objects))
        classes |= {o["category"] for o in objects}
        sides += [max(o["bbox"][2:]) for o in objects]
    assert classes == set(range(len(SYNTHETIC_CLASSES)))
    assert 1 <= min(counts) and max(counts) <= 6 and np.mean(counts) >= 2
    assert min(sides) < 25 and max(sides) > 50


def test_unknown_domain_or_split_is_rejected_by_name(tmp_path):
    with pytest.raises(ValueError, match="'tiled'"):
        render_synthetic_image(np.random.default_rng(0), domain="tiled")
    with pytest.raises(ValueError, match="test_shift"):
        generate_synthetic_dataset(str(tmp_path), splits=["test_shift"], progress=False)


def test_val_shift_split_is_written_as_coco_and_registered(synthetic_root):
    """val_shift is a third COCO split of the fixture, with its domain in the JSON and the catalog."""
    from pycocotools.coco import COCO

    json_file, image_root = synthetic_paths(synthetic_root, "val_shift")
    data = _load(synthetic_root, "val_shift")
    assert data["info"]["domain"] == "shifted" and data["info"]["split"] == "val_shift"
    assert "domain" not in _load(synthetic_root, "train")["info"]  # train JSON keeps its old bytes
    assert len(COCO(json_file).getImgIds()) == 6
    assert all(os.path.isfile(os.path.join(image_root, im["file_name"])) for im in data["images"])
    # the files are the shifted-domain renderings (not the seen domain's with another seed)
    image, objects = render_synthetic_image(synthetic._image_rng(0, "val_shift", 0), domain="shifted")
    np.testing.assert_array_equal(cv2.imread(os.path.join(image_root, "000000.png"))[:, :, ::-1], image)
    assert [a["bbox"] for a in data["annotations"] if a["image_id"] == 1] == [o["bbox"] for o in objects]
    register_synthetic_dataset(synthetic_root)
    records = DatasetCatalog.get(SYNTHETIC_VAL_SHIFT_NAME)
    assert len(records) == 6 and sum(len(r["annotations"]) for r in records) > 6
    assert MetadataCatalog.get(SYNTHETIC_VAL_SHIFT_NAME).domain == "shifted"
    assert MetadataCatalog.get("sd_detr_synthetic_val").domain == "seen"
    assert MetadataCatalog.get(SYNTHETIC_VAL_SHIFT_NAME).thing_classes == list(SYNTHETIC_CLASSES)


def test_missing_val_shift_is_added_without_touching_train_and_val(tmp_path, synthetic_root):
    """A dataset made before val_shift existed: loading a shifted split generates the shifted splits only
    (same seed and image sizes as the data, as many images as val) and leaves the train/val files as they
    were (other processes may be training on them). Catches a regeneration of the whole dataset."""
    root = str(tmp_path / "old")
    generate_synthetic_dataset(root, num_train=3, num_val=2, seed=5, min_size=100, max_size=120,
                               splits=("train", "val"), progress=False)
    assert not is_generated(root) and is_generated(root, ("train", "val"))
    before = {s: (os.path.getmtime(synthetic_paths(root, s)[0]), open(synthetic_paths(root, s)[0], "rb").read())
              for s in ("train", "val")}
    try:
        register_synthetic_dataset(root, progress=False)
        assert len(DatasetCatalog.get("sd_detr_synthetic_train")) == 3  # present: loading it generates nothing
        assert not is_generated(root, ("val_shift",))
        assert len(DatasetCatalog.get(SYNTHETIC_VAL_SHIFT_NAME)) == 2  # missing: generated on this first load
        assert is_generated(root)
        shift = _load(root, "val_shift")
        assert shift["info"]["seed"] == 5 and len(shift["images"]) == 2
        assert all(100 <= im["width"] <= 120 for im in shift["images"])
        for s, (mtime, data) in before.items():
            assert os.path.getmtime(synthetic_paths(root, s)[0]) == mtime
            assert open(synthetic_paths(root, s)[0], "rb").read() == data
    finally:
        register_synthetic_dataset(synthetic_root)


def test_cli_adds_a_missing_val_shift_split_only(tmp_path, capsys):
    root = str(tmp_path / "cli_old")
    generate_synthetic_dataset(root, num_train=2, num_val=1, seed=3, splits=("train", "val"), progress=False)
    mtime = os.path.getmtime(synthetic_paths(root, "train")[0])
    assert make_synthetic_dataset(root, progress=False) is not None
    out = capsys.readouterr().out
    assert "Adding the split(s) val_shift, val_shift_objects, val_shift_background" in out
    assert "val_shift: 1 images" in out and "val_shift_objects: 1 images" in out and "train:" not in out
    assert os.path.getmtime(synthetic_paths(root, "train")[0]) == mtime
    assert _load(root, "val_shift")["info"]["seed"] == 3
