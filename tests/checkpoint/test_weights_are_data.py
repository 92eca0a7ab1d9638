"""Weight files (.pkl, .pth) and yacs .yaml configs are data: loading one never runs code (issue 22).

A crafted file names a callable that would create a marker file when unpickled (``open(marker, 'w')``, or
``exec`` of the same: a name of ``builtins``, whose ``set`` / ``frozenset`` the .pkl reader allows) or, in a
yacs .yaml, a ``!!python/object/apply:os.system`` tag that would ``touch`` it. Through every loading path
(DETRCheckpointer's load / resume_or_load, ``tools/lazyconfig_train_net.py`` --eval-only and --resume,
``tools/demo.py`` on both config kinds, ``tools/export_model.py``, the two picture tools and
``tools/convert_checkpoint.py``, all through their library functions in sd_detr) it must be refused with an error naming the file and the refused global,
and the marker must not exist. The legitimate files (Detectron2-style .pkl of numpy arrays in every pickle
protocol, the project's own training checkpoints, official checkpoints with an ``argparse.Namespace``) still
load. ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` is set where .pth files are read: PyTorch's default
``weights_only=True`` gives way to it, an explicit ``weights_only=True`` does not.
"""
import argparse
import collections
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.config import LazyConfig, get_cfg, instantiate

from sd_detr.checkpoint import DETRCheckpointer, UnsafeCheckpointError, load_pickle_weights, load_torch_weights
from sd_detr.checkpoint.convert_file import ConversionError, convert_checkpoint_file
from sd_detr.config import add_all_configs
from sd_detr.config.yacs import UnsafeConfigError, merge_yaml_config
from sd_detr.model_zoo import detector_names

from ..utils import REPO, tiny_synthetic_yacs

TINY = os.path.join(REPO, "projects", "conditional_detr", "configs", "conditional_detr_tiny_synthetic.py")
PROJECT_YAMLS = [os.path.join(REPO, "projects", p, "configs", "yacs", f"{p}_r50_12ep.yaml")
                 for p in detector_names()]


class _OpenCreatesFile:
    """Unpickled, calls ``open(path, "w")``: creates an empty file, nothing else. Pickled as ``io.open``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class _ExecCreatesFile(_OpenCreatesFile):
    """Unpickled, calls ``exec("open(path, 'w').close()")``: the same file, through ``builtins.exec``."""

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').close()",))


PAYLOADS = {"io.open": _OpenCreatesFile, "builtins.exec": _ExecCreatesFile}


def _tiny_model():
    torch.manual_seed(0)
    return instantiate(LazyConfig.load(TINY).model)


def _write_crafted(folder, ext, payload="io.open", name="crafted"):
    """A crafted weight file ``folder/NAME.ext`` whose payload hides among the weights; returns (path, marker)."""
    marker = folder / f"{name}_{ext}_{payload}_MARKER"
    evil = PAYLOADS[payload](marker)
    path = folder / f"{name}.{ext}"
    if ext == "pkl":
        with open(path, "wb") as f:
            pickle.dump({"model": {"backbone.w": np.zeros(2, np.float32), "backbone.x": evil}, "__author__": "x"}, f,
                        protocol=2)
    else:
        torch.save({"model": {"backbone.w": torch.zeros(2), "backbone.x": evil}}, path)
    return str(path), marker


def _assert_refused(message, path, refused, marker):
    assert os.path.basename(str(path)) in message, message
    assert refused in message, message
    assert not os.path.exists(marker), f"the crafted file ran its code: {marker} was created"


@pytest.fixture
def no_weights_only_default(monkeypatch):
    """The environment switch that turns PyTorch's default weights_only=True off (an explicit True holds)."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


@pytest.fixture
def tiny_env(synthetic_root, monkeypatch):
    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", synthetic_root)
    return synthetic_root


# ------------------------------------------------------------------ the readers themselves
def _data_of_every_kind():
    return {
        "model": collections.OrderedDict([
            ("conv.weight", np.arange(24, dtype=np.float32).reshape(2, 3, 4)),
            ("bn.running_var", np.linspace(0, 1, 5)),  # float64
            ("bn.num_batches_tracked", np.array(7, dtype=np.int64)),
            ("half", np.ones(3, np.float16)), ("bytes_like", np.arange(4, dtype=np.uint8)),
        ]),
        "__author__": "torchvision", "matching_heuristics": True, "scale": np.float32(0.5), "raw": b"\x00\xffab",
        "sizes": [1, 2.5, None, (3, "x")], "names": {"a", "b"}, "frozen": frozenset({1}), "z": 1 + 2j,
    }


