import json
import logging
import math
import os
import uuid

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

from sd_detr.data.datasets import get_detr_dataset_dicts
from sd_detr.data.synthetic import SYNTHETIC_CLASSES, register_synthetic_dataset

LOGGER_NAME = "sd_detr.data.datasets"


@pytest.fixture
def registry():
    """Registers COCO-json datasets under unique names; removes them afterwards."""
    names = []

    def register(tmp_path, content, images=("a.png",), raw=False):
        name = f"test_sd_detr_{uuid.uuid4().hex[:8]}"
        image_root = tmp_path / "images"
        image_root.mkdir(exist_ok=True)
        for file_name in images:
            cv2.imwrite(str(image_root / file_name), np.zeros((20, 30, 3), np.uint8))
        json_file = tmp_path / f"{name}.json"
        json_file.write_text(content if raw else json.dumps(content))
        register_coco_instances(name, {}, str(json_file), str(image_root))
        names.append(name)
        return name, str(json_file), str(image_root)

    yield register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.fixture
def warnings_log(caplog):
    """caplog attached directly to the module's logger (robust to loggers that do not propagate)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(caplog.handler)
    propagate = logger.propagate
    logger.propagate = False
    caplog.handler.setLevel(logging.WARNING)
    yield caplog
    logger.propagate = propagate
    logger.removeHandler(caplog.handler)


def _coco(annotations, images=None):
    images = images or [{"id": 1, "file_name": "a.png", "width": 30, "height": 20}]
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "thing"}, {"id": 2, "name": "other"}],
    }


def _ann(ann_id, bbox, image_id=1, category_id=1, iscrowd=0):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox,
            "area": 1.0, "iscrowd": iscrowd}


@pytest.mark.parametrize(
    "content, what",
    [
        ("[1, 2, 3]", "a list instead of an object"),
        ('{"images": [', "a JSON syntax error"),
        (
            json.dumps({"images": {"id": 1}, "annotations": [], "categories": []}),
            "images not a list",
        ),
        (
            json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 30, "height": 20}],
                        "annotations": [],
                        }),
            "no categories",
        ),
    ],
)
def test_non_coco_json_raises_value_error_naming_dataset_and_json_file(
    tmp_path, registry, content, what
):
    name, json_file, _ = registry(tmp_path, content, raw=True)
    with pytest.raises(ValueError) as excinfo:
        get_detr_dataset_dicts(name)
    message = str(excinfo.value)
    assert json_file in message, what
    assert name in message
    assert excinfo.value.__cause__ is not None  # chained with the loader's error


def test_json_syntax_error_is_chained_to_the_decode_error(tmp_path, registry):
    name, json_file, _ = registry(tmp_path, '{"images": [}', raw=True)
    with pytest.raises(ValueError, match="not valid COCO") as excinfo:
        get_detr_dataset_dicts(name)
    assert isinstance(excinfo.value.__cause__, json.JSONDecodeError)


def test_json_without_annotations_key_raises_value_error(tmp_path, registry):
    content = _coco([])
    del content["annotations"]
    name, json_file, _ = registry(tmp_path, content)
    with pytest.raises(ValueError, match="annotations") as excinfo:
        get_detr_dataset_dicts(name)
    assert json_file in str(excinfo.value)
    # allowed explicitly, e.g. for image-info-only files like COCO test-dev
    dicts = get_detr_dataset_dicts(name, require_annotations=False)
    assert len(dicts) == 1 and dicts[0]["annotations"] == []


def test_json_without_images_raises_value_error(tmp_path, registry):
    content = _coco([_ann(1, [1, 1, 5, 5])])
    content["images"] = []
    name, json_file, _ = registry(tmp_path, content)
    with pytest.raises(ValueError, match="empty") as excinfo:
        get_detr_dataset_dicts(name)
    assert json_file in str(excinfo.value)


def test_missing_json_file_raises_file_not_found_naming_it(tmp_path, registry):
    name, json_file, _ = registry(tmp_path, _coco([]))
    os.remove(json_file)
    with pytest.raises(FileNotFoundError) as excinfo:
        get_detr_dataset_dicts(name)
    assert json_file in str(excinfo.value) and name in str(excinfo.value)


def test_unregistered_dataset_raises_key_error():
    with pytest.raises(KeyError, match="not registered"):
        get_detr_dataset_dicts("sd_detr_no_such_dataset")


def test_malformed_bbox_raises_value_error_naming_json_file(tmp_path, registry):
    name, json_file, _ = registry(tmp_path, _coco([_ann(1, [1, 2, 3])]))
    with pytest.raises(ValueError, match="malformed box") as excinfo:
        get_detr_dataset_dicts(name)
    assert json_file in str(excinfo.value)


def test_degenerate_boxes_are_dropped_with_one_warning(tmp_path, registry, warnings_log):
    images = [
        {"id": 1, "file_name": "a.png", "width": 30, "height": 20},
        {"id": 2, "file_name": "b.png", "width": 30, "height": 20},
        {"id": 3, "file_name": "c.png", "width": 30, "height": 20},
    ]
    annotations = [
        _ann(1, [2, 3, 10, 8]),  # valid
        _ann(2, [5, 5, 0, 4]),  # w = 0
        _ann(3, [1, 1, float("nan"), 4]),  # NaN
        _ann(4, [4, 4, 6, -2], image_id=2),  # negative h
        _ann(5, [0, 0, 5, 5], image_id=2, iscrowd=1),  # valid crowd box: kept in the dicts
    ]
    name, _, _ = registry(tmp_path, _coco(annotations, images), images=("a.png", "b.png", "c.png"))
    dicts = get_detr_dataset_dicts(name)

    assert [d["image_id"] for d in dicts] == [1, 2, 3]  # images without boxes are kept
    boxes = {d["image_id"]: [a["bbox"] for a in d["annotations"]] for d in dicts}
    assert boxes == {1: [[2, 3, 10, 8]], 2: [[0, 0, 5, 5]], 3: []}
    assert dicts[1]["annotations"][0]["iscrowd"] == 1
    for d in dicts:
        for a in d["annotations"]:
            assert all(math.isfinite(v) for v in a["bbox"])

    records = [r for r in warnings_log.records if r.levelno == logging.WARNING]
    assert len(records) == 1
    message = records[0].getMessage()
    assert name in message
    assert "dropped 3 degenerate boxes" in message
    assert "from 2 images" in message
    assert "a.png" in message and "b.png" in message


def test_filter_empty_drops_images_without_non_crowd_boxes(tmp_path, registry):
    images = [
        {"id": 1, "file_name": "a.png", "width": 30, "height": 20},
        {"id": 2, "file_name": "b.png", "width": 30, "height": 20},
        {"id": 3, "file_name": "c.png", "width": 30, "height": 20},
    ]
    annotations = [
        _ann(1, [2, 3, 10, 8]),
        _ann(2, [4, 4, 0, 2], image_id=2),  # degenerate: image 2 ends up empty
        _ann(3, [0, 0, 5, 5], image_id=3, iscrowd=1),  # crowd only
    ]
    name, _, _ = registry(tmp_path, _coco(annotations, images), images=("a.png", "b.png", "c.png"))
    assert [d["image_id"] for d in get_detr_dataset_dicts(name, filter_empty=True)] == [1]
    assert len(get_detr_dataset_dicts(name, filter_empty=False)) == 3


def test_degenerate_boxes_in_xyxy_mode_are_dropped(warnings_log):
    name = f"test_sd_detr_xyxy_{uuid.uuid4().hex[:8]}"
    from detectron2.structures import BoxMode

    def load():
        return [
            {
                "file_name": "unused.png", "image_id": 0, "height": 10, "width": 10,
                "annotations": [
                    {"bbox": [1, 1, 5, 5], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0},
                    {"bbox": [5, 1, 5, 6], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0},
                    {"bbox": [5, 1, 4, 6], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0},
                ],
            }
        ]

    DatasetCatalog.register(name, load)
    try:
        dicts = get_detr_dataset_dicts(name, check_images=False)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert [a["bbox"] for a in dicts[0]["annotations"]] == [[1, 1, 5, 5]]
    assert "dropped 2 degenerate boxes" in warnings_log.records[0].getMessage()


def test_missing_image_file_raises_file_not_found_naming_it(tmp_path, registry):
    images = [
        {"id": 1, "file_name": "a.png", "width": 30, "height": 20},
        {"id": 2, "file_name": "missing.png", "width": 30, "height": 20},
    ]
    name, _, image_root = registry(tmp_path, _coco([_ann(1, [1, 1, 4, 4])], images))
    with pytest.raises(FileNotFoundError) as excinfo:
        get_detr_dataset_dicts(name)
    message = str(excinfo.value)
    assert os.path.join(image_root, "missing.png") in message
    assert "1 of 2" in message and name in message
    # the check can be turned off
    assert len(get_detr_dataset_dicts(name, check_images=False)) == 2


def test_valid_dataset_loads_without_warnings(synthetic_root, warnings_log):
    train, val = register_synthetic_dataset(synthetic_root)
    dicts = get_detr_dataset_dicts([train])
    assert len(dicts) == 12
    assert sum(len(d["annotations"]) for d in dicts) > 12
    category_ids = [a["category_id"] for d in dicts for a in d["annotations"]]
    assert all(0 <= c < len(SYNTHETIC_CLASSES) for c in category_ids)
    assert warnings_log.records == []
    assert len(get_detr_dataset_dicts([train, val])) == 18


# ------------------------------------------------ images checked up front (issue 11, fault 5)
def _png_bytes(w, h):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (h, w, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_image_of_another_size_than_the_json_is_an_error_naming_file_and_both_sizes(tmp_path, registry):
    """Catches: the SizeMismatchError of Detectron2's mapper hours into training instead of up front."""
    images = [
        {"id": 1, "file_name": "a.png", "width": 30, "height": 20},
        {"id": 2, "file_name": "b.png", "width": 20, "height": 30},  # the file is 30x20: swapped
    ]
    name, json_file, image_root = registry(tmp_path, _coco([_ann(1, [1, 1, 4, 4])], images),
                                           images=("a.png", "b.png"))
    with pytest.raises(ValueError) as excinfo:
        get_detr_dataset_dicts(name)
    message = str(excinfo.value)
    assert os.path.join(image_root, "b.png") in message and "a.png" not in message.split("would fail")[1]
    assert "30x20 (width x height)" in message and "says 20x30" in message
    assert "1 of 2 images" in message and json_file in message
    # only existence checked: loads (the training mapper would replace the image with a warning)
    assert len(get_detr_dataset_dicts(name, check_images="exists")) == 2


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_image_is_found_from_its_header_check(tmp_path, registry, suffix):
    """A PNG/JPEG cut short (a copy interrupted): its header and size are fine, decoding fails.
    Catches: a check that only opens the header (PIL reads the size without decoding)."""
    from PIL import Image

    images = [{"id": 1, "file_name": "a.png", "width": 30, "height": 20},
              {"id": 2, "file_name": f"cut{suffix}", "width": 30, "height": 20}]
    name, _, image_root = registry(tmp_path, _coco([_ann(1, [1, 1, 4, 4])], images))
    path = os.path.join(image_root, f"cut{suffix}")
    Image.fromarray(np.random.RandomState(1).randint(0, 255, (20, 30, 3), np.uint8)).save(path)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) * 2 // 3])
    with Image.open(path) as image:
        assert image.size == (30, 20)  # the header alone looks fine
    with pytest.raises(ValueError, match=f"cut{suffix}: cannot be read"):
        get_detr_dataset_dicts(name)
    with pytest.raises(ValueError, match=f"cut{suffix}: cannot be read"):
        get_detr_dataset_dicts(name, check_images="full")
    assert len(get_detr_dataset_dicts(name, check_images="none")) == 2


