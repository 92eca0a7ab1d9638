"""Loading detectron2 dataset dicts for DETR training/evaluation, with clear errors.

:func:`get_detr_dataset_dicts` is a drop-in replacement of
:func:`detectron2.data.get_detection_dataset_dicts` (e.g. in a LazyConfig dataloader:
``dataset=L(get_detr_dataset_dicts)(names="coco_2017_train")``) that

* turns a broken annotation file into a ``ValueError`` naming the dataset and its json file,
* drops degenerate boxes (non-finite values, width or height <= 0) with one warning per dataset,
* checks up front that every image file exists.
"""
import itertools
import json
import logging
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Union

import torch.utils.data as torchdata
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.build import (
    filter_images_with_only_crowd_annotations,
    print_instances_class_histogram,
)
from detectron2.data.detection_utils import check_metadata_consistency
from detectron2.structures import BoxMode

__all__ = ["get_detr_dataset_dicts"]

logger = logging.getLogger(__name__)

# Exceptions detectron2's COCO loader (pycocotools + load_coco_json) raises on malformed json.
# json.JSONDecodeError is a ValueError.
_MALFORMED_JSON_ERRORS = (
    ValueError,
    KeyError,
    TypeError,
    AssertionError,
    AttributeError,
    IndexError,
)

_NUM_EXAMPLES = 5  # how many file names an error/warning message lists


def _expected_format_hint() -> str:
    return (
        "Expected COCO detection JSON: an object with 'images' (list of {id, file_name, width, "
        "height}), 'annotations' (list of {id, image_id, category_id, bbox [x, y, w, h], iscrowd}) "
        "and 'categories' (list of {id, name})."
    )


def _load_one(
    name: str, require_annotations: bool
) -> Union[List[Dict[str, Any]], torchdata.Dataset]:
    """``DatasetCatalog.get(name)`` with errors that name the dataset and its annotation file."""
    if name not in DatasetCatalog.list():
        # same error as detectron2, but raised here so that it is not mistaken for a json problem
        raise KeyError(
            f"Dataset '{name}' is not registered! Available datasets are: "
            f"{', '.join(DatasetCatalog.list())}"
        )
    json_file = MetadataCatalog.get(name).get("json_file")
    if json_file is not None and "://" not in str(json_file) and not os.path.isfile(json_file):
        if name.startswith("sd_detr_synthetic"):
            hint = (
                "Generate the synthetic data with tools/make_synthetic_dataset.py (or "
                "sd_detr.data.register_synthetic_dataset(generate=True))."
            )
        else:
            hint = (
                "Check the DETECTRON2_DATASETS environment variable: detectron2's builtin "
                "datasets such as coco_2017_train are looked up under $DETECTRON2_DATASETS/coco "
                "(default ./datasets/coco)."
            )
        raise FileNotFoundError(
            f"Dataset '{name}': annotation file {json_file} does not exist. {hint}"
        )
    try:
        dicts = DatasetCatalog.get(name)
    except _MALFORMED_JSON_ERRORS as e:
        if json_file is None:
            raise
        raise ValueError(
            f"Dataset '{name}': cannot load annotation file {json_file}: it is not valid COCO "
            f"detection JSON or does not match the dataset's metadata "
            f"({type(e).__name__}: {e}). {_expected_format_hint()}"
        ) from e

    if isinstance(dicts, torchdata.Dataset):
        return dicts
    if not isinstance(dicts, list):
        dicts = list(dicts)
    if len(dicts) == 0:
        where = f" (annotation file {json_file})" if json_file is not None else ""
        msg = f"Dataset '{name}' is empty{where}: no images were loaded."
        if json_file is not None:
            msg += " " + _expected_format_hint()
        raise ValueError(msg)

    if json_file is not None and require_annotations:
        num_annotations = sum(len(d.get("annotations", ())) for d in dicts)
        if num_annotations == 0:
            # pycocotools silently accepts a file without "annotations". Re-reading the file is
            # cheap here: a file without annotations is small (no risk of parsing COCO train twice).
            _check_has_annotations_key(name, json_file)
    return dicts


def _check_has_annotations_key(name: str, json_file: str) -> None:
    try:
        with open(json_file) as f:
            content = json.load(f)
    except (OSError, ValueError):  # pragma: no cover - the loader just parsed it
        return
    if isinstance(content, dict) and "annotations" not in content:
        raise ValueError(
            f"Dataset '{name}': annotation file {json_file} has no 'annotations' key "
            "(image-info-only files such as COCO test-dev need require_annotations=False). "
            + _expected_format_hint()
        )
    logger.warning(f"Dataset '{name}': annotation file {json_file} contains no annotations.")


def _box_wh(values: Sequence[float], mode: BoxMode):
    """(w, h) of a box given in ``mode`` (absolute or relative units, as the box)."""
    if mode in (BoxMode.XYWH_ABS, BoxMode.XYWH_REL, BoxMode.XYWHA_ABS):
        return values[2], values[3]
    if mode in (BoxMode.XYXY_ABS, BoxMode.XYXY_REL):
        return values[2] - values[0], values[3] - values[1]
    raise ValueError(f"Unsupported bbox_mode {mode!r}")