@pytest.mark.parametrize("protocol", [0, 2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
def test_pkl_reader_reads_detectron2_style_weights_in_every_pickle_protocol(tmp_path, protocol):
    """Catches an allowlist missing what real weight files need: protocol <= 2 writes bytes (an array's data)
    as ``_codecs.encode`` and a set under its Python 2 name ``__builtin__.set``; protocol 5 writes arrays with
    ``numpy.core.numeric._frombuffer``; numpy scalars use ``multiarray.scalar``."""
    data = _data_of_every_kind()
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    loaded = load_pickle_weights(str(path))
    assert isinstance(loaded["model"], collections.OrderedDict) and list(loaded["model"]) == list(data["model"])
    for k, v in data["model"].items():
        assert loaded["model"][k].dtype == v.dtype and np.array_equal(loaded["model"][k], v), k
    for k in ("__author__", "matching_heuristics", "raw", "sizes", "names", "frozen", "z"):
        assert loaded[k] == data[k], k
    assert type(loaded["scale"]) is np.float32 and loaded["scale"] == 0.5


def test_pkl_reader_accepts_numpy_2_module_names(tmp_path):
    """A .pkl written under numpy 2 names ``numpy._core.multiarray``; catches a table of numpy 1 names only."""
    data = pickle.dumps({"w": np.arange(3.0)}, protocol=2).replace(b"numpy.core.multiarray", b"numpy._core.multiarray")
    assert b"numpy._core" in data
    (tmp_path / "np2.pkl").write_bytes(data)
    assert np.array_equal(load_pickle_weights(str(tmp_path / "np2.pkl"))["w"], np.arange(3.0))


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_pkl_reader_refuses_any_other_global_naming_file_and_global(tmp_path, payload):
    """Catches an allowlist by module (``builtins.exec`` next to the allowed ``builtins.set``) and a reader
    that builds the object before refusing it."""
    path, marker = _write_crafted(tmp_path, "pkl", payload)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_pickle_weights(path)
    _assert_refused(str(err.value), path, payload, marker)
    assert err.value.path == path and err.value.refused == payload


def test_torch_reader_refuses_a_crafted_pth_even_when_the_environment_turns_the_default_off(
        tmp_path, no_weights_only_default):
    """Catches relying on torch.load's default (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 makes it weights_only=False)."""
    path, marker = _write_crafted(tmp_path, "pth")
    with pytest.raises(UnsafeCheckpointError) as err:
        load_torch_weights(path)
    _assert_refused(str(err.value), path, "io.open", marker)
    assert "weights_only` set to `False`" not in str(err.value)  # PyTorch's advice to load it unsafely is left out


# ------------------------------------------------------------------ DETRCheckpointer: every project load path
@pytest.mark.parametrize("ext,payload", [("pkl", "io.open"), ("pkl", "builtins.exec"), ("pth", "io.open")])
def test_checkpointer_refuses_crafted_files_on_load_and_resume(tmp_path, tiny_env, no_weights_only_default,
                                                               ext, payload):
    """``train.init_checkpoint`` (load / resume_or_load without resume) and --resume (a planted last_checkpoint
    naming the file). Catches Detectron2's own ``_load_file`` (``pickle.load`` on .pkl) left in place."""
    path, marker = _write_crafted(tmp_path, ext, payload)
    model = _tiny_model()
    for load in (lambda: DETRCheckpointer(model).load(path),
                 lambda: DETRCheckpointer(model).resume_or_load(path, resume=False)):
        with pytest.raises(UnsafeCheckpointError) as err:
            load()
        _assert_refused(str(err.value), path, payload, marker)
    run = tmp_path / "run"
    run.mkdir()
    (run / "last_checkpoint").write_text(path)
    with pytest.raises(UnsafeCheckpointError) as err:
        DETRCheckpointer(model, str(run)).resume_or_load("", resume=True)
    _assert_refused(str(err.value), path, payload, marker)


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL])
def test_checkpointer_loads_a_detectron2_model_zoo_pkl_of_numpy_arrays(tmp_path, tiny_env, protocol):
    """The Detectron2 model-zoo format (``model`` of numpy arrays, ``__author__``, matching heuristics) loads
    strictly, every tensor equal. Catches a reader that refuses legitimate weights."""
    src = _tiny_model()
    path = tmp_path / "zoo.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in src.state_dict().items()}, "__author__": "test",
                     "matching_heuristics": True}, f, protocol=protocol)
    dst = instantiate(LazyConfig.load(TINY).model)
    DETRCheckpointer(dst, strict=True).load(str(path))
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k