def test_jpeg_with_bytes_after_its_end_marker_is_accepted(tmp_path, registry):
    """Catches: a truncation test that rejects valid files (JPEG writers may pad after EOI)."""
    from PIL import Image

    images = [{"id": 1, "file_name": "padded.jpg", "width": 30, "height": 20}]
    name, _, image_root = registry(tmp_path, _coco([_ann(1, [1, 1, 4, 4])], images), images=())
    path = os.path.join(image_root, "padded.jpg")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path)
    with open(path, "ab") as f:
        f.write(b"\x00" * 100)
    assert len(get_detr_dataset_dicts(name)) == 1


def test_exif_rotated_jpeg_is_compared_after_rotation_like_read_image(tmp_path, registry):
    """A phone photo stored 30x20 with EXIF orientation 6 is 20x30 once Detectron2's read_image rotates it.
    Catches: comparing the stored size (rejecting a good dataset, accepting one the mapper rejects)."""
    from PIL import Image

    images = [{"id": 1, "file_name": "rotated.jpg", "width": 20, "height": 30}]
    name, _, image_root = registry(tmp_path, _coco([_ann(1, [1, 1, 4, 4])], images), images=())
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(os.path.join(image_root, "rotated.jpg"),
                                                          exif=exif.tobytes())
    assert len(get_detr_dataset_dicts(name)) == 1
    from detectron2.data.detection_utils import read_image

    assert read_image(os.path.join(image_root, "rotated.jpg")).shape[:2] == (30, 20)


