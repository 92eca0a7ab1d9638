"""Build and install detectron2 0.6 from the ``pb1-detectron2`` source release without compiled ops.

Called by ``scripts/setup_env.sh`` when no detectron2 is importable. The sdist on the registry lacks the
C++ sources and the top-level ``configs/`` folder, so a plain ``pip install pb1-detectron2`` fails. This
script downloads it, patches its ``setup.py`` (no extension modules; model-zoo configs taken from
``detectron2/model_zoo/configs``), writes a ``detectron2/_C.py`` placeholder (``detectron2.layers``
imports ``_C`` at import time), builds its wheel and installs that into the running interpreter. The wheel
is kept (:func:`wheel_cache_dir`), so the next set-up on this machine installs it in seconds.
"""
import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

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


def wheel_cache_dir() -> str:
    """Where the built wheel is kept for the next set-up on this machine (a fresh clone included), like
    pip's own wheel cache: ``$SD_DETR_CACHE_DIR`` or ``~/.cache/sd_detr`` (``$XDG_CACHE_HOME/sd_detr``), in a
    folder named after this script's content, so that a changed patch or placeholder builds afresh."""
    root = os.environ.get("SD_DETR_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "sd_detr")
    with open(__file__, "rb") as f:
        key = hashlib.sha256(f.read()).hexdigest()[:16]
    return os.path.join(root, "wheels", f"detectron2-{VERSION}-{key}")


def build_wheel(pip, cache, wheel_dir):
    """Download the sdist into ``cache``, patch it, and build its wheel into ``wheel_dir`` (written whole
    or not at all: built in a temporary folder, then renamed)."""
    os.makedirs(cache, exist_ok=True)
    sdist = os.path.join(cache, f"pb1-detectron2-{VERSION}.tar.gz")
    if not os.path.exists(sdist):
        # --no-build-isolation: the sdist's setup.py imports torch, which this interpreter has.
        subprocess.check_call(pip + ["download", "-q", "--no-deps", "--no-binary", ":all:",
                                     "--no-build-isolation", f"pb1-detectron2=={VERSION}",
                                     "-d", cache])
    src = os.path.join(cache, f"pb1-detectron2-{VERSION}")
    if not os.path.isdir(src):
        with tarfile.open(sdist) as tar:
            tar.extractall(cache)
        patch_setup(os.path.join(src, "setup.py"))
        with open(os.path.join(src, "detectron2", "_C.py"), "w") as f:
            f.write(C_PLACEHOLDER)
    assert glob.glob(os.path.join(src, "detectron2/model_zoo/configs/*.yaml")), "model-zoo configs missing"
    os.makedirs(os.path.dirname(wheel_dir), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(wheel_dir) + ".", dir=os.path.dirname(wheel_dir))
    try:
        # setup.py itself rather than `pip wheel`, which would run it twice (metadata, then the wheel), and
        # setup.py imports torch each time; its output (setuptools' deprecation banner) is shown only on failure
        build = subprocess.run([sys.executable, "setup.py", "-q", "bdist_wheel", "-d", tmp], cwd=src,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if build.returncode != 0:
            sys.exit(f"install_detectron2: building the wheel in {src} failed:\n{build.stdout}")
        try:
            os.rename(tmp, wheel_dir)
        except OSError:  # another set-up finished the same wheel first: keep its folder
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="folder for the downloaded and unpacked sdist")
    parser.add_argument("--constraints", required=True)
    args = parser.parse_args()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    wheel_dir = wheel_cache_dir()
    wheels = glob.glob(os.path.join(wheel_dir, "*.whl"))
    if wheels:
        print(f"[setup] detectron2: the wheel built by an earlier set-up ({wheel_dir})")
    else:
        build_wheel(pip, args.cache, wheel_dir)
        wheels = glob.glob(os.path.join(wheel_dir, "*.whl"))
        print(f"[setup] detectron2: wheel built, kept for the next set-up in {wheel_dir}")
    if len(wheels) != 1:
        sys.exit(f"install_detectron2: expected one detectron2 wheel in {wheel_dir}, found {wheels}")
    # Dependencies are installed (pinned) by setup_env.sh; detectron2's own list pins an old black.
    subprocess.check_call(pip + ["install", "-q", "--no-deps", "--no-compile", "-c", args.constraints, wheels[0]])


if __name__ == "__main__":
    main()
