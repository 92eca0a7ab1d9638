import copy
import logging

import numpy as np
import pytest
import torch
from detectron2.config import LazyCall as L
from detectron2.config import instantiate
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

import cv2
from sd_detr.data.datasets import get_detr_dataset_dicts
from sd_detr.data.mapper import (
    DETR_TRAIN_MIN_SIZES,
    DetrDatasetMapper,
    RandomChoice,
    build_detr_augmentations,
)
from sd_detr.data.synthetic import register_synthetic_dataset

# A 100x80 (W x H) dark image with one pure red rectangle covering x in [20, 60), y in [10, 40).
W, H = 100, 80
RECT_XYWH = [20.0, 10.0, 40.0, 30.0]

# DETR's augmentation scaled down so that tests are fast.
SMALL_TRAIN = dict(min_sizes=(64, 72, 80), max_size=128, crop_resize=(48, 56), crop_size=(32, 48))


@pytest.fixture(scope="module")
def red_rect_image(tmp_path_factory):
    img = np.full((H, W, 3), 30, np.uint8)
    img[10:40, 20:60] = (0, 0, 255)  # BGR for cv2: red
    path = str(tmp_path_factory.mktemp("mapper") / "rect.png")
    cv2.imwrite(path, img)
    return path


def _record(path, annotations=None):
    if annotations is None:
        annotations = [{"bbox": list(RECT_XYWH), "bbox_mode": BoxMode.XYWH_ABS, "category_id": 3,
                        "iscrowd": 0}]
    return {"file_name": path, "image_id": 7, "height": H, "width": W, "annotations": annotations}


def _small_train_mapper():
    augs = build_detr_augmentations(True, **SMALL_TRAIN)
    return DetrDatasetMapper(is_train=True, augmentations=augs)


def test_output_fields_dtypes_and_shapes(red_rect_image):
    np.random.seed(0)
    out = _small_train_mapper()(_record(red_rect_image))
    image = out["image"]
    assert image.dtype == torch.uint8 and image.dim() == 3 and image.shape[0] == 3
    h, w = image.shape[1:]
    inst = out["instances"]
    assert inst.image_size == (h, w)
    assert inst.gt_classes.dtype == torch.int64
    assert inst.gt_boxes.tensor.dtype == torch.float32 and inst.gt_boxes.tensor.shape[1] == 4
    boxes = inst.gt_boxes.tensor
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (out["height"], out["width"], out["image_id"]) == (H, W, 7)
    assert out["file_name"] == red_rect_image
    assert "annotations" not in out


def test_identity_mapping_gives_absolute_xyxy_boxes_and_rgb_channels(red_rect_image):
    mapper = DetrDatasetMapper(is_train=True, augmentations=[], image_format="RGB")
    out = mapper(_record(red_rect_image))
    assert out["instances"].gt_boxes.tensor.tolist() == [[20.0, 10.0, 60.0, 40.0]]
    assert out["instances"].gt_classes.tolist() == [3]
    assert out["image"][:, 20, 30].tolist() == [255, 0, 0]  # RGB
    mapper = DetrDatasetMapper(is_train=True, augmentations=[], image_format="BGR")
    out = mapper(_record(red_rect_image))
    assert out["image"][:, 20, 30].tolist() == [0, 0, 255]