def test_unknown_check_images_mode_is_an_error_naming_it(tmp_path, registry):
    name, _, _ = registry(tmp_path, _coco([_ann(1, [1, 1, 4, 4])]))
    with pytest.raises(ValueError, match="check_images='headers'.*'header'"):
        get_detr_dataset_dicts(name, check_images="headers")


# ------------------------------------------------ boxes outside their image (issue 11, fault 7)
def test_boxes_wholly_outside_the_image_are_dropped_and_counted(tmp_path, registry, warnings_log):
    """Catches: boxes with no pixel in the image kept silently (they train the model on nothing), and
    boxes partly inside dropped (the mapper clips those)."""
    images = [{"id": 1, "file_name": "a.png", "width": 30, "height": 20},
              {"id": 2, "file_name": "b.png", "width": 30, "height": 20}]
    annotations = [
        _ann(1, [2, 3, 10, 8]),  # inside
        _ann(2, [25, 15, 10, 10]),  # partly outside: kept
        _ann(3, [30, 5, 4, 4]),  # starts at the right edge: outside
        _ann(4, [-10, 2, 10, 5], image_id=2),  # ends at the left edge: outside
        _ann(5, [5, 40, 3, 3], image_id=2),  # below the image
        _ann(6, [5, 5, 0, 3], image_id=2),  # degenerate, counted apart
    ]
    name, _, image_root = registry(tmp_path, _coco(annotations, images), images=("a.png", "b.png"))
    dicts = get_detr_dataset_dicts(name)
    assert [[a["bbox"] for a in d["annotations"]] for d in dicts] == [[[2, 3, 10, 8], [25, 15, 10, 10]], []]
    messages = [r.getMessage() for r in warnings_log.records if r.levelno == logging.WARNING]
    outside = [m for m in messages if "outside the image" in m]
    assert len(outside) == 1, messages
    assert "dropped 3 boxes outside the image" in outside[0] and "from 2 images" in outside[0]
    assert os.path.join(image_root, "a.png") in outside[0] and os.path.join(image_root, "b.png") in outside[0]
    assert "30x20" in outside[0]
    assert any("dropped 1 degenerate boxes" in m for m in messages)


