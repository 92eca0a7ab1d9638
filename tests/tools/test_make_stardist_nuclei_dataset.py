"""tools/make_stardist_nuclei_dataset.py (its library, sd_detr.data.stardist_nuclei) on a small hand-made label image written like stardist's
img2d.tif/mask2d.tif (folder and wheel sources): tiling, the spatial held-out split, tight boxes of the
visible pixels, cut nuclei marked iscrowd, errors that name the missing file. The real image is not
needed (the package is not a dependency)."""
import json
import os
import zipfile

import cv2
import numpy as np
import pytest

from sd_detr.data import stardist_nuclei as tool


def _labels():
    """64 x 96 labels (2 x 3 tiles of 32): nucleus 1 inside tile (0, 0); nucleus 2 across the border of
    tiles (0, 0) and (0, 1), 3/4 of it in the left one; nucleus 3 inside the last column (held out);
    nucleus 4 (3 x 2 px) inside tile (1, 1)."""
    lab = np.zeros((64, 96), np.uint16)
    lab[4:12, 5:15] = 1
    lab[20:26, 20:36] = 2  # x 20..31 in tile c0 (12 columns), 32..35 in c1 (4 columns)
    lab[40:50, 70:80] = 3
    lab[40:42, 40:43] = 4
    img = (np.arange(64 * 96, dtype=np.uint16).reshape(64, 96) % 200).astype(np.uint16)
    return img, lab


def _write_source(folder):
    img, lab = _labels()
    os.makedirs(folder, exist_ok=True)
    assert cv2.imwrite(os.path.join(folder, "img2d.tif"), img) and cv2.imwrite(os.path.join(folder, "mask2d.tif"), lab)
    return img, lab


def _load(out, split):
    with open(os.path.join(out, "annotations", f"instances_{split}.json")) as f:
        return json.load(f)


def test_tiles_split_spatially_and_boxes_are_tight_on_the_visible_pixels(tmp_path):
    """Catches boxes in image instead of tile coordinates, off-by-one (exclusive) box ends, a held-out split
    that is not the last column, and cut slivers kept as targets."""
    src = tmp_path / "src"
    img, lab = _write_source(str(src))
    out = str(tmp_path / "out")
    summary = tool.make_stardist_nuclei_dataset(str(src), out, tile=32)
    assert {split: s["images"] for split, s in summary.items()} == {"train": 4, "heldout": 2}
    train, held = _load(out, "train"), _load(out, "heldout")
    assert sorted(im["file_name"] for im in train["images"]) == ["r0_c0.png", "r0_c1.png", "r1_c0.png", "r1_c1.png"]
    assert sorted(im["file_name"] for im in held["images"]) == ["r0_c2.png", "r1_c2.png"]
    assert all(im["tile_origin_xy"][0] >= 64 for im in held["images"])
    assert all(im["tile_origin_xy"][0] + im["width"] <= 64 for im in train["images"])
    assert train["categories"] == [{"id": 1, "name": "nucleus", "supercategory": "cell"}]

    def anns(data, name):
        (im,) = [i for i in data["images"] if i["file_name"] == name]
        return sorted(([a["bbox"], a["area"], a["iscrowd"]] for a in data["annotations"] if a["image_id"] == im["id"]))

    assert anns(train, "r0_c0.png") == [[[5.0, 4.0, 10.0, 8.0], 80.0, 0], [[20.0, 20.0, 12.0, 6.0], 72.0, 0]]
    assert anns(train, "r0_c1.png") == [[[0.0, 20.0, 4.0, 6.0], 24.0, 1]]  # 1/4 of nucleus 2: ignored
    assert anns(train, "r1_c1.png") == [[[8.0, 8.0, 3.0, 2.0], 6.0, 0]]
    assert anns(held, "r1_c2.png") == [[[6.0, 8.0, 10.0, 10.0], 100.0, 0]]
    assert anns(held, "r0_c2.png") == []
    # the PNG is the grey tile as RGB, values kept (all < 256)
    png = cv2.imread(os.path.join(out, "heldout", "r1_c2.png"))
    assert png.shape == (32, 32, 3) and np.array_equal(png[:, :, 0], img[32:64, 64:96].astype(np.uint8))
    assert (png[:, :, 0] == png[:, :, 2]).all()
    from pycocotools.coco import COCO

    assert len(COCO(os.path.join(out, "annotations", "instances_train.json")).getAnnIds()) == 4


def test_a_wheel_is_read_without_installing_it(tmp_path):
    src = tmp_path / "src"
    _write_source(str(src))
    wheel = tmp_path / "stardist-0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(src / "img2d.tif", tool.IMAGE_MEMBER)
        z.write(src / "mask2d.tif", tool.MASK_MEMBER)
    img, lab, hashes = tool.read_source(str(wheel))
    assert lab.shape == (64, 96) and set(np.unique(lab)) == {0, 1, 2, 3, 4}
    assert set(hashes) == {"img2d.tif", "mask2d.tif"}
    folder_img, folder_lab, folder_hashes = tool.read_source(str(src))
    assert np.array_equal(img, folder_img) and np.array_equal(lab, folder_lab) and hashes == folder_hashes


def test_min_visible_decides_which_cut_nuclei_are_targets():
    _, lab = _labels()
    ids, counts = np.unique(lab, return_counts=True)
    full = dict(zip(ids.tolist(), counts.tolist()))
    strict = tool.tile_annotations(lab, 0, 0, 32, full, min_visible=0.8)  # 3/4 visible < 0.8: ignored now
    assert sorted((a["label"], a["iscrowd"]) for a in strict) == [(1, 0), (2, 1)]
    loose = tool.tile_annotations(lab, 0, 32, 32, full, min_visible=0.2)  # 1/4 visible >= 0.2: a target
    assert [(a["label"], a["iscrowd"]) for a in loose] == [(2, 0)]


def test_wider_intensity_ranges_are_scaled_into_uint8():
    rgb = tool.to_uint8_rgb(np.array([[0, 1000], [500, 250]], np.uint16))
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 1, 0] == 255 and rgb[0, 0, 0] == 0 and rgb[1, 0, 0] == 128


def test_errors_name_the_missing_file_or_bad_value(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="mask2d.tif"):
        os.makedirs(tmp_path / "half")
        cv2.imwrite(str(tmp_path / "half" / "img2d.tif"), np.zeros((8, 8), np.uint16))
        tool.read_source(str(tmp_path / "half"))
    with pytest.raises(FileNotFoundError, match="nothing.whl"):
        tool.read_source(str(tmp_path / "nothing.whl"))
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("other.txt", "x")
    with pytest.raises(FileNotFoundError, match="img2d.tif in this archive"):
        tool.read_source(str(empty))
    monkeypatch.setattr(tool, "installed_source", lambda: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps stardist"):
        tool.read_source(None)
    with pytest.raises(ValueError, match="--heldout-cols 3"):
        tool.split_tiles((64, 96), 32, 3)
    with pytest.raises(ValueError, match="--tile 64"):
        tool.split_tiles((64, 96), 64, 1)
