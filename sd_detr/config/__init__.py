from .defaults import add_all_configs, add_detr_config
from .lazy import check_override_keys, get_config, repo_configs_dir

__all__ = ["add_all_configs", "add_detr_config", "check_override_keys", "get_config", "repo_configs_dir"]
