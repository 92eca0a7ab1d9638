"""A small COCO dataset from the annotated nuclei image that ships inside the ``stardist`` wheel (the library
side of tools/make_stardist_nuclei_dataset.py, whose help describes the data, the tiling, the held-out split and
the boxes): one real 2-D fluorescence image (512x512 uint16) and its instance labels cut into tiles, tight
boxes of each nucleus' visible pixels (absolute XYWH in tile pixels), slivers marked ``iscrowd``."""
import hashlib
import importlib.util
import io
import json
import os
import sys
import zipfile
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

IMAGE_MEMBER = "stardist/data/images/img2d.tif"
MASK_MEMBER = "stardist/data/images/mask2d.tif"
# sha256 of the two files in stardist 0.9.2 (the version this code was written against); another version's
# files are converted too, with a warning, and their hashes are recorded in the JSON either way
KNOWN_SHA256 = {
    "img2d.tif": "f9ccc1571b92c861ff87e28463068b43f61bd47357ed0503f711e5cd1eb97750",
    "mask2d.tif": "59ad5e820b7982ca9d13e946fa6e7f64e2714899e00a2ae6c69aa79aad53d46f",
}
CATEGORIES = [{"id": 1, "name": "nucleus", "supercategory": "cell"}]
SPLITS = ("train", "heldout")


def default_output() -> str:
    """``$DETECTRON2_DATASETS/stardist_nuclei`` (DETECTRON2_DATASETS defaulting to ./datasets)."""
    return os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "stardist_nuclei")


def installed_source() -> Optional[str]:
    """``.../site-packages/stardist/data/images`` of the installed package, or None (the package is
    located with ``find_spec``, which does not import it)."""
    spec = importlib.util.find_spec("stardist")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "data", "images")


def _decode_tiff(data: bytes, what: str) -> np.ndarray:
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.ndim != 2:
        raise ValueError(f"{what}: not a single-channel 2-D TIFF image")
    return array


