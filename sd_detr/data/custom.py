"""Train and evaluate on one's own COCO-format data without writing Python.

:func:`apply_custom_datasets` takes ``"JSON:IMAGES"`` specs (a COCO detection JSON, a colon, the
folder its ``file_name`` entries are relative to), registers each with Detectron2's
:func:`~detectron2.data.datasets.register_coco_instances`, points a LazyConfig's dataloaders and
evaluator at them and makes every ``num_classes`` under ``cfg.model`` follow the dataset's categories.
``tools/lazyconfig_train_net.py --dataset-train JSON:IMAGES --dataset-val JSON:IMAGES`` calls it;
``configs/common/data/custom_coco.py`` does the same through config keys
(``dataloader.custom.train_json=...``), read here when no spec is passed.
"""
import hashlib
import json
import logging
import os
import re
from typing import Any, Dict, List, Optional, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

__all__ = ["apply_custom_datasets", "parse_dataset_spec", "register_custom_coco", "custom_dataset_name",
           "read_categories", "set_num_classes"]

logger = logging.getLogger("sd_detr")

_SPEC_FORMAT = "JSON:IMAGES (a COCO-format annotation file, a colon, the image folder)"
# keys of configs/common/data/custom_coco.py, under cfg.dataloader.custom
_CUSTOM_KEYS = {"train": ("train_json", "train_images"), "val": ("val_json", "val_images")}
_NAME_KEYS = {"train": "dataloader.train.dataset.names", "val": "dataloader.test.dataset.names"}
# dataset names of configs/common/data/custom_coco.py before its paths are set
UNSET_NAMES = {"train": "custom_coco_train_unset", "val": "custom_coco_val_unset"}


