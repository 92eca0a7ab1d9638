"""A small, deterministic synthetic detection dataset ("shapes") in COCO format.

The dataset is meant for smoke tests and quick CPU/GPU experiments: it has a handful of visually
distinct shape classes drawn on textured backgrounds, several (partly overlapping) objects per
image, and exact boxes computed from the drawn pixels.

Splits and their domains (:data:`SYNTHETIC_SPLIT_DOMAINS`):

- ``train`` and ``val``: the *seen* domain. Smooth backgrounds (a linear colour gradient, low-frequency
  colour blobs, sometimes soft sinusoidal stripes); every object is filled with one flat colour.
- ``val_shift``: the same five shapes, sizes and placement rules in a *shifted* domain that the training
  images never show: hard-edged two-colour checkerboard backgrounds (a texture family absent from
  training, where every background is smooth) and objects filled with two-colour stripes (every training
  object is one flat colour). A detector that learned the shapes keeps part of its AP there; one that
  memorised the training images' appearance loses it. A colour *range* cannot be held out instead: the
  training colours are drawn from the whole RGB cube, and the train split must stay byte-identical for
  old results to stay comparable.
- ``val_shift_objects`` and ``val_shift_background``: each of val_shift's two changes alone, to tell
  which one a detector fails on. ``val_shift_objects``: the seen (smooth) backgrounds with val_shift's
  striped two-colour objects; ``val_shift_background``: val_shift's checkerboards with the seen
  flat-coloured objects.

Layout written by :func:`generate_synthetic_dataset` under ``root``::

    root/train/000000.png ...
    root/val/000000.png ...
    root/val_shift/000000.png ...          (and val_shift_objects/, val_shift_background/)
    root/annotations/instances_train.json
    root/annotations/instances_val.json
    root/annotations/instances_val_shift.json  (and instances_val_shift_{objects,background}.json)

The annotation files are plain COCO detection JSON: ``bbox`` is ``[x, y, w, h]`` in absolute
pixels of the image (continuous coordinates: pixel column ``j`` covers ``[j, j + 1)``), ``area``
is the number of visible object pixels and category ids start at 1 in the order of
:data:`SYNTHETIC_CLASSES`.
"""
import contextlib
import json
import logging
import math
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = [
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_SPLIT_DOMAINS",
    "SYNTHETIC_TRAIN_NAME",
    "SYNTHETIC_VAL_NAME",
    "SYNTHETIC_VAL_SHIFT_BACKGROUND_NAME",
    "SYNTHETIC_VAL_SHIFT_NAME",
    "SYNTHETIC_VAL_SHIFT_OBJECTS_NAME",
    "default_synthetic_root",
    "ensure_dataset_files",
    "generate_synthetic_dataset",
    "is_generated",
    "register_synthetic_dataset",
    "render_synthetic_image",
    "synthetic_paths",
]

logger = logging.getLogger(__name__)

SYNTHETIC_CLASSES: Tuple[str, ...] = ("ellipse", "rectangle", "triangle", "cross", "ring")
"""Class names; COCO category id of ``SYNTHETIC_CLASSES[i]`` is ``i + 1``."""

SYNTHETIC_TRAIN_NAME = "sd_detr_synthetic_train"
SYNTHETIC_VAL_NAME = "sd_detr_synthetic_val"
SYNTHETIC_VAL_SHIFT_NAME = "sd_detr_synthetic_val_shift"
SYNTHETIC_VAL_SHIFT_OBJECTS_NAME = "sd_detr_synthetic_val_shift_objects"
SYNTHETIC_VAL_SHIFT_BACKGROUND_NAME = "sd_detr_synthetic_val_shift_background"