def test_checkpointer_reads_a_caffe2_blob_pkl_as_detectron2_does(tmp_path):
    """A .pkl without ``__author__``: its ``blobs`` without the ``_momentum`` entries, marked for Detectron2's
    name-matching heuristics. Catches the Caffe2 / Detectron1 branch of Detectron2's reader lost."""
    path = tmp_path / "c2.pkl"
    path.write_bytes(pickle.dumps({"blobs": {"conv1_w": np.ones(2), "conv1_w_momentum": np.zeros(2)}}, protocol=2))
    data = DETRCheckpointer(torch.nn.Linear(1, 1))._load_file(str(path))
    assert data["__author__"] == "Caffe2" and data["matching_heuristics"] is True
    assert list(data["model"]) == ["conv1_w"] and np.array_equal(data["model"]["conv1_w"], np.ones(2))


def test_checkpointer_reads_pycls_pyth_and_names_a_file_that_holds_no_dict(tmp_path):
    """A pycls ``.pyth`` (weights_only) gives its ``model_state`` without ``num_batches_tracked``, for the
    matching heuristics, as Detectron2 reads it; a .pth or .pkl holding a bare list is a ValueError naming the
    file (Detectron2 failed on it with a TypeError of ``in``)."""
    ckpt = DETRCheckpointer(torch.nn.Linear(1, 1))
    torch.save({"model_state": {"stem.w": torch.ones(2), "stem.bn.num_batches_tracked": torch.tensor(3)}},
               tmp_path / "m.pyth")
    data = ckpt._load_file(str(tmp_path / "m.pyth"))
    assert data["__author__"] == "pycls" and data["matching_heuristics"] is True and list(data["model"]) == ["stem.w"]
    torch.save([torch.ones(1)], tmp_path / "list.pth")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    for name in ("list.pth", "list.pkl"):
        with pytest.raises(ValueError, match=rf"{name}: .*not list"):
            ckpt._load_file(str(tmp_path / name))


def test_the_projects_own_training_checkpoint_resumes_with_weights_only(tmp_path, tiny_env, no_weights_only_default):
    """A checkpoint written by training (model, optimizer, the trainer's iteration and LR-scheduler state)
    reads with weights_only=True, and --resume restores iteration, optimizer and scheduler: AdamW's step
    count and the scheduler's last_epoch go on from 2 to 3 (1 each if either were not restored)."""
    from sd_detr.engine import do_train

    def cfg(max_iter):
        c = LazyConfig.load(TINY)
        c.train.update(output_dir=str(tmp_path / "run"), max_iter=max_iter, log_period=1, eval_period=0,
                       device="cpu")
        c.train.checkpointer.period = 100
        c.dataloader.train.update(total_batch_size=2, num_workers=0)
        c.dataloader.pop("evaluator")
        return c

    do_train(cfg(2))
    state = load_torch_weights(str(tmp_path / "run" / "model_final.pth"))
    assert set(state) == {"model", "optimizer", "trainer", "iteration"}, sorted(state)
    assert state["iteration"] == 1 and state["trainer"]["iteration"] == 1
    assert state["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == 2
    trainer = do_train(cfg(3), resume=True)
    assert trainer.start_iter == 2  # iteration restored (0 if not)
    steps = {float(s["step"]) for s in trainer.optimizer.state_dict()["state"].values()}
    assert steps == {3.0}
    lr_hook = next(h for h in trainer._hooks if type(h).__name__ == "LRScheduler")
    assert lr_hook.scheduler.last_epoch == 3


# ------------------------------------------------------------------ the tools
def _train_net(args, env):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "lazyconfig_train_net.py"),
                           "--config-file", TINY, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # two python + torch start-ups (15-30 s each on 2 busy cores); the same loads run in-process above