def parse_dataset_spec(spec: str, what: str = "dataset") -> Tuple[str, str]:
    """Split ``"JSON:IMAGES"`` into (absolute json path, absolute image folder); ``~`` is expanded.

    A path may itself contain colons: every colon is tried as the separator and the split whose left
    part is an existing file is taken (the first one if several are).

    Raises:
        ValueError: no colon, or an empty part; the message names the spec.
        FileNotFoundError: the JSON file or the image folder does not exist (names the spec and the path).
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"{what} spec {spec!r}: expected {_SPEC_FORMAT}")
    splits = [(spec[:i], spec[i + 1:]) for i, c in enumerate(spec) if c == ":"]
    existing = [s for s in splits if s[0] and os.path.isfile(os.path.expanduser(s[0]))]
    # No left part exists: report the likeliest JSON path, the one ending in .json (a Windows path,
    # C:\data\a.json:C:\data\images, would otherwise be reported as the file "C")
    json_like = [s for s in splits if s[0].lower().endswith(".json")]
    given_json, given_images = (existing or json_like or splits)[0]
    if not given_json or not given_images:
        part = "the JSON file" if not given_json else "the image folder"
        raise ValueError(f"{what} spec {spec!r}: {part} is missing; expected {_SPEC_FORMAT}")
    json_file = os.path.abspath(os.path.expanduser(given_json))
    image_root = os.path.abspath(os.path.expanduser(given_images))
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"{what} spec {spec!r}: annotation file {given_json} does not exist"
                                + (f" ({json_file})" if json_file != given_json else ""))
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"{what} spec {spec!r}: image folder {given_images} does not exist"
                                + (f" ({image_root})" if image_root != given_images else ""))
    return json_file, image_root


def custom_dataset_name(json_file: str, image_root: str) -> str:
    """A stable dataset name for a (json, image folder) pair: ``custom_<json stem>_<8 hex digits>``, the
    digits from the absolute paths, so the same files get the same name in every process (DDP workers,
    a resumed run) and different files never share one."""
    json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)
    digest = hashlib.sha1(f"{json_file}\0{image_root}".encode()).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", os.path.splitext(os.path.basename(json_file))[0]).strip("_")
    return f"custom_{stem or 'coco'}_{digest}"


def register_custom_coco(json_file: str, image_root: str) -> str:
    """Register a COCO-format dataset under :func:`custom_dataset_name`; returns the name.

    Idempotent: a second call with the same files returns the name without registering again.
    """
    json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)
    name = custom_dataset_name(json_file, image_root)
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if meta.get("json_file") != json_file or meta.get("image_root") != image_root:
            raise ValueError(
                f"Dataset name {name!r} is already registered for {meta.get('json_file')}:"
                f"{meta.get('image_root')}, not {json_file}:{image_root}"
            )
        return name
    register_coco_instances(name, {}, json_file, image_root)
    logger.info("Registered dataset %r: annotations %s, images %s", name, json_file, image_root)
    return name


_CATEGORIES_CACHE: Dict[Tuple[str, float, int], List[Tuple[int, str]]] = {}


def read_categories(json_file: str) -> List[Tuple[int, str]]:
    """The (id, name) categories of a COCO JSON, sorted by id (Detectron2's ``load_coco_json`` maps the
    sorted ids to contiguous class indices 0..N-1 in this order). Cached per file path, size and mtime.

    Raises:
        ValueError: the file is not JSON, or has no non-empty ``categories`` list of {id, name}.
    """
    stat = os.stat(json_file)
    key = (os.path.abspath(json_file), stat.st_mtime, stat.st_size)
    if key in _CATEGORIES_CACHE:
        return _CATEGORIES_CACHE[key]
    try:
        with open(json_file) as f:
            content = json.load(f)
    except ValueError as e:
        raise ValueError(f"Annotation file {json_file} is not valid JSON: {e}") from e
    categories = content.get("categories") if isinstance(content, dict) else None
    if not isinstance(categories, list) or not categories:
        raise ValueError(
            f"Annotation file {json_file} has no 'categories' list (COCO format: "
            "'categories': [{'id': 1, 'name': 'cat'}, ...]); the number of classes is taken from it"
        )
    try:
        result = sorted((int(c["id"]), str(c["name"])) for c in categories)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"Annotation file {json_file}: every entry of 'categories' needs an integer 'id' and a 'name' "
            f"({type(e).__name__}: {e})"
        ) from e
    ids = [i for i, _ in result]
    if len(set(ids)) != len(ids):
        raise ValueError(f"Annotation file {json_file}: duplicate category ids in 'categories': {ids}")
    _CATEGORIES_CACHE[key] = result
    return result


def set_num_classes(model_cfg, num_classes: int) -> List[str]:
    """Set every ``num_classes`` key under ``model_cfg`` (a LazyConfig node, walked recursively: meta
    architecture, criterion, SD-DETR's mini-detector, ...) to ``num_classes``; a value that is an
    interpolation (``"${..num_classes}"``) is kept, it follows the key it points to. Returns the dotted
    paths set. Raises ``KeyError`` if there is none."""
    changed, found = [], []

    def walk(node, path):
        if isinstance(node, DictConfig):
            for key in list(node.keys()):
                sub = f"{path}.{key}" if path else str(key)
                if key == "num_classes":
                    found.append(sub)
                    if not OmegaConf.is_interpolation(node, key):
                        node[key] = int(num_classes)
                        changed.append(sub)
                    continue
                walk(node._get_node(key), sub)
        elif isinstance(node, ListConfig):
            for i in range(len(node)):
                walk(node._get_node(i), f"{path}.{i}")

    walk(model_cfg, "model")
    if not found:
        raise KeyError("cfg.model has no 'num_classes' key: cannot make the model follow the dataset's classes")
    return changed


def _spec_from_config(cfg, split: str) -> Optional[Tuple[str, str]]:
    """(json, images) from ``cfg.dataloader.custom.<split>_json/_images`` (custom_coco.py), if both are set."""
    custom = cfg.get("dataloader", {}).get("custom", None)
    if not custom:
        return None
    json_key, images_key = _CUSTOM_KEYS[split]
    json_file, image_root = custom.get(json_key) or "", custom.get(images_key) or ""
    if not json_file and not image_root:
        return None
    if not json_file or not image_root:
        missing = f"dataloader.custom.{json_key if not json_file else images_key}"
        raise ValueError(f"{missing} is not set (dataloader.custom.{json_key}={json_file!r}, "
                         f"dataloader.custom.{images_key}={image_root!r}): set both or neither")
    return parse_dataset_spec(f"{json_file}:{image_root}", what=f"dataloader.custom.{json_key}/{images_key}")


def _set_key(cfg, dotted: str, value: Any) -> None:
    node = cfg
    parts = dotted.split(".")
    for i, part in enumerate(parts[:-1]):
        if part not in node:
            raise KeyError(f"cfg.{'.'.join(parts[:i + 1])} does not exist: cannot set cfg.{dotted}")
        node = node[part]
    if parts[-1] not in node:
        raise KeyError(f"cfg.{dotted} does not exist: this config's dataloader is not a Detectron2 "
                       "build_detection_*_loader(dataset=get_detr_dataset_dicts(names=...)) one")
    node[parts[-1]] = value


def _unset_error(split: str) -> ValueError:
    json_key, images_key = _CUSTOM_KEYS[split]
    flag = "--dataset-train" if split == "train" else "--dataset-val"
    return ValueError(
        f"{_NAME_KEYS[split]} is {UNSET_NAMES[split]!r} (configs/common/data/custom_coco.py): set "
        f"dataloader.custom.{json_key}=PATH.json dataloader.custom.{images_key}=FOLDER, or pass "
        f"{flag} JSON:IMAGES to tools/lazyconfig_train_net.py"
    )


def apply_custom_datasets(cfg, train: Optional[str] = None, val: Optional[str] = None):
    """Point a LazyConfig at COCO-format datasets given as ``"JSON:IMAGES"``; modifies ``cfg`` in place
    and returns it.

    For each of ``train`` / ``val`` given (or, when ``None``, set in ``cfg.dataloader.custom`` as
    ``train_json``/``train_images``/``val_json``/``val_images``, see configs/common/data/custom_coco.py):

    * registers it with ``register_coco_instances`` under :func:`custom_dataset_name` (idempotent);
    * sets ``cfg.dataloader.train.dataset.names`` / ``cfg.dataloader.test.dataset.names`` to that name,
      and ``cfg.dataloader.evaluator.dataset_name`` to the val name unless it is an interpolation
      (``"${..test.dataset.names}"`` in the project's data configs: it follows);
    * records the resolved paths in ``cfg.dataloader.custom`` (so the saved config.yaml names them and a
      second call is a no-op);
    * sets every literal ``num_classes`` under ``cfg.model`` to the number of categories.

    Nothing is done when neither is given nor configured. A split read from ``cfg.dataloader.custom``
    whose dataset name is already the one of its paths was applied before (e.g. by the train tool's
    flags, or in the process that saved this config.yaml): it is only registered, so overrides given
    after the first call (``model.num_classes``, ...) stay.

    Raises:
        ValueError / FileNotFoundError: a malformed spec or a missing file (naming the spec); train and val
            with different category lists (naming both files); only a train set while the config's test
            set has another number of classes.
    """
    specs, applied = {}, set()
    for split, spec in (("train", train), ("val", val)):
        if spec is not None and spec != "":
            specs[split] = parse_dataset_spec(spec, what=f"--dataset-{split}")
            continue
        from_cfg = _spec_from_config(cfg, split)
        current = OmegaConf.select(cfg, _NAME_KEYS[split], default=None)
        if from_cfg is None:
            if current == UNSET_NAMES[split]:
                raise _unset_error(split)
            continue
        specs[split] = from_cfg
        if current == custom_dataset_name(*from_cfg):
            applied.add(split)
    if not specs:
        return cfg
    if applied == set(specs):
        for paths in specs.values():
            register_custom_coco(*paths)  # a new process (DDP worker, a reloaded config.yaml)
        return cfg

    categories = {split: read_categories(json_file) for split, (json_file, _) in specs.items()}
    if len(categories) == 2 and categories["train"] != categories["val"]:
        raise ValueError(
            f"The train and val datasets have different categories: {specs['train'][0]} has "
            f"{_describe(categories['train'])}, {specs['val'][0]} has {_describe(categories['val'])}. "
            "The model's classes come from them, so they must be the same list of (id, name)."
        )
    num_classes = len(next(iter(categories.values())))

    names = {split: register_custom_coco(*paths) for split, paths in specs.items()}
    if "train" in names:
        _set_key(cfg, "dataloader.train.dataset.names", names["train"])
    if "val" in names:
        _set_key(cfg, "dataloader.test.dataset.names", names["val"])
        evaluator = cfg.dataloader.get("evaluator", None)
        if evaluator is not None and "dataset_name" in evaluator \
                and not OmegaConf.is_interpolation(evaluator, "dataset_name"):
            evaluator.dataset_name = names["val"]
    else:
        _check_test_classes(cfg, num_classes, specs["train"][0])

    with open_dict(cfg.dataloader):
        if "custom" not in cfg.dataloader or cfg.dataloader.custom is None:
            cfg.dataloader.custom = {}
        with open_dict(cfg.dataloader.custom):
            for split, (json_file, image_root) in specs.items():
                json_key, images_key = _CUSTOM_KEYS[split]
                cfg.dataloader.custom[json_key] = json_file
                cfg.dataloader.custom[images_key] = image_root

    changed = set_num_classes(cfg.model, num_classes)
    logger.info(
        "Custom data: %s; %d classes (%s) -> %s",
        ", ".join(f"{split} {names[split]} ({specs[split][0]}, images {specs[split][1]})" for split in names),
        num_classes, _describe(next(iter(categories.values()))), ", ".join(changed) or "num_classes (interpolated)",
    )
    return cfg


def _describe(categories: List[Tuple[int, str]], limit: int = 10) -> str:
    shown = ", ".join(f"{i}:{n}" for i, n in categories[:limit])
    more = ", ..." if len(categories) > limit else ""
    return f"{len(categories)} categories [{shown}{more}]"


def _check_test_classes(cfg, num_classes: int, train_json: str) -> None:
    """Only a train set given: the config's own test set must have as many classes (else the run would
    fail or score nonsense at its final evaluation, hours later)."""
    test_names = OmegaConf.select(cfg, "dataloader.test.dataset.names", default=None)
    if test_names is None:
        return
    if isinstance(test_names, str):
        test_names = [test_names]
    for name in test_names:
        if name not in DatasetCatalog.list():
            continue
        classes = MetadataCatalog.get(name).get("thing_classes")
        if classes is not None and len(classes) != num_classes:
            raise ValueError(
                f"The train dataset {train_json} has {num_classes} classes but the config's test dataset "
                f"{name!r} has {len(classes)}: give the validation data too (--dataset-val JSON:IMAGES)"
            )
