"""Every yacs node of the project at once. Kept apart from :mod:`.defaults`, which each detector's module
imports (``MODEL.DETR``), so that no module of the package imports one that imports it back."""
import yaml

from .dab_detr import add_dab_detr_config
from .defaults import add_detr_config
from .sd_detr import add_sd_detr_config
from .smca_detr import add_smca_detr_config


def add_all_configs(cfg):
    """Add the yacs keys of every detector of the project (``MODEL.DETR`` and each detector's own
    node), so that any of the project's .yaml configs can be merged into ``cfg``. Idempotent."""
    for add in (add_detr_config, add_dab_detr_config, add_smca_detr_config, add_sd_detr_config):
        add(cfg)
    return cfg


class UnsafeConfigError(ValueError):
    """A yacs .yaml config holds a tag ``yaml.safe_load`` does not build (``!!python/object/apply:...``)."""


def merge_yaml_config(cfg, path: str):
    """``cfg.merge_from_file(path)`` reading the .yaml (and its ``_BASE_`` files) as data: ``yaml.safe_load``,
    never ``yaml.unsafe_load``. Detectron2's ``CfgNode.merge_from_file`` defaults to ``allow_unsafe=True``
    and, when the safe loader meets a Python tag (``!!python/object/apply:os.system [...]``), loads the file
    again with ``yaml.unsafe_load``, which calls what the tag names; here such a tag is an
    :class:`UnsafeConfigError` naming the file and the tag, and nothing is called. Returns ``cfg``."""
    try:
        cfg.merge_from_file(path, allow_unsafe=False)
    except yaml.constructor.ConstructorError as e:
        where = e.problem_mark.name if e.problem_mark is not None else path
        raise UnsafeConfigError(
            f"refusing to load config {where}: it holds a tag that is not plain data ({e.problem}); a .yaml config is "
            f"data (numbers, strings, lists, mappings) and is read with yaml.safe_load. Write the value itself, "
            f"or use a LazyConfig .py for code") from None
    return cfg
