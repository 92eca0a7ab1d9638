"""Finding and loading the configs that ship inside the package.

One lookup, in one place: the ``configs`` folder next to this file. setup.py makes it at build time (as
Detectron2's setup.py makes ``detectron2/model_zoo/configs``): in a wheel (``pip install .``) it holds copies of
the repository's ``configs/`` and ``projects/<p>/configs/``; in an editable install (``pip install -e .``) it
holds relative links to those folders of the clone, so that an edit there is seen at once. Nothing here looks
at where the repository lies.
"""
import difflib
import os
from typing import List

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
_SUFFIXES = (".py", ".yaml")


class UnknownConfigError(FileNotFoundError):
    """A model-zoo name that names no shipped config."""


def _configs_dir() -> str:
    if not os.path.isdir(CONFIGS_DIR):
        raise FileNotFoundError(
            f"sd_detr.model_zoo: no configs folder at {CONFIGS_DIR}: this copy of sd_detr was not installed by its "
            f"setup.py, which makes the folder (a clone put on sys.path by hand, or installed before the model zoo "
            f"existed). Run `pip install -e .` in the clone (it links configs/ and projects/*/configs/ there), or "
            f"install a wheel (`pip install .`)")
    return CONFIGS_DIR


def list_configs() -> List[str]:
    """Every model-zoo name (``.py`` and ``.yaml`` files), sorted, with ``/`` separators."""
    root = _configs_dir()
    names = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
        rel = os.path.relpath(folder, root)
        for f in files:
            if f.endswith(_SUFFIXES):
                names.append(f if rel == "." else f"{rel}/{f}".replace(os.sep, "/"))
    return sorted(names)


def get_config_file(name: str) -> str:
    """The absolute path of the shipped config ``name`` (e.g. ``"sd_detr/sd_detr_r50_12ep.py"``) inside the
    installed package (in an editable install: through the links into the clone; not resolved, so that the
    configs' relative imports stay inside the model zoo).

    Raises:
        ValueError: ``name`` is not a relative path below the model zoo (absolute, or with ``..``).
        UnknownConfigError: no such config; the message names it and lists close names.
    """
    if not isinstance(name, str) or not name or os.path.isabs(name) or ".." in name.replace(os.sep, "/").split("/"):
        raise ValueError(f"sd_detr.model_zoo: {name!r} is not a model-zoo name (a relative path like "
                         f"'sd_detr/sd_detr_r50_12ep.py'; list_configs() gives them all)")
    path = os.path.join(_configs_dir(), *name.replace(os.sep, "/").split("/"))
    if not os.path.isfile(path):
        close = difflib.get_close_matches(name, list_configs(), n=3, cutoff=0.6)  # a repository path too
        hint = f"Did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise UnknownConfigError(f"sd_detr.model_zoo: no config {name!r} (looked for {path}). {hint}"
                                 f"sd_detr.model_zoo.list_configs() lists the shipped configs")
    return path


def get_config(name: str):
    """Load the shipped config ``name``: a ``.py`` name with Detectron2's ``LazyConfig.load`` (a fresh copy each
    call, e.g. ``get_config("common/train.py").train``), a ``.yaml`` name as a yacs ``CfgNode``: Detectron2's
    defaults, every detector's keys (:func:`sd_detr.config.add_all_configs`) and the file merged as data
    (:func:`sd_detr.config.yacs.merge_yaml_config`), ready for ``build_model`` / ``DefaultPredictor``."""
    path = get_config_file(name)
    if name.endswith(".py"):
        from detectron2.config import LazyConfig

        return LazyConfig.load(path)
    if name.endswith(".yaml"):
        from detectron2.config import get_cfg

        from ..config.yacs import add_all_configs, merge_yaml_config

        return merge_yaml_config(add_all_configs(get_cfg()), path)
    raise ValueError(f"sd_detr.model_zoo: {name!r} is neither a LazyConfig .py nor a yacs .yaml config")