_SPLITS = ("train", "val", "val_shift", "val_shift_objects", "val_shift_background")
_SPLIT_SEED_ID = {"train": 0, "val": 1, "val_shift": 2, "val_shift_objects": 3, "val_shift_background": 4}
_SPLIT_NAMES = {
    "train": SYNTHETIC_TRAIN_NAME,
    "val": SYNTHETIC_VAL_NAME,
    "val_shift": SYNTHETIC_VAL_SHIFT_NAME,
    "val_shift_objects": SYNTHETIC_VAL_SHIFT_OBJECTS_NAME,
    "val_shift_background": SYNTHETIC_VAL_SHIFT_BACKGROUND_NAME,
}
SYNTHETIC_SPLIT_DOMAINS: Dict[str, str] = {
    "train": "seen",
    "val": "seen",
    "val_shift": "shifted",
    "val_shift_objects": "shifted_objects",
    "val_shift_background": "shifted_background",
}
"""Domain of each split: ``"seen"`` (the training appearance), ``"shifted"`` (checkerboard backgrounds and
striped objects, never seen in training), or one of those two changes alone (``"shifted_objects"``,
``"shifted_background"``)."""
_DOMAINS = ("seen", "shifted", "shifted_objects", "shifted_background")

# Shifted domain (val_shift only): checkerboard backgrounds and striped two-colour objects.
_CHECKER_CELL = (6.0, 14.0)  # checkerboard cell side, px
_CHECKER_MIN_CONTRAST = 150.0  # L2 RGB distance between the two checkerboard colours
_STRIPE_PERIOD = (4.0, 8.0)  # period of an object's two-colour stripes, px
_MIN_COLOUR_CONTRAST = 90.0  # wanted L2 RGB distance of an object colour to what it covers

# Generation parameters (sizes in pixels, fractions of the image's shorter side where noted).
_MIN_OBJECT_SIDE = 12.0  # smallest object side length (before aspect-ratio stretching)
_MAX_OBJECT_FRACTION = 0.45  # largest object side as a fraction of the shorter image side
_MAX_OBJECTS = 6
_MAX_BOX_IOU = 0.4  # a new object whose box IoU with an existing one exceeds this is rejected
_MIN_VISIBLE_FRACTION = 0.4  # objects with less of their pixels visible are never annotated
_PLACEMENT_VISIBLE_FRACTION = 0.55  # stricter bound used while placing objects
_MIN_VISIBLE_PIXELS = 40
_MIN_BOX_SIDE = 4  # visible tight box must be at least this wide and high


# ------------------------------------------------------------------------------------------------
# Paths and locations
# ------------------------------------------------------------------------------------------------
def default_synthetic_root() -> str:
    """Default dataset directory.

    ``$SD_DETR_SYNTHETIC_ROOT`` if set, else ``$DETECTRON2_DATASETS/sd_detr_synthetic`` with
    ``DETECTRON2_DATASETS`` defaulting to ``"datasets"`` (relative to the working directory, as in
    detectron2's builtin datasets).
    """
    root = os.environ.get("SD_DETR_SYNTHETIC_ROOT")
    if root:
        return root
    return os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "sd_detr_synthetic")


def synthetic_paths(root: str, split: str) -> Tuple[str, str]:
    """Return ``(json_file, image_root)`` of a split (one of ``_SPLITS``: "train", "val", "val_shift",
    "val_shift_objects", "val_shift_background") under ``root``."""
    if split not in _SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {_SPLITS}.")
    json_file = os.path.join(root, "annotations", f"instances_{split}.json")
    image_root = os.path.join(root, split)
    return json_file, image_root


def is_generated(root: str, splits: Sequence[str] = _SPLITS) -> bool:
    """True iff the annotation file of every split in ``splits`` (default: all five) exists under
    ``root``.

    The annotation files are written last (and atomically), so their presence means that a
    generation ran to completion.
    """
    return all(os.path.isfile(synthetic_paths(root, s)[0]) for s in splits)


def _missing_splits(root: str) -> List[str]:
    return [s for s in _SPLITS if not is_generated(root, (s,))]