def test_relative_boxes_are_tested_against_the_unit_square(warnings_log):
    """Catches: relative boxes compared with the image size in pixels (all kept) or rotated boxes dropped."""
    from detectron2.structures import BoxMode

    name = f"test_sd_detr_rel_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: [{
        "file_name": "unused.png", "image_id": 0, "height": 100, "width": 100,
        "annotations": [
            {"bbox": [0.1, 0.1, 0.5, 0.5], "bbox_mode": BoxMode.XYXY_REL, "category_id": 0},
            {"bbox": [1.2, 0.1, 1.5, 0.5], "bbox_mode": BoxMode.XYXY_REL, "category_id": 0},
            {"bbox": [500, 500, 10, 10, 30], "bbox_mode": BoxMode.XYWHA_ABS, "category_id": 0},
        ],
    }])
    try:
        dicts = get_detr_dataset_dicts(name, check_images=False)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert [a["bbox"][0] for a in dicts[0]["annotations"]] == [0.1, 500]
    assert "dropped 1 boxes outside the image" in warnings_log.text


def test_duplicate_image_ids_are_an_error_naming_the_ids_and_files(tmp_path, registry):
    """Catches duplicate image ids loading silently: pycocotools keys images by id, so the second image
    was trained and evaluated with the boxes of both (issue 22: AP 3.10 became 5.85)."""
    images = [{"id": 1, "file_name": "a.png", "width": 30, "height": 20},
              {"id": 1, "file_name": "b.png", "width": 30, "height": 20},
              {"id": 2, "file_name": "c.png", "width": 30, "height": 20}]
    content = _coco([_ann(1, [1, 1, 5, 5]), _ann(2, [2, 2, 5, 5], image_id=2)], images=images)
    name, json_file, _ = registry(tmp_path, content, images=("a.png", "b.png", "c.png"))
    with pytest.raises(ValueError, match="image ids are used by more than one image") as excinfo:
        get_detr_dataset_dicts(name)
    message = str(excinfo.value)
    assert json_file in message and "id 1: a.png, b.png" in message
    assert "id 2" not in message  # only the duplicated id is named
    # check_json=False skips the second parse (and the check): Detectron2's loader keeps one image per id
    assert len(get_detr_dataset_dicts(name, check_json=False)) == 2


