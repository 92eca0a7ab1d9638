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
