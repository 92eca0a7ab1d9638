"""The one list of the project's detectors, read from Detectron2's ``META_ARCH_REGISTRY``.

A detector is a registered meta-architecture that subclasses
:class:`~sd_detr.modeling.meta_arch.DETRDetector`. Its model-zoo folder (its project) is the first component
of the class's ``MODEL_FILE`` (``"sd_detr/models/sd_detr_r50.py"`` -> ``sd_detr``), and its configs follow the
naming every project uses: ``<project>/<project>_tiny_synthetic.py`` (the CPU-sized one),
``<project>/<project>_r50_12ep.py`` and, where shipped, ``<project>/yacs/<project>_r50_12ep.yaml``.

Tools and tests take their detector lists from :func:`detectors`, so that a fifth detector (a registered
subclass with its project's configs) is picked up everywhere without editing them.
"""
from dataclasses import dataclass
from typing import List, Optional

from .model_zoo import list_configs


@dataclass(frozen=True)
class Detector:
    """One detector: ``name`` is its project (``"sd_detr"``), ``meta_arch`` its registry name (``"SDDETR"``);
    ``title`` the printed name (the class's ``TITLE``, ``"SD-DETR"``); the config fields are model-zoo names
    (:func:`sd_detr.model_zoo.get_config`), ``yacs`` is None where the project ships no yacs config."""

    name: str
    meta_arch: str
    title: str
    tiny: str
    r50: str
    yacs: Optional[str]


def detectors() -> List[Detector]:
    """Every registered detector, in registration order (Conditional DETR, DAB-DETR, SD-DETR, SMCA-DETR as
    ``sd_detr.modeling.meta_arch`` imports them).

    Raises:
        FileNotFoundError: a registered detector whose project lacks its tiny or R50 config (named).
    """
    from detectron2.modeling import META_ARCH_REGISTRY

    from ..modeling.meta_arch import DETRDetector  # registers the project's meta-architectures

    shipped = set(list_configs())
    found = []
    for arch, cls in META_ARCH_REGISTRY:
        if not (isinstance(cls, type) and issubclass(cls, DETRDetector) and getattr(cls, "MODEL_FILE", None)):
            continue
        project = cls.MODEL_FILE.split("/")[0]
        tiny, r50 = f"{project}/{project}_tiny_synthetic.py", f"{project}/{project}_r50_12ep.py"
        for name in (tiny, r50):
            if name not in shipped:
                raise FileNotFoundError(f"detector {arch} (project {project!r}) has no model-zoo config {name!r}")
        yacs = f"{project}/yacs/{project}_r50_12ep.yaml"
        found.append(Detector(project, arch, getattr(cls, "TITLE", arch), tiny, r50, yacs if yacs in shipped else None))
    return found


def detector_names() -> List[str]:
    """The projects of :func:`detectors`: ``["conditional_detr", "dab_detr", "sd_detr", "smca_detr"]``."""
    return [d.name for d in detectors()]