# ------------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------------
def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Textured float32 RGB background (values roughly in [0, 255]), shape (h, w, 3)."""
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]

    # 1. smooth linear colour gradient at a random angle
    c0, c1 = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    t = xx * math.cos(angle) + yy * math.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c0 + (c1 - c0) * t[..., None]

    # 2. low-frequency colour blobs: a coarse random field upsampled with bicubic interpolation
    gh, gw = (int(v) for v in rng.integers(2, 7, size=2))
    field = rng.uniform(-1, 1, size=(gh, gw, 3)).astype(np.float32)
    field = cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC)
    img = img + field * np.float32(rng.uniform(0, 70))

    # 3. stripes (sometimes)
    if rng.random() < 0.4:
        period = rng.uniform(5, 40)
        a2 = rng.uniform(0, math.pi)
        phase = rng.uniform(0, 2 * math.pi)
        freq = np.float32(2 * math.pi / period)
        s = np.sin((xx * math.cos(a2) + yy * math.sin(a2)) * freq + phase)
        tint = rng.uniform(0.3, 1.0, size=3).astype(np.float32) * np.float32(rng.uniform(10, 45))
        img = img + s[..., None] * tint
    return img.astype(np.float32)


def _shifted_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Background of the shifted domain: a checkerboard rotated by a random angle, with hard edges
    between two colours at least ``_CHECKER_MIN_CONTRAST`` apart (L2 in RGB), shape (h, w, 3) float32.

    The seen domain's backgrounds (:func:`_background`) are smooth: their steepest pixel-to-pixel
    change is that of the stripes (amplitude <= 45 per channel, period >= 5 px: < 100 in L2), so a
    step of >= 150 between neighbouring background pixels never occurs in them.
    """
    c0 = rng.uniform(0, 255, size=3)
    c1 = rng.uniform(0, 255, size=3)
    for _ in range(100):  # about half of all colour pairs qualify, so this ends within a few draws
        if np.linalg.norm(c1 - c0) >= _CHECKER_MIN_CONTRAST:
            break
        c1 = rng.uniform(0, 255, size=3)
    else:  # pragma: no cover - probability below 1e-30
        c1 = np.where(c0 < 128, 255.0, 0.0)
    cell = rng.uniform(*_CHECKER_CELL)
    angle = rng.uniform(0, math.pi / 2)
    yy = np.arange(h, dtype=np.float64)[:, None]
    xx = np.arange(w, dtype=np.float64)[None, :]
    u = (xx * math.cos(angle) + yy * math.sin(angle)) / cell + rng.uniform(0, 2)
    v = (-xx * math.sin(angle) + yy * math.cos(angle)) / cell + rng.uniform(0, 2)
    odd = (np.floor(u) + np.floor(v)) % 2 == 1
    return np.where(odd[..., None], c1, c0).astype(np.float32)


