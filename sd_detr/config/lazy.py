"""Helpers for LazyConfig files: loading the shared pieces of ``configs/common``."""
import os

from detectron2.config import LazyConfig


def repo_configs_dir() -> str:
    """The repository's ``configs/`` folder (the package is installed in editable mode)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"sd_detr: configs folder not found at {path}; install the project with "
                                f"`pip install -e .` from a clone of the repository")
    return path


def get_config(relative_path: str):
    """Load a LazyConfig file from ``configs/``, e.g. ``get_config("common/train.py").train``."""
    path = os.path.join(repo_configs_dir(), relative_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"sd_detr.get_config: no config {relative_path!r} (looked for {path})")
    return LazyConfig.load(path)


def apply_tiny_synthetic_size(model):
    """Scale a detector config down in place to the size of every ``*_tiny_synthetic.py`` config, so that
    the detectors compare at one size: a narrow ResNet-18 up to res4 (stride 16, 16-channel stem,
    trainable BatchNorm synchronised across processes), a 64-d transformer with 4 heads and no dropout,
    2 encoder and 3 decoder layers, 30 queries, the 5 synthetic classes, top 50 detections.
    Returns ``model``."""
    model.backbone.update(depth=18, out_features=["res4"], stem_out_channels=16, res2_out_channels=16, freeze_at=0,
                          norm="naiveSyncBN")
    model.in_feature = "res4"
    model.hidden_dim = 64
    model.num_classes = 5
    model.num_select = 50
    model.position_embedding.num_pos_feats = 32
    model.encoder.update(num_layers=2, d_model=64, nhead=4, dim_feedforward=256, dropout=0.0)
    model.decoder.update(num_layers=3, nhead=4, dim_feedforward=256, dropout=0.0)
    model.query_init.num_queries = 30
    return model


def _target_accepts(node, name: str) -> bool:
    """Whether the LazyCall node's target takes a keyword ``name`` (a default not spelled in the config)."""
    import inspect

    from detectron2.utils.registry import locate

    target = node.get("_target_") if hasattr(node, "get") else None
    if target is None:
        return False
    if isinstance(target, str):
        target = locate(target)
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    if name in params:
        return True
    # a configurable/**kwargs __init__ forwarding to a base class: look at the base classes too
    if inspect.isclass(target):
        for base in target.__mro__[1:]:
            try:
                if name in inspect.signature(base.__init__).parameters:
                    return True
            except (TypeError, ValueError):
                continue
    return False


def check_override_keys(cfg, overrides) -> None:
    """Raise a KeyError naming any ``key=value`` override whose key the config does not have.

    OmegaConf would silently create such keys (a typo like ``train.max_iters=10`` would be ignored).
    A key absent from the config is still accepted when it is a keyword argument of the LazyCall target
    it sits under (its default was just not spelled out). Hydra's ``+key=value`` adds a key on purpose.
    """
    import difflib

    from omegaconf import OmegaConf

    missing = object()
    flat = []

    def walk(node, prefix):
        if OmegaConf.is_dict(node) or isinstance(node, dict):
            for k in node.keys():
                flat.append(prefix + str(k))
                try:
                    child = node[k]
                except Exception:  # unresolved interpolation etc.
                    continue
                walk(child, prefix + str(k) + ".")

    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key = item.split("=", 1)[0].strip()
        if key.startswith("+"):
            continue
        key = key.lstrip("~")
        if OmegaConf.select(cfg, key, default=missing) is not missing:
            continue
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key, default=missing) if parent_key else cfg
        if parent is not missing and _target_accepts(parent, leaf):
            continue
        if not flat:
            walk(cfg, "")
        close = difflib.get_close_matches(key, flat, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise KeyError(f"unknown config key {key!r} in override {item!r}{hint}")
