"""sd_detr: DETR-style detectors (SD-DETR and its baselines) as a Detectron2 extension."""
__version__ = "0.1.0"
