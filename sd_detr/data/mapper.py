"""DETR's data augmentation and dataset mapper, built from detectron2 transforms.

The training augmentation reproduces DETR's ``make_coco_transforms("train")``
(facebookresearch/detr, also used by Conditional DETR / DAB-DETR):

* random horizontal flip (p=0.5), then with p=0.5 each, either
* a multi-scale resize (shorter side chosen in 480..800 step 32, longer side <= 1333), or
* a resize of the shorter side to one of (400, 500, 600), a random crop with height and width
  each drawn in [384, 600] (capped by the image size), then the multi-scale resize.

At test time the shorter side is resized to 800 (longer side <= 1333).
"""
import copy
import logging
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.utils.file_io import PathManager
from PIL import Image

__all__ = ["RandomChoice", "build_detr_augmentations", "DetrDatasetMapper", "DETR_TRAIN_MIN_SIZES", "read_image"]

DETR_TRAIN_MIN_SIZES = tuple(range(480, 801, 32))  # (480, 512, ..., 800)

AugLike = Union[T.Augmentation, T.Transform]

logger = logging.getLogger(__name__)

# PIL's modes of one-channel images with more than 8 bits: 16-bit PNG/TIFF ("I;16", "I;16B") and 32-bit
# integers ("I", which older Pillow gives 16-bit PNGs).
_WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _to_8_bit(image: Image.Image, file_name: str) -> Image.Image:
    """A 16-bit one-channel PIL image as 8-bit "L", scaled: value v (0..65535) -> round(v / 257) (0..255).

    PIL's ``convert("RGB")``, which Detectron2's ``read_image`` applies, clips such values at 255
    instead, so a 16-bit image would be read as (nearly) all white. Values outside 0..65535 (a 32-bit
    image) are refused: their range is unknown."""
    values = np.asarray(image)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ValueError(
            f"{file_name}: a {image.mode} image with values {values.min()}..{values.max()}, outside the 16-bit "
            "range 0..65535: convert it to 8 bits per channel"
        )
    # 257 = 65535 / 255 maps 0 -> 0 and 65535 -> 255 exactly
    return Image.fromarray(np.round(values.astype(np.float64) / 257.0).astype(np.uint8), mode="L")


def read_image(file_name: str, format: Optional[str] = None) -> np.ndarray:
    """Detectron2's ``detection_utils.read_image`` (PIL, EXIF orientation applied, ``format`` "RGB",
    "BGR", "L", ...: an HxWxC uint8 array), except that a 16-bit grayscale image (PIL mode "I;16" or
    "I") is scaled to 8 bits (:func:`_to_8_bit`) instead of clipped at 255.

    Why PIL and not ``cv2.IMREAD_UNCHANGED``: it is the reader Detectron2 and the up-front header check
    of ``get_detr_dataset_dicts`` use (same EXIF handling, same size); PIL already reads 16-bit RGB PNGs
    as 8-bit RGB (the high byte of each value)."""
    with PathManager.open(file_name, "rb") as f:
        image = Image.open(f)
        image = utils._apply_exif_orientation(image)
        if image.mode in _WIDE_GRAY_MODES:
            image = _to_8_bit(image, file_name)
        return utils.convert_PIL_to_numpy(image, format)


def _as_augmentation_list(choice) -> T.AugmentationList:
    if isinstance(choice, T.AugmentationList):
        return choice
    if isinstance(choice, (T.Augmentation, T.Transform)):
        return T.AugmentationList([choice])
    return T.AugmentationList(list(choice))