def _drop_degenerate_boxes(name: str, dicts: List[Dict[str, Any]]) -> int:
    """Remove, in place, annotations whose box has a non-finite value or width/height <= 0.

    Logs one warning for the dataset if any was dropped. Returns the number dropped.
    """
    json_file = MetadataCatalog.get(name).get("json_file")
    where = f" (annotation file {json_file})" if json_file is not None else ""
    num_dropped, num_total, bad_images = 0, 0, []
    for record in dicts:
        annos = record.get("annotations")
        if not annos:
            continue
        kept = []
        for anno in annos:
            if "bbox" not in anno:
                kept.append(anno)
                continue
            num_total += 1
            bbox = anno["bbox"]
            try:
                values = [float(v) for v in bbox]
                mode = anno["bbox_mode"]  # BoxMode or int (BoxMode is an IntEnum)
                expected_len = 5 if mode == BoxMode.XYWHA_ABS else 4
                if len(values) != expected_len:
                    raise ValueError(f"expected {expected_len} numbers, got {len(values)}")
                w, h = _box_wh(values, mode)
            except (TypeError, ValueError, KeyError) as e:
                raise ValueError(
                    f"Dataset '{name}'{where}: malformed box {bbox!r} (bbox_mode "
                    f"{anno.get('bbox_mode')!r}) in image {record.get('file_name')}: {e}"
                ) from e
            if all(math.isfinite(v) for v in values) and w > 0 and h > 0:
                kept.append(anno)
        if len(kept) != len(annos):
            num_dropped += len(annos) - len(kept)
            bad_images.append(record.get("file_name", f"image_id={record.get('image_id')}"))
            record["annotations"] = kept
    if num_dropped:
        examples = ", ".join(str(f) for f in bad_images[:_NUM_EXAMPLES])
        more = ", ..." if len(bad_images) > _NUM_EXAMPLES else ""
        logger.warning(
            f"Dataset '{name}'{where}: dropped {num_dropped} degenerate boxes (non-finite "
            f"coordinates or width/height <= 0) out of {num_total} from {len(bad_images)} images: "
            f"{examples}{more}"
        )
    return num_dropped


def _check_image_files(name: str, dicts: List[Dict[str, Any]]) -> None:
    missing = [d.get("file_name") for d in dicts if not os.path.isfile(str(d.get("file_name")))]
    if missing:
        image_root = MetadataCatalog.get(name).get("image_root")
        root = f" (image_root {image_root})" if image_root is not None else ""
        examples = ", ".join(str(f) for f in missing[:_NUM_EXAMPLES])
        more = ", ..." if len(missing) > _NUM_EXAMPLES else ""
        raise FileNotFoundError(
            f"Dataset '{name}'{root}: {len(missing)} of {len(dicts)} image files are missing: "
            f"{examples}{more}"
        )


def get_detr_dataset_dicts(
    names: Union[str, Sequence[str]],
    filter_empty: bool = False,
    check_images: bool = True,
    check_consistency: bool = True,
    require_annotations: bool = True,
) -> Union[List[Dict[str, Any]], torchdata.Dataset]:
    """Load and concatenate the dataset dicts of registered datasets, validating them.

    Same result as :func:`detectron2.data.get_detection_dataset_dicts` (list of dicts in
    detectron2's standard format; boxes stay in the dataset's ``bbox_mode``, usually absolute
    XYWH pixels for COCO json), except that:

    * a malformed COCO annotation file (JSON syntax error, missing or wrongly typed
      ``images``/``annotations``/``categories``) raises ``ValueError`` naming the dataset and its
      ``json_file``; a missing annotation file raises ``FileNotFoundError``;
    * annotations whose box has a non-finite value or width/height <= 0 are dropped, with one
      warning per dataset (images left without boxes are kept unless ``filter_empty``);
    * with ``check_images``, a missing image file raises ``FileNotFoundError`` naming the dataset,
      the number of missing files and the first few paths.

    Crowd annotations are kept (the mapper drops them).

    Args:
        names: a registered dataset name or a list of them.
        filter_empty: drop images without non-crowd annotations (detectron2's default is True;
            DETR training keeps them).
        check_images: check that every ``file_name`` exists.
        check_consistency: check that the datasets have the same ``thing_classes`` and log the
            class histogram, as detectron2 does.
        require_annotations: a COCO json without an ``annotations`` key is an error (set False
            for image-info-only files such as COCO test-dev).

    Returns:
        list[dict] (or a ``ConcatDataset`` when the registered loaders return torch datasets, in
        which case no check is done).
    """
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise ValueError("get_detr_dataset_dicts: no dataset name given.")

    per_dataset = [_load_one(name, require_annotations) for name in names]
    if isinstance(per_dataset[0], torchdata.Dataset):
        return torchdata.ConcatDataset(per_dataset)

    for name, dicts in zip(names, per_dataset):
        if dicts and "annotations" in dicts[0]:
            _drop_degenerate_boxes(name, dicts)
        if check_images:
            _check_image_files(name, dicts)

    dataset_dicts = list(itertools.chain.from_iterable(per_dataset))
    has_instances = "annotations" in dataset_dicts[0]
    if filter_empty and has_instances:
        dataset_dicts = filter_images_with_only_crowd_annotations(dataset_dicts)
    if check_consistency and has_instances:
        try:
            class_names = MetadataCatalog.get(names[0]).thing_classes
            check_metadata_consistency("thing_classes", names)
            print_instances_class_histogram(dataset_dicts, class_names)
        except AttributeError:  # class names are not available for this dataset
            pass
    if not dataset_dicts:
        raise ValueError(f"No images left in {', '.join(names)} after filtering empty images.")
    return dataset_dicts
