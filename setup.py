import os
import shutil
from typing import Dict, List

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_ZOO = os.path.join(HERE, "sd_detr", "model_zoo", "configs")


def model_zoo_sources() -> Dict[str, str]:
    """Model-zoo folder name -> source folder of the repository: each entry of ``configs/`` (``common``)
    under its own name, and each ``projects/<p>/configs`` as ``<p>``. Empty outside a clone (an sdist)."""
    sources = {}
    configs = os.path.join(HERE, "configs")
    if os.path.isdir(configs):
        for name in sorted(os.listdir(configs)):
            sources[name] = os.path.join(configs, name)
    projects = os.path.join(HERE, "projects")
    if os.path.isdir(projects):
        for name in sorted(os.listdir(projects)):
            folder = os.path.join(projects, name, "configs")
            if os.path.isdir(folder):
                if name in sources:
                    raise SystemExit(f"setup.py: projects/{name}/configs and configs/{name} would share the "
                                     f"model-zoo name {name!r}: rename one")
                sources[name] = folder
    return sources


def link_model_zoo_configs() -> List[str]:
    """Make ``sd_detr/model_zoo/configs`` (git-ignored) from the repository's config folders, as Detectron2's
    setup.py makes ``detectron2/model_zoo/configs``: one relative symlink per :func:`model_zoo_sources` entry
    (copies where symlinks fail), remade on every run so that a new project appears. An editable install
    reads the clone's files through the links; a wheel holds real copies (the build follows the links).
    Outside a clone (an sdist: no ``configs/``) the folder it brings is kept. Returns the package-data
    patterns: every .py and .yaml file under it, relative to ``sd_detr/model_zoo``."""
    sources = model_zoo_sources()
    if sources:
        if os.path.islink(MODEL_ZOO):
            os.unlink(MODEL_ZOO)
        elif os.path.isdir(MODEL_ZOO):
            shutil.rmtree(MODEL_ZOO)  # removes the links, never what they point to
        os.makedirs(MODEL_ZOO)
        for name, source in sources.items():
            dest = os.path.join(MODEL_ZOO, name)
            try:
                os.symlink(os.path.relpath(source, MODEL_ZOO), dest)
            except OSError:
                (shutil.copytree if os.path.isdir(source) else shutil.copy2)(source, dest)
    if not os.path.isdir(MODEL_ZOO):
        raise SystemExit(f"setup.py: no configs/ or projects/ to build the model zoo from, and no {MODEL_ZOO}")
    files = []
    for folder, dirs, names in os.walk(MODEL_ZOO, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        files += [os.path.relpath(os.path.join(folder, n), os.path.dirname(MODEL_ZOO))
                  for n in sorted(names) if n.endswith((".py", ".yaml"))]
    return files


setup(
    name="sd_detr",
    version="0.1.0",
    description="Detectron2 extension for end-to-end object detection with transformers: "
    "SD-DETR, Conditional DETR, DAB-DETR, SMCA-DETR and the cross-stage label assigner.",
    packages=find_packages(include=["sd_detr", "sd_detr.*"]),
    # the configs ship inside the package (sd_detr.model_zoo.get_config("sd_detr/sd_detr_r50_12ep.py")), so that
    # the library works from any directory, installed from a wheel too
    package_data={"sd_detr.model_zoo": link_model_zoo_configs()},
    python_requires=">=3.9",
    # detectron2 0.6 is not on the package registry under its own name: scripts/setup_env.sh builds it
    # from the pb1-detectron2 source release. Pinned versions live in constraints.txt.
    install_requires=[
        "torch>=2.0",
        "torchvision",
        "fvcore",
        "pycocotools",
        "scipy",
        "opencv-python-headless",
        "numpy<1.24",
        "Pillow<10",
        "tensorboard",  # training writes TensorBoard events (Detectron2's default writers)
    ],
    extras_require={"test": ["pytest"], "export": ["onnx", "onnxruntime"]},
)
