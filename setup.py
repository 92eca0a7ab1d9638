from setuptools import find_packages, setup

setup(
    name="sd_detr",
    version="0.1.0",
    description="Detectron2 extension for end-to-end object detection with transformers: "
    "SD-DETR, Conditional DETR, DAB-DETR, SMCA-DETR and the cross-stage label assigner.",
    packages=find_packages(include=["sd_detr", "sd_detr.*"]),
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
    ],
    extras_require={"test": ["pytest"], "export": ["onnx", "onnxruntime"]},
)
