"""sd_detr: DETR-style detectors (SD-DETR and its baselines) as a Detectron2 extension.

Importing the package registers its meta-architectures and backbones in Detectron2's registries.
"""
import warnings

# fvcore (nn/focal_loss.py:52,97) and Detectron2 (modeling/box_regression.py:20,119) call torch.jit.script
# at import time, and the pinned torch (constraints.txt) warns on every call: two FutureWarnings on every
# command. Hide only those: the filter is in force while the two libraries are first imported and removed
# afterwards, so users' own torch.jit.script calls still warn. The tools import sd_detr before anything
# that imports detectron2.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is", category=FutureWarning,
                            module=r"torch\.jit\._script")
    import fvcore.nn  # noqa: F401
    import detectron2.modeling  # noqa: F401

    from . import modeling  # noqa: F401  (registers META_ARCH_REGISTRY / BACKBONE_REGISTRY entries)

__version__ = "0.1.0"