class RandomChoice(T.Augmentation):
    """Apply one of several augmentation sequences, chosen at random.

    Each choice is an :class:`~detectron2.data.transforms.AugmentationList` (a list of
    augmentations/transforms or a single augmentation is wrapped into one). Like
    ``AugmentationList``, calling it augments the ``AugInput`` in place, sequentially through the
    chosen list, and returns the applied transforms as a ``TransformList``, so it can be nested in
    a ``DatasetMapper``'s augmentation list. The choice uses ``np.random`` (seeded per dataloader
    worker by detectron2), like detectron2's own augmentations.
    """

    def __init__(
        self,
        choices: Sequence[Union[T.AugmentationList, Sequence[AugLike], AugLike]],
        probs: Optional[Sequence[float]] = None,
    ):
        """
        Args:
            choices: the alternatives; each an AugmentationList, a list of augmentations or
                transforms, or a single augmentation/transform.
            probs: probability of each choice (normalised to sum 1); default uniform.
        """
        super().__init__()
        self.choices = [_as_augmentation_list(c) for c in choices]
        if not self.choices:
            raise ValueError("RandomChoice needs at least one choice.")
        if probs is None:
            p = np.full(len(self.choices), 1.0 / len(self.choices))
        else:
            p = np.asarray(list(probs), dtype=np.float64)
            if p.shape != (len(self.choices),) or (p < 0).any() or p.sum() <= 0:
                raise ValueError(
                    f"probs must be {len(self.choices)} non-negative numbers with a positive sum, "
                    f"got {list(probs)}"
                )
            p = p / p.sum()
        self.probs = p

    def _choose(self) -> T.AugmentationList:
        return self.choices[int(np.random.choice(len(self.choices), p=self.probs))]

    def __call__(self, aug_input) -> T.Transform:
        """Augment ``aug_input`` in place with a randomly chosen list; return its TransformList."""
        return self._choose()(aug_input)

    def get_transform(self, image) -> T.Transform:
        """Choose a list and return the transforms it would apply to ``image`` (HWC array).

        Only valid when the chosen augmentations need nothing but the image (true for the
        resize/crop/flip augmentations used by DETR); ``__call__`` is the general path.
        """
        return self._choose()(T.AugInput(image))

    def __repr__(self):
        choices = ", ".join(str(c) for c in self.choices)
        probs = ", ".join(f"{p:.3g}" for p in self.probs)
        return f"RandomChoice(choices=[{choices}], probs=[{probs}])"

    __str__ = __repr__


def build_detr_augmentations(
    is_train: bool,
    min_sizes: Sequence[int] = DETR_TRAIN_MIN_SIZES,
    max_size: int = 1333,
    crop_resize: Sequence[int] = (400, 500, 600),
    crop_size: Sequence[int] = (384, 600),
    crop_prob: float = 0.5,
    test_min_size: int = 800,
    test_max_size: int = 1333,
    vertical_flip: bool = False,
    rotate90: bool = False,
    brightness: Optional[Sequence[float]] = None,
    contrast: Optional[Sequence[float]] = None,
) -> List[T.Augmentation]:
    """DETR's augmentation as a list of detectron2 augmentations (see the module docstring).

    Args:
        is_train: training (random) or test (deterministic resize) augmentation.
        min_sizes: candidate shorter-side lengths (pixels) of the multi-scale resize.
        max_size: cap (pixels) of the longer side of the multi-scale resize.
        crop_resize: candidate shorter-side lengths (pixels) of the resize before the crop
            (no cap on the longer side, as in DETR).
        crop_size: (min, max) crop height and width in pixels ("absolute_range" crop: each side
            is drawn uniformly in [min(min, side), min(max, side)]).
        crop_prob: probability of the crop branch (DETR: 0.5); 0 keeps only the multi-scale resize (the
            tiny demo's short schedule learns faster without crops: projects/sd_detr/README.md).
        test_min_size, test_max_size: test-time shorter-side length and longer-side cap, pixels.
        vertical_flip, rotate90, brightness, contrast: stronger augmentation for small datasets
            whose images have no up or down (microscopy, aerial), off by default (DETR has none of them):
            a vertical flip (p = 0.5), a rotation by 0, 90, 180 or 270 degrees (boxes stay exact), and
            brightness / contrast factors drawn uniformly in ``(lo, hi)`` (e.g. ``(0.8, 1.2)``), applied
            after the geometry. Set them by override, e.g.
            ``dataloader.train.mapper.augmentations.rotate90=True`` (docs/ablations.md measures them).

    Returns:
        list of augmentations, to be passed as ``augmentations`` to :class:`DetrDatasetMapper`.
    """
    if not is_train:
        return [T.ResizeShortestEdge(test_min_size, test_max_size)]
    min_sizes = tuple(int(s) for s in min_sizes)
    multi_scale = T.ResizeShortestEdge(min_sizes, max_size, sample_style="choice")
    geometry = [T.RandomFlip(horizontal=True, vertical=False)]
    if vertical_flip:
        geometry.append(T.RandomFlip(horizontal=False, vertical=True))
    if rotate90:
        geometry.append(T.RandomRotation([0, 90, 180, 270], expand=True, sample_style="choice"))
    photometric = []
    for name, factors, aug in (("brightness", brightness, T.RandomBrightness), ("contrast", contrast, T.RandomContrast)):
        if factors is not None:
            lo, hi = (float(f) for f in factors)
            if not 0 <= lo <= hi:
                raise ValueError(f"build_detr_augmentations: {name} must be (lo, hi) with 0 <= lo <= hi, got {factors}")
            photometric.append(aug(lo, hi))
    crop_prob = float(crop_prob)
    if not 0.0 <= crop_prob <= 1.0:
        raise ValueError(f"build_detr_augmentations: crop_prob must be in [0, 1], got {crop_prob}")
    if crop_prob == 0.0:
        return geometry + [multi_scale] + photometric
    return geometry + [
        RandomChoice(
            [
                [multi_scale],
                [
                    T.ResizeShortestEdge(tuple(int(s) for s in crop_resize), sample_style="choice"),
                    T.RandomCrop("absolute_range", tuple(int(s) for s in crop_size)),
                    T.ResizeShortestEdge(min_sizes, max_size, sample_style="choice"),
                ],
            ],
            probs=(1.0 - crop_prob, crop_prob),
        ),
    ] + photometric


