"""Build and install detectron2 0.6 from the ``pb1-detectron2`` source release without compiled ops.

Called by ``scripts/setup_env.sh`` when no detectron2 is importable. The sdist on the registry lacks the
C++ sources and the top-level ``configs/`` folder, so a plain ``pip install pb1-detectron2`` fails. This
script downloads it, patches its ``setup.py`` (no extension modules; model-zoo configs taken from
``detectron2/model_zoo/configs``), writes a ``detectron2/_C.py`` placeholder (``detectron2.layers``
imports ``_C`` at import time) and installs the folder into the running interpreter.
"""
import argparse
import glob
import os
import subprocess
import sys
import tarfile

VERSION = "0.6"

C_PLACEHOLDER = '''"""Placeholder for detectron2's compiled ops, written by sd_detr (scripts/install_detectron2.py).

This detectron2 was built without its C++/CUDA extension. Informational calls (used by
``collect_env_info``) answer "not built"; any compiled op raises an ImportError saying so.
"""

_MESSAGE = (
    "detectron2 was built by sd_detr's set-up without compiled ops, so `detectron2._C.{}` "
    "(deformable convolution, rotated boxes, fast COCOeval) is unavailable. Install a detectron2 "
    "built from source with its extension and re-run scripts/setup_env.sh to keep it."
)


def get_compiler_version():
    return "not built (sd_detr set-up, no compiled ops)"


def get_cuda_version():
    return "not built"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(_MESSAGE.format(name))
'''


def patch_setup(path):
    with open(path) as f:
        text = f.read()
    replacements = {
        "ext_modules=get_extensions(),": "ext_modules=[],",
        'package_data={"detectron2.model_zoo": get_model_zoo_configs()},': (
            'package_data={"detectron2.model_zoo": [p[len("detectron2/model_zoo/"):] for p in '
            'glob.glob("detectron2/model_zoo/configs/**/*.*", recursive=True)]},'
        ),
    }
    for old, new in replacements.items():
        if old not in text:
            sys.exit(f"install_detectron2: {path} does not contain {old!r}; unexpected sdist layout")
        text = text.replace(old, new)
    with open(path, "w") as f:
        f.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="folder for the downloaded and unpacked sdist")
    parser.add_argument("--constraints", required=True)
    args = parser.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    sdist = os.path.join(args.cache, f"pb1-detectron2-{VERSION}.tar.gz")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    if not os.path.exists(sdist):
        # --no-build-isolation: the sdist's setup.py imports torch, which this interpreter has.
        subprocess.check_call(pip + ["download", "-q", "--no-deps", "--no-binary", ":all:",
                                     "--no-build-isolation", f"pb1-detectron2=={VERSION}",
                                     "-d", args.cache])
    src = os.path.join(args.cache, f"pb1-detectron2-{VERSION}")
    if not os.path.isdir(src):
        with tarfile.open(sdist) as tar:
            tar.extractall(args.cache)
        patch_setup(os.path.join(src, "setup.py"))
        with open(os.path.join(src, "detectron2", "_C.py"), "w") as f:
            f.write(C_PLACEHOLDER)
    assert glob.glob(os.path.join(src, "detectron2/model_zoo/configs/*.yaml")), "model-zoo configs missing"
    # Dependencies are installed (pinned) by setup_env.sh; detectron2's own list pins an old black.
    subprocess.check_call(pip + ["install", "-q", "--no-deps", "--no-build-isolation", "--no-compile",
                                 "-c", args.constraints, src])


if __name__ == "__main__":
    main()
