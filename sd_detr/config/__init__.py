from .dab_detr import add_dab_detr_config
from .defaults import add_detr_config
from .lazy import apply_tiny_synthetic_size, check_override_keys, get_config
from .sd_detr import add_sd_detr_config
from .sizes import SIZES, ModelSize, apply_size, apply_size_yacs
from .smca_detr import add_smca_detr_config
from .yacs import add_all_configs

__all__ = ["SIZES", "ModelSize", "add_all_configs", "add_dab_detr_config", "add_detr_config", "add_sd_detr_config",
           "add_smca_detr_config", "apply_size", "apply_size_yacs", "apply_tiny_synthetic_size", "check_override_keys",
           "get_config"]
