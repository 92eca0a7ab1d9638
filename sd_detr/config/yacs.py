"""Every yacs node of the project at once. Kept apart from :mod:`.defaults`, which each detector's module
imports (``MODEL.DETR``), so that no module of the package imports one that imports it back."""
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