def read_source(source: Optional[str]) -> Tuple[np.ndarray, np.ndarray, Dict[str, str]]:
    """(image (H, W), labels (H, W) int, {file name: sha256}) from a folder with img2d.tif/mask2d.tif, a
    wheel (.whl/.zip) holding them, or (``source=None``) the installed stardist package.

    Raises:
        FileNotFoundError: no source found (names what was looked for and how to get it).
        ValueError: unreadable files or image and labels of different shapes (names the file).
    """
    if source is None:
        source = installed_source()
        if source is None:
            raise FileNotFoundError(
                "the stardist package is not installed: `pip install --no-deps stardist==0.9.2`, or pass "
                "--source with its wheel (`pip download --no-deps stardist==0.9.2`) or a folder holding "
                "img2d.tif and mask2d.tif")
    blobs: Dict[str, bytes] = {}
    if os.path.isfile(source) and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as z:
            for member in (IMAGE_MEMBER, MASK_MEMBER):
                try:
                    blobs[os.path.basename(member)] = z.read(member)
                except KeyError:
                    raise FileNotFoundError(f"{source}: no {member} in this archive") from None
    elif os.path.isdir(source):
        for name in ("img2d.tif", "mask2d.tif"):
            path = os.path.join(source, name)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path} does not exist (--source must hold img2d.tif and mask2d.tif)")
            with open(path, "rb") as f:
                blobs[name] = f.read()
    else:
        raise FileNotFoundError(f"--source {source}: neither a folder nor a wheel/zip file")
    where = {n: f"{source}:{n}" for n in blobs}
    image = _decode_tiff(blobs["img2d.tif"], where["img2d.tif"])
    labels = _decode_tiff(blobs["mask2d.tif"], where["mask2d.tif"]).astype(np.int64)
    if image.shape != labels.shape:
        raise ValueError(f"{where['img2d.tif']} is {image.shape} but {where['mask2d.tif']} is {labels.shape}")
    hashes = {n: hashlib.sha256(b).hexdigest() for n, b in blobs.items()}
    for n, h in hashes.items():
        if KNOWN_SHA256.get(n) and KNOWN_SHA256[n] != h:
            print(f"warning: {where[n]} differs from stardist 0.9.2's (sha256 {h[:12]}...)", file=sys.stderr)
    return image, labels, hashes


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) grey image of any integer/float type -> (H, W, 3) uint8; values already in 0..255 (as in
    stardist's img2d.tif, 0-235) are kept, wider ranges are scaled by the image's maximum."""
    image = image.astype(np.float64)
    top = image.max()
    if image.min() < 0 or top > 255:
        image = (image - min(image.min(), 0)) * (255.0 / max(top - min(image.min(), 0), 1e-12))
    grey = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def tile_annotations(labels: np.ndarray, y0: int, x0: int, tile: int, full_area: Dict[int, int],
                     min_visible: float) -> List[dict]:
    """COCO annotations (no ids yet) of the labelled objects inside the tile at (y0, x0): tight box of the
    object's pixels in the tile (absolute XYWH, tile coordinates), area, and ``iscrowd`` = 1 when less
    than ``min_visible`` of the object's pixels (``full_area``) lie in the tile."""
    crop = labels[y0:y0 + tile, x0:x0 + tile]
    out = []
    for obj in np.unique(crop):
        if obj == 0:
            continue
        mask = crop == obj
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        x, y = int(cols[0]), int(rows[0])
        w, h = int(cols[-1]) + 1 - x, int(rows[-1]) + 1 - y
        visible = int(mask.sum())
        out.append({"category_id": 1, "bbox": [float(x), float(y), float(w), float(h)], "area": float(visible),
                    "iscrowd": int(visible < min_visible * full_area[int(obj)]), "label": int(obj)})
    return out


def split_tiles(shape: Tuple[int, int], tile: int, heldout_cols: int) -> Dict[str, List[Tuple[int, int]]]:
    """Top-left corners (y0, x0) of the whole tiles of each split: held-out = the last ``heldout_cols``
    tile columns, train = the others (pixels beyond the last whole tile are dropped)."""
    rows, cols = shape[0] // tile, shape[1] // tile
    if rows < 1 or cols < 2:
        raise ValueError(f"--tile {tile}: a {shape[0]}x{shape[1]} image gives {rows}x{cols} tiles; need at least "
                         "1 row and 2 columns")
    if not 1 <= heldout_cols < cols:
        raise ValueError(f"--heldout-cols {heldout_cols}: must be in 1..{cols - 1} for {cols} tile columns")
    corners = {s: [] for s in SPLITS}
    for r in range(rows):
        for c in range(cols):
            corners["heldout" if c >= cols - heldout_cols else "train"].append((r * tile, c * tile))
    return corners


def _write_json_atomic(obj, path: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
    os.replace(tmp, path)


def convert(image: np.ndarray, labels: np.ndarray, output: str, tile: int = 128, heldout_cols: int = 1,
            min_visible: float = 0.5, source_info: Optional[dict] = None) -> Dict[str, dict]:
    """Write the two COCO splits under ``output``; returns ``{split: {"images", "annotations", "crowd"}}``.
    The JSON files are written last (an interrupted run leaves no JSON of its split)."""
    if not 0.0 < min_visible <= 1.0:
        raise ValueError(f"--min-visible {min_visible}: must be in (0, 1]")
    corners = split_tiles(labels.shape, tile, heldout_cols)
    ids, counts = np.unique(labels, return_counts=True)
    full_area = {int(i): int(n) for i, n in zip(ids, counts)}
    rgb = to_uint8_rgb(image)
    os.makedirs(os.path.join(output, "annotations"), exist_ok=True)
    summary = {}
    for split, tiles in corners.items():
        json_file = os.path.join(output, "annotations", f"instances_{split}.json")
        if os.path.exists(json_file):
            os.remove(json_file)
        os.makedirs(os.path.join(output, split), exist_ok=True)
        images, annotations = [], []
        for y0, x0 in tiles:
            name = f"r{y0 // tile}_c{x0 // tile}.png"
            path = os.path.join(output, split, name)
            if not cv2.imwrite(path, np.ascontiguousarray(rgb[y0:y0 + tile, x0:x0 + tile, ::-1])):
                raise OSError(f"cv2.imwrite failed to write {path}")
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": name, "width": tile, "height": tile,
                           "tile_origin_xy": [x0, y0]})
            for ann in tile_annotations(labels, y0, x0, tile, full_area, min_visible):
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
        info = {"description": "nuclei of stardist's bundled img2d.tif/mask2d.tif, tiled",
                "split": split, "tile": tile, "heldout_cols": heldout_cols, "min_visible": min_visible,
                **(source_info or {})}
        _write_json_atomic({"info": info, "images": images, "annotations": annotations,
                            "categories": CATEGORIES}, json_file)
        summary[split] = {"images": len(images), "annotations": len(annotations),
                          "crowd": sum(a["iscrowd"] for a in annotations)}
    return summary


def make_stardist_nuclei_dataset(source: Optional[str], output: str, tile: int = 128, heldout_cols: int = 1,
                                 min_visible: float = 0.5) -> Dict[str, Dict[str, int]]:
    """Read the two TIFFs (``source``: a folder holding them, stardist's wheel, or None: the installed
    package) and write the dataset to ``output`` (:func:`convert`). Returns :func:`convert`'s summary:
    per split, its numbers of tiles, annotations and cut (crowd) nuclei."""
    image, labels, hashes = read_source(source)
    where = source or installed_source()
    return convert(image, labels, output, tile, heldout_cols, min_visible,
                   source_info={"source": os.path.abspath(where), "sha256": hashes})
