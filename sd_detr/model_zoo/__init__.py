"""The project's configs, shipped inside the package (as Detectron2's ``detectron2.model_zoo``): a name is a
path below the model zoo, ``"common/train.py"`` for ``configs/common/train.py`` of the repository and
``"<project>/..."`` for ``projects/<project>/configs/...``, e.g. ``"sd_detr/sd_detr_r50_12ep.py"``,
``"sd_detr/ablations/table2_dfl.py"``, ``"conditional_detr/yacs/conditional_detr_r50_12ep.yaml"``,
``"sd_detr/models/sd_detr_r50.py"``. :func:`list_configs` gives them all."""
from .detectors import Detector, detector_names, detectors
from .model_zoo import UnknownConfigError, get_config, get_config_file, list_configs

__all__ = ["Detector", "UnknownConfigError", "detector_names", "detectors", "get_config", "get_config_file", "list_configs"]