class DetrDatasetMapper(DatasetMapper):
    """detectron2's :class:`~detectron2.data.DatasetMapper` with DETR's defaults.

    Maps a detectron2 dataset dict to the model input dict:

    * ``"image"``: uint8 tensor (C, H, W) of the augmented image, channels in ``image_format``;
    * ``"instances"`` (training only, as in detectron2): ``gt_boxes`` (``Boxes``, absolute XYXY
      pixels of the augmented image, clipped to it) and ``gt_classes`` (int64 contiguous class
      ids). Crowd annotations are dropped, boxes emptied by the crop are removed, and an image
      without annotations gives zero instances;
    * ``"height"``, ``"width"`` (original image size, for the evaluator), ``"file_name"``,
      ``"image_id"``, copied from the dataset dict.

    In training (``skip_bad_images``), an image that cannot be read or whose size differs from the
    record's width/height does not stop the run: the mapper logs a warning naming the file (once per
    file, with the number of images skipped so far by this worker) and maps the last good record in its
    place. (Returning None, Detectron2's way of skipping a sample, crashes detectron2 0.6's MapDataset on
    Python >= 3.11: it calls ``random.sample`` on a set, data/common.py ``MapDataset.__getitem__``.)
    ``get_detr_dataset_dicts`` checks the images up front, so this is the net for what that misses
    (``check_images="exists"``, corruption inside a JPEG, a file changed during training). The first
    image a worker draws has no good one before it: it still raises. At test time a bad image is an
    error: skipping it would silently count its objects as missed.

    Usable from a LazyConfig::

        L(DetrDatasetMapper)(
            is_train=True,
            augmentations=L(build_detr_augmentations)(is_train=True),
            image_format="RGB",
        )
    """

    def __init__(
        self,
        is_train: bool = True,
        *,
        augmentations: Optional[Sequence[AugLike]] = None,
        image_format: str = "RGB",
        skip_bad_images: Optional[bool] = None,
        cache_images: bool = False,
        **kwargs,
    ):
        """
        Args:
            is_train: training (keeps and transforms annotations) or inference mode.
            augmentations: list of detectron2 augmentations/transforms; default
                ``build_detr_augmentations(is_train)``.
            image_format: an image format supported by ``detection_utils.read_image``
                ("RGB", "BGR", ...).
            skip_bad_images: replace an unreadable or wrongly sized image by the last good one with a
                warning instead of raising; default ``is_train``.
            cache_images: keep each decoded image in memory (read-only) after its first read, so later epochs
                skip the decoding. For small datasets only (the synthetic demo: 320 images, about 30 MB per
                loader process); a file changed on disk during training is not re-read.
            kwargs: other :class:`DatasetMapper` arguments (``use_instance_mask``, ...).
        """
        self.skip_bad_images = is_train if skip_bad_images is None else bool(skip_bad_images)
        self.num_skipped = 0  # images replaced so far (by this copy: each loader worker has its own)
        self._last_good = None
        self._bad_files = set()
        self._image_cache = {} if cache_images else None
        if augmentations is None:
            augmentations = build_detr_augmentations(is_train)
        elif isinstance(augmentations, (T.Augmentation, T.Transform)):
            augmentations = [augmentations]
        super().__init__(
            is_train, augmentations=list(augmentations), image_format=image_format, **kwargs
        )

    def _read_image(self, dataset_dict):
        file_name = dataset_dict["file_name"]
        if self._image_cache is not None and file_name in self._image_cache:
            return self._image_cache[file_name]
        try:
            image = read_image(file_name, format=self.image_format)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"Image file not found: {file_name}") from e
        except Exception as e:
            raise OSError(f"Cannot read image file {file_name}: {type(e).__name__}: {e}") from e
        if self._image_cache is not None:
            image.setflags(write=False)  # an augmentation writing into it would change every later epoch
            self._image_cache[file_name] = image
        return image

    def __call__(self, dataset_dict):
        """
        Args:
            dataset_dict: one record in detectron2's dataset format (boxes in any ``bbox_mode``).

        Returns:
            dict: see the class docstring.
        """
        if not self.skip_bad_images:
            return self._map(dataset_dict)
        try:
            result = self._map(dataset_dict)
        except (OSError, utils.SizeMismatchError) as e:
            if self._last_good is None:
                raise  # nothing to put in its place yet; the error names the file
            self.num_skipped += 1
            file_name = dataset_dict.get("file_name")
            if file_name not in self._bad_files:
                self._bad_files.add(file_name)
                logger.warning(
                    f"Skipping training image {file_name}: {type(e).__name__}: {e}; using "
                    f"{self._last_good.get('file_name')} in its place ({self.num_skipped} images skipped so "
                    "far by this data loader worker)"
                )
            return self._map(self._last_good)
        self._last_good = dataset_dict
        return result

    def _boxes_only(self) -> bool:
        """Whether the annotations need only their boxes and classes (no masks, keypoints or boxes recomputed
        from masks): then :meth:`_transform_annotations` transforms them all at once."""
        return not (self.use_instance_mask or self.use_keypoint or self.recompute_boxes)

    def _map(self, dataset_dict):
        # it is modified below: only its top level when the annotations are read, not changed (boxes only)
        dataset_dict = dict(dataset_dict) if self._boxes_only() else copy.deepcopy(dataset_dict)
        image = self._read_image(dataset_dict)
        utils.check_image_size(dataset_dict, image)  # its error names the file and both sizes

        if "sem_seg_file_name" in dataset_dict:
            sem_seg_gt = utils.read_image(dataset_dict.pop("sem_seg_file_name"), "L").squeeze(2)
        else:
            sem_seg_gt = None

        aug_input = T.AugInput(image, sem_seg=sem_seg_gt)
        transforms = self.augmentations(aug_input)
        image, sem_seg_gt = aug_input.image, aug_input.sem_seg

        image_shape = image.shape[:2]  # h, w
        chw = np.ascontiguousarray(image.transpose(2, 0, 1))
        if not chw.flags.writeable:  # the cached image itself (one channel, no transform): not shared
            chw = chw.copy()
        dataset_dict["image"] = torch.as_tensor(chw)
        if sem_seg_gt is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(sem_seg_gt.astype("long"))

        if self.proposal_topk is not None:
            utils.transform_proposals(
                dataset_dict, image_shape, transforms, proposal_topk=self.proposal_topk
            )

        if not self.is_train:
            dataset_dict.pop("annotations", None)
            dataset_dict.pop("sem_seg_file_name", None)
            return dataset_dict

        if "annotations" in dataset_dict:
            # drops iscrowd annotations, converts boxes to absolute XYXY in the augmented image
            # (clipped to it) and removes boxes emptied by the crop
            self._transform_annotations(dataset_dict, transforms, image_shape)
        else:
            # DETR trains on images without objects too: give them an empty target
            dataset_dict["instances"] = utils.annotations_to_instances([], image_shape)
        return dataset_dict

    def _transform_annotations(self, dataset_dict, transforms, image_shape):
        """detectron2's ``DatasetMapper._transform_annotations`` (crowd annotations dropped, boxes
        transformed, clipped to the image, empty ones removed), with all the boxes of an image transformed in
        one call when only boxes and classes are needed: the same ``Instances``, bit for bit, for the list
        boxes of detectron2's dataset dicts (tests/data/test_mapper.py), at a fraction of the per-annotation
        cost. Otherwise (masks, keypoints) detectron2's own per-annotation path."""
        if not self._boxes_only():
            return super()._transform_annotations(dataset_dict, transforms, image_shape)
        annos = [obj for obj in dataset_dict.pop("annotations") if obj.get("iscrowd", 0) == 0]
        boxes = np.zeros((len(annos), 4))
        modes = [obj["bbox_mode"] for obj in annos]
        for mode in set(modes):
            rows = [i for i, m in enumerate(modes) if m == mode]
            # as transform_instance_annotations converts one list box: in float32 (torch's default dtype for
            # a list of floats), except XYXY_ABS, returned as given
            dtype = np.float64 if mode == BoxMode.XYXY_ABS else np.float32
            given = np.asarray([annos[i]["bbox"] for i in rows], dtype=dtype).reshape(len(rows), -1)
            boxes[rows] = BoxMode.convert(given, mode, BoxMode.XYXY_ABS)
        if len(annos):
            if isinstance(transforms, (tuple, list)):
                transforms = T.TransformList(transforms)
            h, w = image_shape
            boxes = np.minimum(transforms.apply_box(boxes).clip(min=0), [w, h, w, h])
        instances = Instances(image_shape)
        instances.gt_boxes = Boxes(boxes)
        instances.gt_classes = torch.tensor([int(obj["category_id"]) for obj in annos], dtype=torch.int64)
        dataset_dict["instances"] = utils.filter_empty_instances(instances)
