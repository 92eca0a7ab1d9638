"""sd_detr: DETR-style detectors (SD-DETR and its baselines) as a Detectron2 extension.

Importing the package registers its meta-architectures and backbones in Detectron2's registries.
"""
from . import modeling  # noqa: F401  (registers META_ARCH_REGISTRY / BACKBONE_REGISTRY entries)

__version__ = "0.1.0"
