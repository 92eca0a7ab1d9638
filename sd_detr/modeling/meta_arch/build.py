"""Building a detector from a yacs ``CfgNode`` (Detectron2's registry path: ``build_model(cfg)``,
``DefaultPredictor``) out of the same LazyConfig model file the LazyConfig path instantiates.

The model file of the detector (``projects/<detector>/configs/models/*.py``, shipped in the package as the
model-zoo config ``"<detector>/models/*.py"``) is the one source of its defaults. The yacs keys of
:func:`sd_detr.config.add_detr_config` and of each detector's node default to
``None`` (= the model file's value); a key a .yaml or ``--opts`` sets overrides the file's value at the
place(s) :data:`DETR_KEYS` (or the detector's own table) names. The backbone is Detectron2's:
``build_backbone(cfg)`` with ``MODEL.BACKBONE`` / ``MODEL.RESNETS`` (so any registered backbone works), and
``MODEL.PIXEL_MEAN`` / ``PIXEL_STD`` and ``INPUT.FORMAT`` are Detectron2's keys too. The parts are then
instantiated in the model file's order, so that with one seed both paths give the same weights.
"""
from typing import Dict, Iterable, Mapping, Optional, Sequence

from detectron2.config import instantiate
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from detectron2.utils.registry import locate
from omegaconf import OmegaConf

from ...model_zoo.model_zoo import get_config
from ..losses import FocalLoss

# MODEL.DETR.<KEY> -> the places of the model config it sets
DETR_KEYS: Dict[str, Sequence[str]] = {
    "NUM_CLASSES": ("num_classes",),
    "NUM_QUERIES": ("query_init.num_queries",),
    "HIDDEN_DIM": ("hidden_dim",),
    "NHEADS": ("encoder.nhead", "decoder.nhead"),
    "DIM_FEEDFORWARD": ("encoder.dim_feedforward", "decoder.dim_feedforward"),
    "ENC_LAYERS": ("encoder.num_layers",),
    "DEC_LAYERS": ("decoder.num_layers",),
    "DROPOUT": ("encoder.dropout", "decoder.dropout"),
    "ACTIVATION": ("encoder.activation", "decoder.activation"),
    "IN_FEATURE": ("in_feature",),
    "DEEP_SUPERVISION": ("aux_loss",),
    "COST_CLASS": ("criterion.matcher.cost_class",),
    "COST_BBOX": ("criterion.matcher.cost_bbox",),
    "COST_GIOU": ("criterion.matcher.cost_giou",),
    "CLASS_WEIGHT": ("criterion.weight_dict.loss_class",),
    "BBOX_WEIGHT": ("criterion.weight_dict.loss_bbox",),
    "GIOU_WEIGHT": ("criterion.weight_dict.loss_giou",),
    # the focal loss's alpha / gamma also reach the class loss when it is the focal loss (not TAL's)
    "FOCAL_ALPHA": ("criterion.matcher.focal_alpha",),
    "FOCAL_GAMMA": ("criterion.matcher.focal_gamma",),
    "NUM_SELECT": ("num_select",),
    "SIZE_DIVISIBILITY": ("size_divisibility",),
    "REFERENCE_EPS": ("reference_eps",),
    "BOX_HEAD_INIT": ("box_head_init",),
    "CLIP_BOXES": ("clip_boxes",),
}


def load_model_file(name: str):
    """The ``model`` node of the model-zoo config ``name`` (e.g. ``"sd_detr/models/sd_detr_r50.py"``, the
    repository's ``projects/sd_detr/configs/models/sd_detr_r50.py``), read from inside the installed package
    (:func:`sd_detr.model_zoo.get_config`); a fresh copy each call."""
    return get_config(name).model


def target_of(node):
    """The class (or function) a LazyCall node builds; None for anything else."""
    target = node.get("_target_") if OmegaConf.is_dict(node) else None
    return locate(target) if isinstance(target, str) else target


def set_given(model, key: str, value, places: Iterable[str]) -> None:
    """Set ``value`` at each place of ``model`` (dotted paths) unless it is unset (None or ""). A place
    under a part the model does not have (e.g. the task-aware query generator of a row without it) is an
    error naming the yacs ``key``."""
    if value is None or (isinstance(value, str) and value == ""):
        return
    if isinstance(value, tuple):
        value = list(value)
    for place in places:
        parent_path, _, leaf = place.rpartition(".")
        parent = OmegaConf.select(model, parent_path) if parent_path else model
        if not OmegaConf.is_dict(parent):
            raise KeyError(f"{key} = {value!r}: the model has no {parent_path!r} for it to set")
        parent[leaf] = value


def apply_keys(model, node: Optional[Mapping], prefix: str, table: Mapping[str, Sequence[str]]) -> None:
    """Apply every key of yacs ``node`` that ``table`` names (``prefix``: the node's name in messages)."""
    if node is None:
        return
    for name, places in table.items():
        set_given(model, f"{prefix}.{name}", node.get(name), places)


def apply_detr_keys(cfg, model) -> None:
    """``MODEL.DETR.*``, ``MODEL.PIXEL_MEAN`` / ``PIXEL_STD`` and ``INPUT.FORMAT`` onto ``model``."""
    if not hasattr(cfg.MODEL, "DETR"):
        raise KeyError("config has no MODEL.DETR: call sd_detr.config.add_detr_config(cfg) before merging the file")
    d = cfg.MODEL.DETR
    apply_keys(model, d, "MODEL.DETR", DETR_KEYS)
    if OmegaConf.is_dict(model.criterion.get("class_loss")) and target_of(model.criterion.class_loss) is FocalLoss:
        set_given(model, "MODEL.DETR.FOCAL_ALPHA", d.get("FOCAL_ALPHA"), ["criterion.class_loss.alpha"])
        set_given(model, "MODEL.DETR.FOCAL_GAMMA", d.get("FOCAL_GAMMA"), ["criterion.class_loss.gamma"])
    set_given(model, "MODEL.PIXEL_MEAN", cfg.MODEL.PIXEL_MEAN, ["pixel_mean"])
    set_given(model, "MODEL.PIXEL_STD", cfg.MODEL.PIXEL_STD, ["pixel_std"])
    set_given(model, "INPUT.FORMAT", cfg.INPUT.FORMAT, ["input_format"])


def instantiate_parts(cfg, model, meta_arch) -> dict:
    """The constructor arguments of ``meta_arch`` from ``model`` (interpolations resolved), each part
    instantiated in the file's order; the backbone is ``build_backbone(cfg)``."""
    target = target_of(model)
    if target is not meta_arch:
        raise TypeError(f"the model file builds {getattr(target, '__name__', target)}, not {meta_arch.__name__}")
    OmegaConf.resolve(model)
    args = {}
    for name in model.keys():
        if name == "_target_":
            continue
        if name == "backbone":
            args[name] = build_backbone(cfg, ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN)))
        else:
            args[name] = instantiate(model[name])
    return args