def test_crowd_annotations_are_dropped(red_rect_image):
    annos = [
        {"bbox": list(RECT_XYWH), "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1, "iscrowd": 0},
        {"bbox": [0.0, 0.0, 50.0, 50.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 2,
         "iscrowd": 1},
    ]
    out = DetrDatasetMapper(is_train=True, augmentations=[])(_record(red_rect_image, annos))
    assert out["instances"].gt_classes.tolist() == [1]
    assert out["instances"].gt_boxes.tensor.tolist() == [[20.0, 10.0, 60.0, 40.0]]


@pytest.mark.parametrize("annotations", [[], None], ids=["empty list", "no annotations key"])
def test_image_without_annotations_gives_zero_instances(red_rect_image, annotations):
    record = _record(red_rect_image, annotations=[])
    if annotations is None:
        del record["annotations"]
    np.random.seed(1)
    out = _small_train_mapper()(record)
    inst = out["instances"]
    assert len(inst) == 0
    assert inst.gt_boxes.tensor.shape == (0, 4)
    assert inst.gt_classes.shape == (0,) and inst.gt_classes.dtype == torch.int64
    assert inst.image_size == tuple(out["image"].shape[1:])


def test_training_augmentation_keeps_boxes_on_the_object(red_rect_image):
    mapper = _small_train_mapper()
    record = _record(red_rect_image)
    checked, dropped, flipped = 0, 0, 0
    for seed in range(60):
        np.random.seed(seed)
        out = mapper(record)
        red = (out["image"][0] > 128) & (out["image"][1] < 100)  # red pixels of the output image
        boxes = out["instances"].gt_boxes.tensor
        if len(boxes) == 0:  # cropped out: then (almost) no red pixel may remain
            dropped += 1
            assert red.sum() <= 2
            continue
        assert len(boxes) == 1
        x0, y0, x1, y1 = boxes[0].tolist()
        inside = torch.zeros_like(red)
        inside[int(np.ceil(y0)) : int(np.floor(y1)), int(np.ceil(x0)) : int(np.floor(x1))] = True
        near = torch.zeros_like(red)  # the box grown by one pixel (interpolated edges)
        ys = slice(max(int(y0) - 1, 0), int(np.ceil(y1)) + 1)
        xs = slice(max(int(x0) - 1, 0), int(np.ceil(x1)) + 1)
        near[ys, xs] = True
        assert (red & ~near).sum() == 0  # no red pixel outside the box
        if inside.sum() >= 16:
            assert red[inside].float().mean() > 0.9  # pixels inside the box are red
            checked += 1
        # the rectangle is left of the image centre: a flip puts it right of the centre
        if (x0 + x1) / 2 > out["image"].shape[2] / 2:
            flipped += 1
    assert checked >= 40
    assert 10 <= flipped <= 50


def test_training_output_shorter_side_is_one_of_min_sizes(red_rect_image):
    mapper = _small_train_mapper()
    shorter_sides = set()
    for seed in range(40):
        np.random.seed(seed)
        shorter_sides.add(min(mapper(_record(red_rect_image))["image"].shape[1:]))
    assert shorter_sides <= set(SMALL_TRAIN["min_sizes"])
    assert len(shorter_sides) >= 2


def test_test_mapping_resizes_shorter_side_capped_by_max_size(tmp_path, red_rect_image):
    mapper = DetrDatasetMapper(
        is_train=False,
        augmentations=build_detr_augmentations(False, test_min_size=64, test_max_size=100),
    )
    out = mapper(_record(red_rect_image))
    assert tuple(out["image"].shape) == (3, 64, 80)  # 80x100 -> shorter side 64
    assert "instances" not in out and "annotations" not in out  # as detectron2 at inference
    assert (out["height"], out["width"]) == (H, W)  # original size, for the evaluator

    wide = str(tmp_path / "wide.png")
    cv2.imwrite(wide, np.zeros((40, 200, 3), np.uint8))
    out = mapper({"file_name": wide, "image_id": 1, "height": 40, "width": 200})
    assert tuple(out["image"].shape) == (3, 20, 100)  # 64/40 * 200 = 320 > 100: capped


def test_default_augmentations_match_detr():
    test_augs = build_detr_augmentations(False)
    assert len(test_augs) == 1 and isinstance(test_augs[0], T.ResizeShortestEdge)
    assert tuple(test_augs[0].short_edge_length) == (800, 800) and test_augs[0].max_size == 1333

    flip, choice = build_detr_augmentations(True)
    assert isinstance(flip, T.RandomFlip) and flip.prob == 0.5 and flip.horizontal
    assert isinstance(choice, RandomChoice) and choice.probs.tolist() == [0.5, 0.5]
    assert DETR_TRAIN_MIN_SIZES == (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)
    (resize,), (resize_a, crop, resize_b) = [c.augs for c in choice.choices]
    assert tuple(resize.short_edge_length) == DETR_TRAIN_MIN_SIZES and resize.max_size == 1333
    assert not resize.is_range
    assert tuple(resize_a.short_edge_length) == (400, 500, 600) and not resize_a.is_range
    assert isinstance(crop, T.RandomCrop)
    assert crop.crop_type == "absolute_range" and tuple(crop.crop_size) == (384, 600)
    assert tuple(resize_b.short_edge_length) == DETR_TRAIN_MIN_SIZES and resize_b.max_size == 1333


def _transform_types(tfm):
    return {type(t) for t in tfm.transforms}


def test_random_choice_picks_both_branches():
    aug = RandomChoice([[T.RandomFlip(prob=1.0)], [T.Resize((10, 12))]])
    image = np.zeros((20, 30, 3), np.uint8)
    seen = []
    for seed in range(50):
        np.random.seed(seed)
        aug_input = T.AugInput(image)
        tfm = aug(aug_input)
        assert isinstance(tfm, T.TransformList)
        types = _transform_types(tfm)
        seen.append(types)
        if T.ResizeTransform in types:
            assert aug_input.image.shape == (10, 12, 3)  # applied in place on the AugInput
        else:
            assert types == {T.HFlipTransform} and aug_input.image.shape == (20, 30, 3)
    n_flip = sum(T.HFlipTransform in s for s in seen)
    assert 10 <= n_flip <= 40 and sum(T.ResizeTransform in s for s in seen) == 50 - n_flip


def test_random_choice_respects_probabilities_and_get_transform():
    aug = RandomChoice([T.Resize((10, 12)), [T.RandomFlip(prob=1.0)]], probs=[0.0, 3.0])
    image = np.zeros((20, 30, 3), np.uint8)
    for seed in range(10):
        np.random.seed(seed)
        tfm = aug.get_transform(image)
        assert _transform_types(tfm) == {T.HFlipTransform}
    with pytest.raises(ValueError):
        RandomChoice([[T.RandomFlip()]], probs=[0.5, 0.5])
    assert "RandomChoice" in repr(aug)


def test_detr_augmentations_use_both_branches_inside_an_augmentation_list():
    augs = T.AugmentationList(build_detr_augmentations(True, **SMALL_TRAIN))
    image = np.zeros((100, 150, 3), np.uint8)
    with_crop = 0
    for seed in range(40):
        np.random.seed(seed)
        tfm = augs(T.AugInput(image))
        with_crop += T.CropTransform in _transform_types(tfm)
    assert 5 <= with_crop <= 35


def _crops_in_40_draws(**options):
    augs = T.AugmentationList(build_detr_augmentations(True, **SMALL_TRAIN, **options))
    image = np.zeros((100, 150, 3), np.uint8)
    crops = 0
    for seed in range(40):
        np.random.seed(seed)
        crops += T.CropTransform in _transform_types(augs(T.AugInput(image)))
    return crops


def test_crop_prob_zero_never_crops_and_one_always_crops():
    """Catches: crop_prob ignored (DETR's 0.5 kept, as `make demo`'s no-crop recipe would silently get), or its
    two branches' probabilities swapped (crop_prob 1 never cropping)."""
    assert _crops_in_40_draws(crop_prob=0.0) == 0
    assert _crops_in_40_draws(crop_prob=1.0) == 40
    assert 5 <= _crops_in_40_draws(crop_prob=0.5) <= 35
    flip, resize = build_detr_augmentations(True, **SMALL_TRAIN, crop_prob=0.0)  # no RandomChoice left
    assert isinstance(flip, T.RandomFlip) and isinstance(resize, T.ResizeShortestEdge)
    assert tuple(resize.short_edge_length) == SMALL_TRAIN["min_sizes"] and resize.max_size == SMALL_TRAIN["max_size"]


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_crop_prob_outside_zero_one_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="crop_prob"):
        build_detr_augmentations(True, crop_prob=bad)


def test_missing_image_file_error_names_the_file(tmp_path):
    path = str(tmp_path / "nope" / "missing.png")
    with pytest.raises(FileNotFoundError, match="missing.png") as excinfo:
        _small_train_mapper()(_record(path))
    assert path in str(excinfo.value)


def test_unreadable_image_file_error_names_the_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"this is not a png")
    with pytest.raises(OSError) as excinfo:
        _small_train_mapper()(_record(str(path)))
    assert str(path) in str(excinfo.value)


