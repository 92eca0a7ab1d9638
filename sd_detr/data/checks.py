"""Checks of a training run's inputs before any work is spent on it.

:func:`check_inputs_before_training` is called by ``sd_detr.engine.do_train`` before the model is built:
the train loader checks its own data when it is built, but the test set is loaded only at the first
evaluation, after ``eval_period`` (or all) iterations, so a missing val image or a val set of other
classes used to fail hours into a run.
"""
import logging
from typing import List, Optional

from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from omegaconf import DictConfig, ListConfig, OmegaConf

from .custom import read_categories

__all__ = ["check_inputs_before_training", "model_num_classes"]

logger = logging.getLogger(__name__)


def model_num_classes(model_cfg) -> List[int]:
    """The distinct values of every ``num_classes`` key under ``model_cfg`` (a LazyConfig node, walked
    recursively, interpolations resolved), sorted; empty if there is none."""
    values = set()

    def walk(node):
        if isinstance(node, DictConfig):
            for key in node.keys():
                if key == "num_classes":
                    value = node.get(key)
                    if isinstance(value, int) and not isinstance(value, bool):
                        values.add(value)
                    continue
                walk(node._get_node(key))
        elif isinstance(node, ListConfig):
            for i in range(len(node)):
                walk(node._get_node(i))

    walk(model_cfg)
    return sorted(values)


def _names(cfg, split: str) -> List[str]:
    names = OmegaConf.select(cfg, f"dataloader.{split}.dataset.names", default=None)
    if names is None:
        return []
    return [names] if isinstance(names, str) else [str(n) for n in names]


def _classes(name: str) -> Optional[List[str]]:
    """The dataset's class names: its metadata's ``thing_classes`` or, for a COCO JSON not loaded yet
    (``register_coco_instances`` sets them only when the file is loaded), the JSON's categories."""
    if name not in DatasetCatalog.list():
        return None
    meta = MetadataCatalog.get(name)
    classes = meta.get("thing_classes")
    if classes is not None:
        return list(classes)
    json_file = meta.get("json_file")
    if json_file is None:
        return None
    try:
        return [n for _, n in read_categories(json_file)]
    except (OSError, ValueError):
        return None  # the loader reports a broken file with its own message


def _shown(classes: List[str], limit: int = 8) -> str:
    return ", ".join(classes[:limit]) + (", ..." if len(classes) > limit else "")


def check_inputs_before_training(cfg) -> None:
    """Raise before a training run is started if one of its inputs would fail later:

    * ``train.max_iter`` negative (``ValueError`` naming the key and value);
    * the test set (``cfg.dataloader.test.dataset``, when there is an evaluator) is loaded, so it gets
      the up-front checks of :func:`~sd_detr.data.get_detr_dataset_dicts` the train set gets (missing or
      wrongly sized images, malformed annotations, duplicate image ids, ...), and its errors come now;
    * a train set with more classes than the model's ``num_classes`` (the matcher would index past the
      class logits), e.g. ``--dataset-val`` alone, which sets the model's classes from the val set;
    * a test set whose classes are not the train set's (scores would be of other classes).
    Each class error names the dataset(s) and both counts.
    """
    max_iter = OmegaConf.select(cfg, "train.max_iter", default=None)
    if isinstance(max_iter, (int, float)) and max_iter < 0:
        raise ValueError(f"train.max_iter={max_iter}: the number of iterations must be >= 0 "
                         "(0 evaluates the initial weights without training)")

    # the test set first: loading a COCO JSON sets its thing_classes, used below
    dataloader = cfg.get("dataloader", None)
    if dataloader is not None and "evaluator" in dataloader and "test" in dataloader:
        dataset = OmegaConf.select(cfg, "dataloader.test.dataset", default=None)
        if dataset is not None:
            logger.info("Checking the test set before training: %s", ", ".join(_names(cfg, "test")) or dataset)
            instantiate(dataset)

    num_classes = model_num_classes(cfg.model) if "model" in cfg else []
    train = {n: _classes(n) for n in _names(cfg, "train")}
    test = {n: _classes(n) for n in _names(cfg, "test")}
    if num_classes:
        for name, classes in train.items():
            if classes is not None and len(classes) > min(num_classes):
                raise ValueError(
                    f"The train dataset {name!r} has {len(classes)} classes ({_shown(classes)}) but the model's "
                    f"num_classes is {min(num_classes)}: the labels past {min(num_classes) - 1} have no class "
                    "logit. With own data, give the train set too (--dataset-train JSON:IMAGES: --dataset-val "
                    "alone makes the model follow the val set's categories), or set model.num_classes."
                )
    for train_name, train_classes in train.items():
        for test_name, test_classes in test.items():
            if train_classes is not None and test_classes is not None and train_classes != test_classes:
                raise ValueError(
                    f"The train dataset {train_name!r} has {len(train_classes)} classes ({_shown(train_classes)}) "
                    f"but the test dataset {test_name!r} has {len(test_classes)} ({_shown(test_classes)}): "
                    "the model would be scored on classes it was not trained for. Give train and val data "
                    "with the same categories."
                )