def _shape_mask(
    cls: str,
    h: int,
    w: int,
    cx: float,
    cy: float,
    bw: float,
    bh: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Boolean (h, w) mask of one shape whose nominal box is centred at (cx, cy) with size (bw, bh).

    Parts outside the image are clipped by OpenCV's rasteriser.
    """
    mask = np.zeros((h, w), dtype=np.uint8)
    x0, y0 = int(round(cx - bw / 2)), int(round(cy - bh / 2))
    x1, y1 = int(round(cx + bw / 2)) - 1, int(round(cy + bh / 2)) - 1
    center = (int(round(cx)), int(round(cy)))
    axes = (max(int(round(bw / 2)), 1), max(int(round(bh / 2)), 1))
    if cls == "ellipse":
        cv2.ellipse(mask, center, axes, 0, 0, 360, 1, thickness=-1, lineType=cv2.LINE_8)
    elif cls == "rectangle":
        cv2.rectangle(mask, (x0, y0), (x1, y1), 1, thickness=-1, lineType=cv2.LINE_8)
    elif cls == "triangle":
        # isosceles triangle, apex pointing up / down / left / right
        pts = np.array([[0.5, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=np.float64)
        k = int(rng.integers(0, 4))
        if k == 1:  # down
            pts[:, 1] = 1.0 - pts[:, 1]
        elif k == 2:  # left
            pts = pts[:, ::-1].copy()
        elif k == 3:  # right
            pts = pts[:, ::-1].copy()
            pts[:, 0] = 1.0 - pts[:, 0]
        pts[:, 0] = x0 + pts[:, 0] * (x1 - x0)
        pts[:, 1] = y0 + pts[:, 1] * (y1 - y0)
        cv2.fillConvexPoly(mask, np.round(pts).astype(np.int32), 1, lineType=cv2.LINE_8)
    elif cls == "cross":
        tx = max(int(round(bw * rng.uniform(0.25, 0.4))), 3)
        ty = max(int(round(bh * rng.uniform(0.25, 0.4))), 3)
        cxi, cyi = center
        cv2.rectangle(mask, (x0, cyi - ty // 2), (x1, cyi - ty // 2 + ty - 1), 1, thickness=-1)
        cv2.rectangle(mask, (cxi - tx // 2, y0), (cxi - tx // 2 + tx - 1, y1), 1, thickness=-1)
    elif cls == "ring":
        cv2.ellipse(mask, center, axes, 0, 0, 360, 1, thickness=-1, lineType=cv2.LINE_8)
        ratio = rng.uniform(0.4, 0.6)
        inner = (
            min(int(round(axes[0] * ratio)), axes[0] - 3),
            min(int(round(axes[1] * ratio)), axes[1] - 3),
        )
        if inner[0] >= 1 and inner[1] >= 1:
            cv2.ellipse(mask, center, inner, 0, 0, 360, 0, thickness=-1, lineType=cv2.LINE_8)
    else:  # pragma: no cover - guarded by SYNTHETIC_CLASSES
        raise ValueError(f"Unknown shape class {cls!r}")
    return mask.astype(bool)


def _tight_box(mask: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    """Tight box ``(x0, y0, x1, y1)`` of a boolean mask in absolute XYXY pixel coordinates
    (``x1``/``y1`` exclusive, i.e. continuous coordinates), or None for an empty mask."""
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _box_iou(a: Tuple[int, int, int, int], b: Tuple[int, int, int, int]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / float(area_a + area_b - inter)


def _pick_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """Random RGB colour with good contrast to the pixels ``under`` (N, 3) it will cover."""
    cands = rng.uniform(0, 255, size=(12, 3)).astype(np.float32)
    if under.shape[0] > 2000:  # subsample deterministically for speed
        under = under[:: under.shape[0] // 2000 + 1]
    dist = np.linalg.norm(under[None, :, :] - cands[:, None, :], axis=2)  # (12, N)
    score = np.percentile(dist, 10, axis=1)  # contrast to (almost) every covered pixel
    good = np.flatnonzero(score >= 90.0)
    idx = int(good[0]) if good.size else int(np.argmax(score))
    return cands[idx]


def _pick_second_colour(rng: np.random.Generator, under: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Second colour of a striped object (shifted domain): always at least ``_MIN_COLOUR_CONTRAST``
    from the ``first`` colour (so the stripes are visible by construction) and, among such colours,
    contrasting with the covered pixels ``under`` (N, 3) as :func:`_pick_colour` does."""
    cands = rng.uniform(0, 255, size=(12, 3)).astype(np.float32)
    far = np.linalg.norm(cands - first[None], axis=1) >= _MIN_COLOUR_CONTRAST
    if not far.any():  # the cube corner farthest from ``first`` is >= 220 away from it
        return np.where(first < 127.5, 255.0, 0.0).astype(np.float32)
    cands = cands[far]
    if under.shape[0] > 2000:
        under = under[:: under.shape[0] // 2000 + 1]
    dist = np.linalg.norm(under[None, :, :] - cands[:, None, :], axis=2)
    score = np.percentile(dist, 10, axis=1)
    good = np.flatnonzero(score >= _MIN_COLOUR_CONTRAST)
    idx = int(good[0]) if good.size else int(np.argmax(score))
    return cands[idx]


def _stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Boolean (h, w) pattern of parallel stripes (random angle, period in ``_STRIPE_PERIOD`` px, half
    the period each): where a striped object takes its first colour."""
    period = rng.uniform(*_STRIPE_PERIOD)
    angle = rng.uniform(0, math.pi)
    yy = np.arange(h, dtype=np.float64)[:, None]
    xx = np.arange(w, dtype=np.float64)[None, :]
    t = (xx * math.cos(angle) + yy * math.sin(angle)) / period + rng.uniform(0, 1)
    return (t - np.floor(t)) < 0.5


def render_synthetic_image(
    rng: np.random.Generator, min_size: int = 128, max_size: int = 192, domain: str = "seen"
) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """Render one synthetic image.

    Args:
        rng: the random generator (fully determines the output).
        min_size, max_size: width and height are each drawn uniformly in ``[min_size, max_size]``.
        domain: ``"seen"`` (train/val: smooth background, flat-coloured objects), ``"shifted"``
            (val_shift: checkerboard background, two-colour striped objects), ``"shifted_objects"``
            (smooth background, striped objects) or ``"shifted_background"`` (checkerboard
            background, flat-coloured objects). Shapes, sizes and placement follow the same rules
            in all. The seen and shifted domains draw exactly the random numbers they drew before
            the one-change domains existed, so their images are unchanged.

    Returns:
        image: (H, W, 3) uint8 array in **RGB** order.
        objects: one dict per annotated object with keys ``"category"`` (index into
            :data:`SYNTHETIC_CLASSES`), ``"mask"`` (bool (H, W), the *visible* object pixels),
            ``"bbox"`` (tight box of ``mask``, absolute XYWH pixels, continuous coordinates)
            and ``"area"`` (number of visible pixels).
    """
    if not (0 < min_size <= max_size):
        raise ValueError(f"Need 0 < min_size <= max_size, got {min_size}, {max_size}")
    if domain not in _DOMAINS:
        raise ValueError(f"Unknown domain {domain!r}; expected one of {_DOMAINS}.")
    checkerboard = domain in ("shifted", "shifted_background")
    striped = domain in ("shifted", "shifted_objects")
    w = int(rng.integers(min_size, max_size + 1))
    h = int(rng.integers(min_size, max_size + 1))
    canvas = _shifted_background(rng, h, w) if checkerboard else _background(rng, h, w)

    # --- place objects (masks only) ---
    short = min(h, w)
    max_side = max(_MAX_OBJECT_FRACTION * short, _MIN_OBJECT_SIDE + 1)
    num_target = int(rng.integers(1, _MAX_OBJECTS + 1))
    placed: List[Tuple[int, np.ndarray, Tuple[int, int, int, int]]] = []  # (cls, mask, box)
    visible: List[np.ndarray] = []
    for _ in range(num_target * 8):
        if len(placed) >= num_target:
            break
        cls = int(rng.integers(0, len(SYNTHETIC_CLASSES)))
        side = math.exp(rng.uniform(math.log(_MIN_OBJECT_SIDE), math.log(max_side)))
        aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))  # width / height
        bw = min(max(side * math.sqrt(aspect), 10.0), 0.6 * w)
        bh = min(max(side / math.sqrt(aspect), 10.0), 0.6 * h)
        # allow the shape to stick out of the image by up to 15% of its size
        cx = rng.uniform(0.35 * bw, w - 0.35 * bw)
        cy = rng.uniform(0.35 * bh, h - 0.35 * bh)
        mask = _shape_mask(SYNTHETIC_CLASSES[cls], h, w, cx, cy, bw, bh, rng)
        npix = int(mask.sum())
        if npix < 2 * _MIN_VISIBLE_PIXELS:
            continue
        box = _tight_box(mask)
        if min(box[2] - box[0], box[3] - box[1]) < 2 * _MIN_BOX_SIDE:
            continue
        if any(_box_iou(box, b) > _MAX_BOX_IOU for _, _, b in placed):
            continue
        # the new object is drawn on top: every earlier object must stay well visible
        new_visible = [v & ~mask for v in visible]
        if any(
            nv.sum() < _PLACEMENT_VISIBLE_FRACTION * m.sum()
            for nv, (_, m, _) in zip(new_visible, placed)
        ):
            continue
        placed.append((cls, mask, box))
        visible = new_visible + [mask.copy()]

    # --- draw, in order, each object with a colour contrasting with what it covers ---
    for cls, mask, _ in placed:
        under = canvas[mask]
        colour = _pick_colour(rng, under)
        if striped:
            first = mask & _stripes(rng, h, w)
            canvas[mask & ~first] = _pick_second_colour(rng, under, colour)
            canvas[first] = colour
        else:
            canvas[mask] = colour
    noise_sigma = rng.uniform(0.0, 10.0)
    canvas = canvas + rng.normal(0.0, 1.0, size=canvas.shape).astype(np.float32) * np.float32(
        noise_sigma
    )
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)

    objects = []
    for (cls, mask, _), vis in zip(placed, visible):
        npix = int(vis.sum())
        box = _tight_box(vis)
        if (
            box is None
            or npix < _MIN_VISIBLE_PIXELS
            or npix < _MIN_VISIBLE_FRACTION * mask.sum()
            or box[2] - box[0] < _MIN_BOX_SIDE
            or box[3] - box[1] < _MIN_BOX_SIDE
        ):
            continue
        x0, y0, x1, y1 = box
        objects.append(
            {
                "category": cls,
                "mask": vis,
                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                "area": float(npix),
            }
        )
    return image, objects


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    # one independent stream per (seed, split, image index): a split's content doesn't depend on
    # the number of images of the other split, and image i is the same whatever num_train is.
    return np.random.default_rng(np.random.SeedSequence([int(seed), _SPLIT_SEED_ID[split], index]))


# ------------------------------------------------------------------------------------------------
# Generation
# ------------------------------------------------------------------------------------------------
def _write_json_atomic(obj: Any, path: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _generate_split(
    root: str, split: str, num_images: int, seed: int, min_size: int, max_size: int, progress: bool
) -> Dict[str, Any]:
    from tqdm import tqdm

    json_file, image_root = synthetic_paths(root, split)
    os.makedirs(image_root, exist_ok=True)
    images, annotations = [], []
    png_params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
    for i in tqdm(
        range(num_images), desc=f"sd_detr synthetic {split}", disable=not progress, unit="img"
    ):
        image, objects = render_synthetic_image(
            _image_rng(seed, split, i), min_size, max_size, domain=SYNTHETIC_SPLIT_DOMAINS[split]
        )
        file_name = f"{i:06d}.png"
        path = os.path.join(image_root, file_name)
        if not cv2.imwrite(path, np.ascontiguousarray(image[:, :, ::-1])):  # RGB -> BGR
            raise OSError(f"cv2.imwrite failed to write {path}")
        image_id = i + 1
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": image.shape[1],
                "height": image.shape[0],
            }
        )
        for obj in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": obj["category"] + 1,
                    "bbox": obj["bbox"],
                    "area": obj["area"],
                    "iscrowd": 0,
                }
            )
    info = {"description": "sd_detr synthetic shapes dataset"}
    if SYNTHETIC_SPLIT_DOMAINS[split] != "seen":  # (the seen splits' JSON keeps its old bytes)
        info["domain"] = SYNTHETIC_SPLIT_DOMAINS[split]
    coco = {
        "info": {
            **info,
            "split": split,
            "seed": int(seed),
            "num_images": int(num_images),
            "min_size": int(min_size),
            "max_size": int(max_size),
        },
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": name, "supercategory": "shape"}
            for i, name in enumerate(SYNTHETIC_CLASSES)
        ],
    }
    return coco


def generate_synthetic_dataset(
    root: str,
    num_train: int = 320,
    num_val: int = 80,
    seed: int = 0,
    min_size: int = 128,
    max_size: int = 192,
    progress: bool = True,
    num_val_shift: Optional[int] = None,
    splits: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
    """Generate the synthetic dataset under ``root`` (overwriting the splits it generates).

    Images are written first; the COCO JSON files are written last and atomically, so an
    interrupted generation leaves :func:`is_generated` False. The output is fully determined by
    the arguments (byte-identical JSON and PNG files for the same arguments); the train and val
    splits are the same as before the shifted splits existed, val_shift the same as before the
    one-change splits (val_shift_objects, val_shift_background) existed.

    Args:
        root: output directory.
        num_train, num_val: number of images per split.
        seed: random seed. Image ``i`` of a split only depends on (seed, split, i).
        min_size, max_size: range of image width and height, in pixels.
        progress: show a tqdm progress bar.
        num_val_shift: number of images of each domain-shifted split (val_shift, val_shift_objects,
            val_shift_background; default: ``num_val``).
        splits: the splits to generate (default: all of ``_SPLITS``); the others are left as they
            are (used to add the shifted splits to an existing dataset).

    Returns:
        dict: ``{"root": root, "train": {"images": n, "annotations": m}, ...}`` for each generated
        split.
    """
    num_val_shift = num_val if num_val_shift is None else num_val_shift
    counts = {"train": num_train, "val": num_val}
    counts.update({s: num_val_shift for s in _SPLITS if SYNTHETIC_SPLIT_DOMAINS[s] != "seen"})
    splits = list(_SPLITS if splits is None else splits)
    bad = [s for s in splits if s not in _SPLITS]
    if bad:
        raise ValueError(f"Unknown split(s) {bad}; expected a subset of {_SPLITS}.")
    if any(counts[s] < 1 for s in splits):
        raise ValueError(
            "num_train, num_val and num_val_shift must be >= 1, got "
            + ", ".join(f"{s}={counts[s]}" for s in splits)
        )
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    # invalidate a previous generation first, so that a killed run is detected as incomplete
    for split in splits:
        with contextlib.suppress(FileNotFoundError):
            os.remove(synthetic_paths(root, split)[0])

    cocos = {
        s: _generate_split(root, s, counts[s], seed, min_size, max_size, progress) for s in splits
    }
    summary: Dict[str, Any] = {"root": root}
    for split, coco in cocos.items():
        _write_json_atomic(coco, synthetic_paths(root, split)[0])
        summary[split] = {"images": len(coco["images"]), "annotations": len(coco["annotations"])}
    return summary


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    """Exclusive inter-process lock on ``path`` (no-op where fcntl is unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _ensure_generated(root: str, **gen_kwargs) -> None:
    """Generate the missing splits only: a dataset made before a shifted split existed gets it added,
    its train/val files untouched (other processes may be reading them)."""
    if is_generated(root):
        return
    with _file_lock(os.path.normpath(root) + ".lock"):
        missing = _missing_splits(root)  # another process may have finished while we waited
        if not missing:
            return
        if is_generated(root, ("train", "val")):  # match the image sizes and seed of the existing data
            gen_kwargs = {**_existing_generation_args(root), **gen_kwargs}
        logger.info(f"Generating the sd_detr synthetic dataset ({', '.join(missing)}) in {root} ...")
        summary = generate_synthetic_dataset(root, splits=missing, **gen_kwargs)
        logger.info(f"Generated the sd_detr synthetic dataset: {summary}")


def _existing_generation_args(root: str) -> Dict[str, Any]:
    """``seed``, ``min_size``, ``max_size`` and ``num_val_shift`` (= the val split's size) of the
    existing train/val data, for adding the shifted splits to it; empty where unreadable."""
    try:
        with open(synthetic_paths(root, "val")[0]) as f:
            info = json.load(f).get("info", {})
    except (OSError, ValueError, AttributeError):
        return {}
    out = {k: info[k] for k in ("seed", "min_size", "max_size") if k in info}
    if "num_images" in info:
        out["num_val_shift"] = info["num_images"]
    return out


def _check_generation_args(root: str, gen_kwargs: Dict[str, Any]) -> None:
    """Warn when explicitly requested generation arguments differ from the existing data."""
    keys = {
        "num_train": ("train", "num_images"),
        "num_val": ("val", "num_images"),
        "num_val_shift": ("val_shift", "num_images"),
    }
    keys.update({k: ("train", k) for k in ("seed", "min_size", "max_size")})
    for arg, (split, key) in keys.items():
        if arg not in gen_kwargs:
            continue
        try:
            with open(synthetic_paths(root, split)[0]) as f:
                info = json.load(f).get("info", {})
        except (OSError, ValueError, AttributeError):
            return
        if key in info and info[key] != gen_kwargs[arg]:
            logger.warning(
                f"The synthetic dataset in {root} exists with {key}={info[key]} but "
                f"{arg}={gen_kwargs[arg]} was requested; using the existing data. Regenerate with "
                "tools/make_synthetic_dataset.py --force to change it."
            )


class _SyntheticSplitLoader:
    """The ``DatasetCatalog`` loader of one synthetic split: on call it generates the dataset's missing
    splits (:meth:`ensure_files`), then loads the split's COCO JSON as the loader of
    ``register_coco_instances`` does (``load_coco_json(json_file, image_root, name)``).

    Registering one writes nothing; the data are made where they are first needed. Code that reads the
    files through the metadata's ``json_file`` / ``image_root`` instead (COCOEvaluator, the up-front checks
    of :func:`~sd_detr.data.get_detr_dataset_dicts`) calls :func:`ensure_dataset_files` first.
    """

    def __init__(self, name: str, root: str, split: str, generate: bool, gen_kwargs: Dict[str, Any]):
        self.name, self.root, self.split = name, root, split
        self.generate, self.gen_kwargs = generate, dict(gen_kwargs)
        self.json_file, self.image_root = synthetic_paths(root, split)

    def _key(self) -> Tuple[Any, ...]:
        return (self.name, self.root, self.split, self.generate, sorted(self.gen_kwargs.items()))

    def ensure_files(self) -> None:
        """Generate the missing splits (under the lock of :func:`_ensure_generated`, with its progress bar)
        if this split is missing and ``generate`` is set; a stat of one file when it exists."""
        if self.generate and not is_generated(self.root, (self.split,)):
            _ensure_generated(self.root, **self.gen_kwargs)

    def __call__(self) -> List[Dict[str, Any]]:
        from detectron2.data.datasets import load_coco_json

        self.ensure_files()
        return load_coco_json(self.json_file, self.image_root, self.name)


def ensure_dataset_files(name: str) -> None:
    """Make the files of the registered dataset ``name`` exist before they are read other than through its
    ``DatasetCatalog`` loader (through the metadata's ``json_file``, as COCOEvaluator and the up-front JSON
    check of :func:`~sd_detr.data.get_detr_dataset_dicts` do): a synthetic split registered with
    ``generate=True`` is generated now if missing. A no-op for other datasets and unregistered names."""
    from detectron2.data import DatasetCatalog

    if not isinstance(name, str) or name not in DatasetCatalog:
        return
    ensure = getattr(DatasetCatalog[name], "ensure_files", None)  # [name]: the loader, not its records
    if callable(ensure):
        ensure()


def register_synthetic_dataset(
    root: Optional[str] = None, generate: bool = True, **gen_kwargs
) -> Tuple[str, str]:
    """Register the synthetic splits as ``"sd_detr_synthetic_train"``, ``"sd_detr_synthetic_val"``,
    ``"sd_detr_synthetic_val_shift"`` (:data:`SYNTHETIC_VAL_SHIFT_NAME`, the domain-shifted
    validation split) and its one-change twins ``"sd_detr_synthetic_val_shift_objects"`` and
    ``"sd_detr_synthetic_val_shift_background"``, with the metadata of ``register_coco_instances``
    (``json_file``, ``image_root``, ``evaluator_type="coco"``) plus ``thing_classes`` and ``domain``.

    Writes nothing (no data, no lock file), so it is called when a config is imported: the data are
    generated where they are first needed, i.e. when a split is loaded (``DatasetCatalog.get``) or
    :func:`ensure_dataset_files` is called for it (COCOEvaluator through
    :func:`~sd_detr.evaluation.build_coco_evaluator`, :func:`~sd_detr.data.get_detr_dataset_dicts`).

    Args:
        root: dataset directory; default :func:`default_synthetic_root`.
        generate: generate the data on first use if they are missing (all missing splits at once, guarded
            by a lock file ``root + ".lock"`` against concurrent generation by several processes). If
            False, loading a missing split fails with a message naming tools/make_synthetic_dataset.py.
        gen_kwargs: forwarded to :func:`generate_synthetic_dataset` (``num_train``, ``num_val``,
            ``seed``, ``min_size``, ``max_size``, ``progress``, ``num_val_shift``). Only used
            when generating; only missing splits are generated. Where the data exist already and differ
            from them, a warning says so (the existing data are used).

    Returns:
        (train_name, val_name); the shifted splits always have the names above.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    root = os.path.abspath(root if root is not None else default_synthetic_root())
    if generate and gen_kwargs and is_generated(root):
        _check_generation_args(root, gen_kwargs)  # reads the existing JSON info only

    for split, name in _SPLIT_NAMES.items():
        loader = _SyntheticSplitLoader(name, root, split, generate, gen_kwargs)
        if name in DatasetCatalog.list():
            old = DatasetCatalog[name]
            if isinstance(old, _SyntheticSplitLoader) and old._key() == loader._key():
                continue  # already registered the same way: keep the loader (and its loaded metadata)
            DatasetCatalog.remove(name)
        if name in MetadataCatalog.list():  # (stale metadata would make .set below fail)
            MetadataCatalog.remove(name)
        DatasetCatalog.register(name, loader)
        MetadataCatalog.get(name).set(
            json_file=loader.json_file,
            image_root=loader.image_root,
            evaluator_type="coco",
            thing_classes=list(SYNTHETIC_CLASSES),
            domain=SYNTHETIC_SPLIT_DOMAINS[split],
        )
    return SYNTHETIC_TRAIN_NAME, SYNTHETIC_VAL_NAME
