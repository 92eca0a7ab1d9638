from .defaults import add_detr_config
from .lazy import get_config, repo_configs_dir

__all__ = ["add_detr_config", "get_config", "repo_configs_dir"]