@pytest.mark.parametrize("change, words", [
    (lambda a: a.update(bbox=[1, "2", 5, 5]), ["malformed box", "'2' (str)"]),
    (lambda a: a.pop("bbox"), ["no 'bbox'"]),
    (lambda a: a.update(category_id="1"), ["category_id '1' (str) is not an integer"]),
    (lambda a: a.update(category_id=7), ["category_id 7 is not one of the ids"]),
], ids=["string coordinate", "no bbox", "string category_id", "unknown category_id"])
def test_malformed_annotation_is_an_error_at_load_naming_the_file_and_annotation_id(tmp_path, registry, change, words):
    """Catches malformed annotations passing the load: a string coordinate failed at iteration 13 in the
    mapper without a file name (or changed val AP silently), a missing bbox failed in the mapper, a
    string category_id failed with a bare KeyError. The error must come from get_detr_dataset_dicts and
    name the JSON file and the annotation's id (47), not the good one's (46)."""
    bad = _ann(47, [1, 1, 5, 5])
    change(bad)
    name, json_file, _ = registry(tmp_path, _coco([_ann(46, [2, 2, 5, 5]), bad]))
    with pytest.raises(ValueError) as excinfo:
        get_detr_dataset_dicts(name)
    message = str(excinfo.value)
    assert json_file in message and "annotation id 47" in message and "annotation id 46" not in message
    for word in words:
        assert word in message, (word, message)


def test_all_crowd_annotations_are_an_error_naming_the_file(tmp_path, registry):
    """Catches a dataset whose every box is a crowd region (dropped by the mapper, ignored by COCOeval)
    loading as if it had objects: training learned nothing and the evaluation scored nothing, silently."""
    name, json_file, _ = registry(tmp_path, _coco([_ann(1, [1, 1, 5, 5], iscrowd=1),
                                                   _ann(2, [2, 2, 5, 5], iscrowd=1)]))
    with pytest.raises(ValueError, match=r"all 2 annotations are crowd regions \(iscrowd=1\)") as excinfo:
        get_detr_dataset_dicts(name)
    assert json_file in str(excinfo.value)


def test_some_crowd_annotations_are_accepted(tmp_path, registry):
    """Catches the all-crowd check firing on any crowd box (COCO has crowd boxes next to objects)."""
    name, _, _ = registry(tmp_path, _coco([_ann(1, [1, 1, 5, 5], iscrowd=1), _ann(2, [2, 2, 5, 5])]))
    dicts = get_detr_dataset_dicts(name)
    assert sorted(a["iscrowd"] for a in dicts[0]["annotations"]) == [0, 1]
