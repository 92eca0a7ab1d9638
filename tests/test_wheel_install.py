"""The package, not the checkout (issue 23): a wheel built from the checkout and installed into a folder of
its own gives a working library from a directory outside the repository. Every detector builds through
LazyConfig (``sd_detr.model_zoo.get_config``) and through Detectron2's yacs path (``build_model``), and
``DefaultPredictor`` runs, with nothing read from the clone.

Bug caught: the library finding its configs and model files through the repository's folders (the old
``repo_configs_dir``: "configs folder not found ... install the project with `pip install -e .`"), configs left
out of the wheel's package data (a project, the yacs .yaml files or the ``models/`` files missing), and the
installed copy silently shadowed by the checkout's editable install (the child asserts where ``sd_detr``
and every config it read came from)."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from sd_detr.model_zoo import detector_names

from .utils import REPO

# every registered detector of the clone, SD-DETR first (the one the child also runs a DefaultPredictor on)
DETECTORS = tuple(sorted(detector_names(), key=lambda name: name != "sd_detr"))

# Run in the child, with the installed package first on sys.path and the working directory outside the clone.
CHILD = textwrap.dedent(r"""
    import os, sys
    site, repo = os.path.realpath(sys.argv[1]), os.path.realpath(sys.argv[2])
    # the venv's editable install of the checkout is a meta-path finder: drop it, so that only the wheel's copy
    # can be imported (PYTHONPATH already comes first; this makes sure)
    sys.meta_path = [f for f in sys.meta_path if "editable" not in getattr(f, "__name__", type(f).__name__).lower()]

    def inside(path, folder):
        return os.path.realpath(path).startswith(folder + os.sep)

    import sd_detr
    assert inside(sd_detr.__file__, site), f"sd_detr imported from {sd_detr.__file__}, not from {site}"
    assert not inside(os.getcwd(), repo), os.getcwd()

    import torch
    from detectron2.config import LazyConfig, get_cfg, instantiate
    from detectron2.engine import DefaultPredictor
    from detectron2.modeling import build_model

    import sd_detr.config.lazy
    from sd_detr.config import add_all_configs, apply_size, apply_size_yacs, get_config

    # the call of the issue: a common piece by name
    assert get_config("common/train.py").train.max_iter > 0

    from sd_detr.model_zoo import get_config_file, list_configs
    from sd_detr.model_zoo import get_config as zoo_config
    from sd_detr.config.yacs import merge_yaml_config

    names = list_configs()
    print("NAMES", *names, flush=True)
    for name in names:
        assert inside(get_config_file(name), site), (name, get_config_file(name))

    # every file opened from here on (the configs' relative imports and the .yaml files included): none from
    # the clone (its .venv aside: the interpreter's own packages), the config files from the wheel's copy
    import builtins
    opened, _open = [], builtins.open

    def recording_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)):
            opened.append(os.path.realpath(file))
        return _open(file, *args, **kwargs)

    builtins.open = recording_open

    torch.manual_seed(0)
    for p in sys.argv[3:]:
        cfg = zoo_config(f"{p}/{p}_r50_12ep.py")
        model = instantiate(apply_size(cfg.model, "test"))
        assert type(model).__module__ == f"sd_detr.modeling.meta_arch.{p}", type(model)

        ycfg = get_cfg()
        add_all_configs(ycfg)
        merge_yaml_config(ycfg, get_config_file(f"{p}/yacs/{p}_r50_12ep.yaml"))
        apply_size_yacs(ycfg, "test")
        ycfg.MODEL.DEVICE = "cpu"
        ymodel = build_model(ycfg)  # reads the detector's MODEL_FILE from the model zoo
        assert type(ymodel) is type(model), (type(ymodel), type(model))
        if p == sys.argv[3]:
            ycfg.INPUT.MIN_SIZE_TEST, ycfg.INPUT.MAX_SIZE_TEST = 64, 96
            predictor = DefaultPredictor(ycfg)  # MODEL.WEIGHTS "": nothing to load
            image = torch.randint(0, 256, (80, 60, 3), dtype=torch.uint8).numpy()  # HWC, BGR
            out = predictor(image)["instances"]
            assert out.image_size == (80, 60) and len(out) > 0, out
        print("built", p, flush=True)
    builtins.open = _open
    from_clone = [f for f in opened if inside(f, repo) and not inside(f, os.path.join(repo, ".venv"))]
    assert not from_clone, f"files read from the clone: {from_clone}"
    configs = [f for f in opened if f.endswith((".py", ".yaml")) and "configs" + os.sep in f]
    assert all(inside(f, site) for f in configs), configs
    model_files = {os.path.basename(f) for f in configs if os.sep + "models" + os.sep in f}
    assert model_files >= {f"{p}_r50.py" for p in sys.argv[3:]}, model_files
    print("OK", len(names), "configs", flush=True)
""")


def _copy_checkout(dst: str) -> None:
    """The checkout's source (what an sdist or a fresh clone holds): no VCS, venv, outputs, caches, build
    folders, nor the model zoo's links generated in the source tree (setup.py must make them)."""
    skip_top = {".git", ".venv", ".cache", "output", "datasets", "build", "dist"}

    def ignore(folder, names):
        rel = os.path.relpath(folder, REPO)
        out = {n for n in names if n == "__pycache__" or n.endswith(".egg-info") or n == ".pytest_cache"}
        if rel == ".":
            out |= skip_top & set(names)
        if rel == os.path.join("sd_detr", "model_zoo"):
            out |= {"configs"} & set(names)
        return out

    shutil.copytree(REPO, dst, ignore=ignore, symlinks=True)


@pytest.mark.slow
def test_a_built_wheel_installed_elsewhere_builds_every_detector_from_outside_the_checkout(tmp_path):
    """Bug caught: any lookup of configs or model files through the repository's layout (the wheel's copy then
    raises or reads the clone), a project or its yacs/models folder missing from the package data, or the
    test itself passing through the checkout's editable install."""
    src, wheels, site, work = (tmp_path / n for n in ("src", "wheels", "site", "work"))
    work.mkdir()
    _copy_checkout(str(src))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PIP_NO_INDEX="1")
    built = subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                           capture_output=True, text=True, env=env, cwd=str(work))
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = [str(w) for w in wheels.glob("sd_detr-*.whl")]
    installed = subprocess.run(pip + ["install", "--no-deps", "--target", str(site), wheel],
                               capture_output=True, text=True, env=env, cwd=str(work))
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    shutil.rmtree(src)  # nothing of the source copy may be needed any more

    env["PYTHONPATH"] = str(site)
    child = subprocess.run([sys.executable, "-c", CHILD, str(site), REPO, *DETECTORS], capture_output=True,
                           text=True, env=env, cwd=str(work), timeout=300)
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-5000:]
    assert [line.split()[1] for line in child.stdout.splitlines() if line.startswith("built")] == list(DETECTORS)
    assert "OK" in child.stdout
    # every config of the checkout (tests/config/test_model_zoo.py ties these to the repository's files) shipped
    from sd_detr.model_zoo import list_configs

    (shipped,) = [line.split()[1:] for line in child.stdout.splitlines() if line.startswith("NAMES ")]
    assert shipped == list_configs()