@pytest.mark.parametrize("mode", ["eval-only", "resume"])
def test_train_net_refuses_crafted_weights_and_exits_non_zero(tmp_path, synthetic_root, mode):
    """--eval-only with a crafted .pkl as train.init_checkpoint; --resume of a folder whose last_checkpoint
    names a crafted .pth (with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1). Catches a run that loads them (the marker
    appears) or swallows the error and exits 0. (The session's small synthetic set, already generated: the
    full one of ``synthetic_env`` would be generated first, for nothing.)"""
    env = dict(os.environ, SD_DETR_SYNTHETIC_ROOT=synthetic_root, PYTHONWARNINGS="ignore")
    run = tmp_path / "run"
    run.mkdir()
    common = [f"train.output_dir={run}", "train.device=cpu", "dataloader.train.num_workers=0",
              "dataloader.test.num_workers=0"]
    if mode == "eval-only":
        path, marker = _write_crafted(tmp_path, "pkl")
        proc = _train_net(["--eval-only", f"train.init_checkpoint={path}", *common], env)
    else:
        path, marker = _write_crafted(run, "pth")
        (run / "last_checkpoint").write_text(os.path.basename(path))
        proc = _train_net(["--resume", "train.max_iter=2", *common],
                          dict(env, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1"))
    assert proc.returncode != 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    _assert_refused(proc.stderr, path, "io.open", marker)
    assert "refusing to load" in proc.stderr


def _image(tmp_path):
    import cv2

    path = tmp_path / "in.png"
    cv2.imwrite(str(path), (np.random.RandomState(0).rand(96, 128, 3) * 255).astype(np.uint8))
    return str(path)


def _tiny_yacs_yaml(tmp_path):
    cfg = add_all_configs(get_cfg())
    tiny_synthetic_yacs(cfg, "ConditionalDETR")
    cfg.DATASETS.TEST = ()
    path = tmp_path / "tiny.yaml"
    path.write_text(cfg.dump())
    return str(path)


def test_demo_refuses_crafted_weights_on_the_lazyconfig_and_the_yacs_path(tmp_path, tiny_env, no_weights_only_default):
    """--checkpoint crafted.pkl with a LazyConfig; MODEL.WEIGHTS crafted.pth with a yacs .yaml (Detectron2's
    DefaultPredictor would load it with its own checkpointer). Nothing is written."""
    from sd_detr.visualization.demo import run_demo

    image, out = _image(tmp_path), tmp_path / "out"
    pkl, pkl_marker = _write_crafted(tmp_path, "pkl")
    with pytest.raises(UnsafeCheckpointError) as err:
        run_demo(config_file=TINY, inputs=[image], output=str(out), checkpoint=pkl)
    _assert_refused(str(err.value), pkl, "io.open", pkl_marker)
    pth, pth_marker = _write_crafted(tmp_path, "pth")
    with pytest.raises(UnsafeCheckpointError) as err:
        run_demo(config_file=_tiny_yacs_yaml(tmp_path), inputs=[image], output=str(out),
                 opts=["MODEL.WEIGHTS", pth])
    _assert_refused(str(err.value), pth, "io.open", pth_marker)
    assert not out.exists()


def test_export_and_picture_tools_refuse_crafted_weights(tmp_path, tiny_env, no_weights_only_default):
    """tools/export_model.py (an ExportError saying it refused the file, not that the file "does not fit"),
    tools/visualize_predictions.py and tools/visualize_attention.py; no output is written."""
    from sd_detr.export import ExportError
    from sd_detr.export.from_config import export_from_config
    from sd_detr.visualization.attention import save_attention_picture
    from sd_detr.visualization.predictions import visualize_predictions

    path, marker = _write_crafted(tmp_path, "pkl")
    with pytest.raises(ExportError) as err:
        export_from_config(TINY, str(tmp_path / "export"), "torchscript", checkpoint=path)
    _assert_refused(str(err.value), path, "io.open", marker)
    assert "refusing to load" in str(err.value) and "does not fit" not in str(err.value)
    assert not (tmp_path / "export").exists()

    path, marker = _write_crafted(tmp_path, "pth", name="vis")
    with pytest.raises(UnsafeCheckpointError) as err:
        visualize_predictions(TINY, path, str(tmp_path / "pred.png"))
    _assert_refused(str(err.value), path, "io.open", marker)
    path, marker = _write_crafted(tmp_path, "pkl", "builtins.exec", name="att")
    with pytest.raises(UnsafeCheckpointError) as err:
        save_attention_picture(TINY, path, _image(tmp_path), str(tmp_path / "att.png"))
    _assert_refused(str(err.value), path, "builtins.exec", marker)
    assert not (tmp_path / "pred.png").exists() and not (tmp_path / "att.png").exists()


def _official_like(tmp_path, **extra):
    g = torch.Generator().manual_seed(0)
    model = {"class_embed.weight": torch.randn(91, 8, generator=g), "class_embed.bias": torch.randn(91, generator=g),
             "query_embed.weight": torch.randn(5, 8, generator=g)}
    path = tmp_path / "official.pth"
    torch.save({"model": model, **extra}, path)
    return str(path), model


def test_converter_reads_an_official_checkpoint_with_its_argparse_namespace(tmp_path, no_weights_only_default):
    """Official checkpoints carry the training options as ``args`` (an argparse.Namespace): allowed, and the
    weights convert (COCO-id head rows to the 80 classes). Catches an allowlist that refuses real releases."""
    from sd_detr.checkpoint import coco_91_to_80_indices

    options = argparse.Namespace(lr=1e-4, backbone="resnet50", dilation=False, frozen_weights=None, lr_drop=40)
    src, model = _official_like(tmp_path, args=options, epoch=49, lr_scheduler={"last_epoch": 50, "base_lrs": [1e-4]})
    out = tmp_path / "converted.pth"
    convert_checkpoint_file("conditional_detr", src, str(out))
    converted = load_torch_weights(str(out))["model"]
    assert torch.equal(converted["class_embed.weight"], model["class_embed.weight"][coco_91_to_80_indices()])
    assert torch.equal(converted["query_init.query_embed.weight"], model["query_embed.weight"])


def test_converter_refuses_a_crafted_checkpoint_naming_file_and_global(tmp_path, no_weights_only_default):
    """Catches the converter's former ``torch.load(weights_only=False)``: the marker would appear."""
    marker = tmp_path / "convert_MARKER"
    src, _ = _official_like(tmp_path, args=_OpenCreatesFile(marker))
    out = tmp_path / "converted.pth"
    with pytest.raises(ConversionError) as exit_:  # the tool's exit message
        convert_checkpoint_file("conditional_detr", src, str(out))
    _assert_refused(str(exit_.value), src, "io.open", marker)
    assert not out.exists()


# ------------------------------------------------------------------ yacs .yaml configs
def _evil_yaml(tmp_path, marker):
    path = tmp_path / "evil.yaml"
    path.write_text(f'MODEL:\n  META_ARCHITECTURE: !!python/object/apply:os.system ["touch {marker}"]\n')
    return path


def test_yacs_yaml_with_a_python_tag_is_refused_naming_the_file(tmp_path):
    """Detectron2's merge_from_file falls back to yaml.unsafe_load (which runs the tag); here the tag is an
    error naming the file, also when it sits in a _BASE_ file."""
    marker = tmp_path / "yaml_MARKER"
    evil = _evil_yaml(tmp_path, marker)
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: evil.yaml\nMODEL:\n  DEVICE: cpu\n")
    for path in (evil, child):
        with pytest.raises(UnsafeConfigError, match=r"refusing to load config .*evil\.yaml.*python/object/apply"):
            merge_yaml_config(add_all_configs(get_cfg()), str(path))
    assert not marker.exists()


def test_demo_refuses_a_yacs_yaml_with_a_python_tag(tmp_path):
    """Catches tools/demo.py calling Detectron2's merge_from_file (allow_unsafe=True by default)."""
    from sd_detr.visualization.demo import run_demo

    marker = tmp_path / "demo_yaml_MARKER"
    evil = _evil_yaml(tmp_path, marker)
    with pytest.raises(UnsafeConfigError, match="evil.yaml"):
        run_demo(config_file=str(evil), inputs=[_image(tmp_path)])
    assert not marker.exists()


@pytest.mark.parametrize("path", PROJECT_YAMLS, ids=os.path.basename)
def test_the_projects_yacs_configs_load_as_data(path):
    """Each project .yaml reads with the safe loader (no tag of its own needs the unsafe one)."""
    cfg = merge_yaml_config(add_all_configs(get_cfg()), path)
    assert cfg.MODEL.META_ARCHITECTURE in {"ConditionalDETR", "DABDETR", "SMCADETR", "SDDETR"}