def test_mapper_can_be_built_from_a_lazy_config(red_rect_image):
    cfg = L(DetrDatasetMapper)(
        is_train=True,
        augmentations=L(build_detr_augmentations)(is_train=True, **SMALL_TRAIN),
        image_format="RGB",
    )
    mapper = instantiate(cfg)
    assert isinstance(mapper, DetrDatasetMapper)
    assert [type(a) for a in mapper.augmentations.augs] == [T.RandomFlip, RandomChoice]
    np.random.seed(0)
    assert len(mapper(_record(red_rect_image))["instances"]) in (0, 1)
    default = DetrDatasetMapper(is_train=False)
    assert isinstance(default.augmentations.augs[0], T.ResizeShortestEdge)


def test_maps_synthetic_dataset_records(synthetic_root):
    train, _ = register_synthetic_dataset(synthetic_root)
    dicts = get_detr_dataset_dicts(train)
    mapper = _small_train_mapper()
    np.random.seed(0)
    total = 0
    for record in dicts[:6]:
        out = mapper(record)
        h, w = out["image"].shape[1:]
        boxes = out["instances"].gt_boxes.tensor
        assert (boxes >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert ((out["instances"].gt_classes >= 0) & (out["instances"].gt_classes < 5)).all()
        total += len(boxes)
    assert total > 6


# ------------------------------------------------ bad images at training time (issue 11, fault 5)
def _bad_images(tmp_path):
    """(a PNG of another size than the record says, a truncated PNG), both with the record of rect.png."""
    wrong = tmp_path / "wrong_size.png"
    cv2.imwrite(str(wrong), np.zeros((H + 8, W, 3), np.uint8))
    good = cv2.imencode(".png", np.zeros((H, W, 3), np.uint8))[1].tobytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(good[: len(good) // 2])
    return str(wrong), str(cut)


def test_training_mapper_replaces_a_bad_image_with_a_counted_warning(tmp_path, red_rect_image, caplog):
    """Catches: one bad image ending a long run (Detectron2 raises), a warning on every draw of it, and a
    skipped sample returned as None (detectron2 0.6's MapDataset fallback crashes on Python 3.11)."""
    mapper = _small_train_mapper()
    wrong, cut = _bad_images(tmp_path)
    caplog.set_level(logging.WARNING, logger="sd_detr.data.mapper")
    np.random.seed(0)
    mapper(_record(red_rect_image))
    outputs = [mapper(_record(p)) for p in (wrong, cut, wrong)]
    assert all(o["file_name"] == red_rect_image and len(o["instances"]) <= 1 for o in outputs)
    assert mapper.num_skipped == 3
    warnings = [r.getMessage() for r in caplog.records if r.name == "sd_detr.data.mapper"]
    assert len(warnings) == 2  # once per file
    assert wrong in warnings[0] and "Mismatched image shape" in warnings[0] and "1 images skipped" in warnings[0]
    assert cut in warnings[1] and "2 images skipped" in warnings[1]


def test_train_loader_draws_batches_past_bad_images(tmp_path, red_rect_image):
    """The mapper inside Detectron2's train loader: batches keep coming."""
    from detectron2.data import build_detection_train_loader

    wrong, cut = _bad_images(tmp_path)
    records = [_record(p) for p in (red_rect_image, wrong, cut, wrong)]
    mapper = _small_train_mapper()
    mapper(records[0])  # a worker's first image must be good (nothing to replace it with yet)
    loader = build_detection_train_loader(dataset=records, mapper=mapper, total_batch_size=2, num_workers=0)
    batches = [b for _, b in zip(range(6), loader)]
    assert len(batches) == 6 and all(len(b) == 2 for b in batches)
    assert all(x["file_name"] == red_rect_image for b in batches for x in b)
    assert mapper.num_skipped > 0  # 12 draws from 4 records, 3 of them bad (none drawn: p = 4**-12)


def test_test_mapper_raises_for_a_bad_image_naming_it(tmp_path):
    """Catches: a skipped val image (its objects would count as missed without a word)."""
    from detectron2.data.detection_utils import SizeMismatchError

    wrong, _ = _bad_images(tmp_path)
    mapper = DetrDatasetMapper(is_train=False, augmentations=build_detr_augmentations(False))
    with pytest.raises(SizeMismatchError, match="wrong_size.png"):
        mapper(_record(wrong))


@pytest.mark.parametrize("option", ["vertical_flip", "rotate90"])
def test_small_data_options_rotate_and_flip_vertically_keeping_boxes_on_the_object(red_rect_image, option):
    """Bug caught: vertical_flip / rotate90 ignored, or the boxes not following a rotation (the red
    rectangle, in the top-left quarter, must stay inside its box wherever it is moved)."""
    augs = build_detr_augmentations(True, **SMALL_TRAIN, **{option: True})
    mapper = DetrDatasetMapper(is_train=True, augmentations=augs)
    record = _record(red_rect_image)
    below, portrait, checked = 0, 0, 0
    for seed in range(80):
        np.random.seed(seed)
        out = mapper(record)
        boxes = out["instances"].gt_boxes.tensor
        if len(boxes) == 0:
            continue
        h, w = out["image"].shape[1:]
        red = (out["image"][0] > 128) & (out["image"][1] < 100)
        x0, y0, x1, y1 = boxes[0].tolist()
        near = torch.zeros_like(red)
        near[max(int(y0) - 1, 0): int(np.ceil(y1)) + 1, max(int(x0) - 1, 0): int(np.ceil(x1)) + 1] = True
        assert (red & ~near).sum() == 0
        inside = torch.zeros_like(red)
        inside[int(np.ceil(y0)): int(np.floor(y1)), int(np.ceil(x0)): int(np.floor(x1))] = True
        if inside.sum() >= 16:
            assert red[inside].float().mean() > 0.9
            checked += 1
        below += (y0 + y1) / 2 > h / 2  # only a vertical flip or a rotation moves it to the bottom half
        portrait += (y1 - y0) > 1.2 * (x1 - x0)  # the 40x30 rectangle turned by 90 or 270 degrees
    assert checked >= 30 and below >= 10  # each option alone moves it to the bottom half
    assert (portrait >= 5) == (option == "rotate90")


def test_brightness_and_contrast_change_pixels_not_boxes(red_rect_image):
    plain = DetrDatasetMapper(is_train=True, augmentations=build_detr_augmentations(True, **SMALL_TRAIN))
    jitter = DetrDatasetMapper(is_train=True, augmentations=build_detr_augmentations(
        True, **SMALL_TRAIN, brightness=(0.5, 0.6), contrast=(1.0, 1.0)))
    record = _record(red_rect_image)
    np.random.seed(3)
    a = plain(record)
    np.random.seed(3)
    b = jitter(record)
    assert torch.equal(a["instances"].gt_boxes.tensor, b["instances"].gt_boxes.tensor)
    assert b["image"].float().mean() < 0.7 * a["image"].float().mean()
    with pytest.raises(ValueError, match="brightness"):
        build_detr_augmentations(True, brightness=(1.2, 0.8))


def test_16_bit_grayscale_png_is_scaled_to_8_bits(tmp_path):
    """Catches a 16-bit grayscale PNG read through PIL's convert("RGB"), which clips every value above 255
    to 255 (the image was read as all white): 0 -> 0, 257 -> 1, 32768 -> 128, 65535 -> 255, in every
    channel, and the mapper's image is the scaled one."""
    from sd_detr.data.mapper import read_image

    values = np.array([[0, 257, 32768, 65535]], np.uint16).repeat(3, axis=0)  # 3 x 4 pixels
    path = str(tmp_path / "gray16.png")
    cv2.imwrite(path, values)
    expected = np.array([0, 1, 128, 255], np.uint8)
    rgb = read_image(path, "RGB")
    assert rgb.dtype == np.uint8 and rgb.shape == (3, 4, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[0, :, channel], expected)
    np.testing.assert_array_equal(read_image(path, "L")[1, :, 0], expected)
    mapper = DetrDatasetMapper(is_train=False, augmentations=[])
    out = mapper({"file_name": path, "image_id": 1, "height": 3, "width": 4})
    np.testing.assert_array_equal(out["image"][0, 0].numpy(), expected)


def test_16_bit_rgb_png_keeps_its_channel_order_and_high_byte(tmp_path):
    """Catches the 16-bit path applied to colour images too or swapping their channels: PIL reads a 48-bit
    PNG as 8-bit RGB (the high byte: 32768 -> 128)."""
    from sd_detr.data.mapper import read_image

    bgr = np.zeros((2, 2, 3), np.uint16)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 65535, 32768, 0  # cv2 writes BGR
    path = str(tmp_path / "rgb16.png")
    cv2.imwrite(path, bgr)
    np.testing.assert_array_equal(read_image(path, "RGB")[0, 0], [0, 128, 255])
    np.testing.assert_array_equal(read_image(path, "BGR")[0, 0], [255, 128, 0])


def _random_annotations(rng, n, width, height):
    """``n`` annotations in mixed box modes (XYWH_ABS and XYXY_ABS), some crowd, some partly or wholly
    outside the image (so that clipping and the empty-box filter both act), some of zero size."""
    annos = []
    for i in range(n):
        x0, y0 = rng.uniform(-0.3 * width, 1.1 * width), rng.uniform(-0.3 * height, 1.1 * height)
        bw, bh = (0.0 if i % 7 == 3 else rng.uniform(0.5, 0.6 * width)), rng.uniform(0.5, 0.6 * height)
        if i % 2:
            bbox, mode = [x0, y0, bw, bh], BoxMode.XYWH_ABS
        else:
            bbox, mode = [x0, y0, x0 + bw, y0 + bh], BoxMode.XYXY_ABS
        annos.append({"bbox": [float(v) for v in bbox], "bbox_mode": mode, "category_id": int(rng.integers(0, 5)),
                      "iscrowd": int(i % 5 == 1)})
    return annos


@pytest.mark.parametrize("seed", range(6))
def test_all_at_once_box_transform_equals_detectron2s_per_annotation_path(red_rect_image, seed):
    """The mapper transforms an image's boxes in one call (boxes only); the Instances must equal, bit for
    bit, detectron2's DatasetMapper._transform_annotations (per annotation) under the same random
    flip / resize / crop, with crowd, clipped, emptied and zero-size boxes among them."""
    from detectron2.data import DatasetMapper

    rng = np.random.default_rng(seed)
    mapper = DetrDatasetMapper(is_train=True, augmentations=build_detr_augmentations(True, **SMALL_TRAIN))
    for _ in range(8):
        record = _record(red_rect_image, _random_annotations(rng, 12, W, H))
        image = np.zeros((H, W, 3), np.uint8)
        aug_input = T.AugInput(image)
        transforms = mapper.augmentations(aug_input)
        shape = aug_input.image.shape[:2]
        ours, reference = dict(record), copy.deepcopy(record)
        mapper._transform_annotations(ours, transforms, shape)
        DatasetMapper._transform_annotations(mapper, reference, transforms, shape)
        a, b = ours["instances"], reference["instances"]
        assert a.image_size == b.image_size
        assert a.gt_boxes.tensor.dtype == b.gt_boxes.tensor.dtype == torch.float32
        assert torch.equal(a.gt_boxes.tensor, b.gt_boxes.tensor)
        assert torch.equal(a.gt_classes, b.gt_classes) and a.gt_classes.dtype == torch.int64
    # and it is a real comparison: the annotations kept, clipped and dropped all occur
    assert 0 < len(b) < 12


def test_mapping_leaves_the_dataset_record_unchanged(red_rect_image):
    """The record is the dataset's (used again next epoch): mapping must not change its annotations."""
    record = _record(red_rect_image)
    before = copy.deepcopy(record)
    np.random.seed(0)
    for _ in range(3):
        _small_train_mapper()(record)
    assert record == before


def _count_reads(monkeypatch):
    """Make the mapper's image reader record each file it reads (in the returned list) and return a writable
    array, as some readers do (PIL's np.asarray happens to be read-only already)."""
    import sd_detr.data.mapper as mapper_module

    reads = []
    real_read = mapper_module.read_image
    monkeypatch.setattr(mapper_module, "read_image",
                        lambda *a, **k: reads.append(a[0]) or real_read(*a, **k).copy())
    return reads


def test_cached_images_are_read_once_and_equal_to_a_fresh_read(red_rect_image, monkeypatch):
    reads = _count_reads(monkeypatch)
    cached = DetrDatasetMapper(is_train=False, augmentations=[], cache_images=True)
    fresh = DetrDatasetMapper(is_train=False, augmentations=[])
    first, second = cached(_record(red_rect_image)), cached(_record(red_rect_image))
    assert reads == [red_rect_image]  # the second mapping took the cached image
    reference = fresh(_record(red_rect_image))["image"]
    assert torch.equal(first["image"], reference) and torch.equal(second["image"], reference)
    # the cached array is protected: a transform writing into it would change every later epoch
    cached_image = cached._image_cache[red_rect_image]
    with pytest.raises(ValueError):
        cached_image[0, 0, 0] = 1
    # the model input is the mapper's own copy, not a view of the cache
    first["image"][0, 0, 0] += 1
    assert torch.equal(cached(_record(red_rect_image))["image"], reference)


def test_without_cache_every_mapping_reads_the_file(red_rect_image, monkeypatch):
    reads = _count_reads(monkeypatch)
    mapper = DetrDatasetMapper(is_train=False, augmentations=[])
    mapper(_record(red_rect_image)), mapper(_record(red_rect_image))
    assert reads == [red_rect_image, red_rect_image]
