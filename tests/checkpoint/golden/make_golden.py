#!/usr/bin/env python
"""Make the golden-output fixtures of the official baselines (run by hand, never by CI).

Builds each official model with its own ``main.get_args_parser()`` and build function at a small size,
loads a state dict drawn from the recipe of ``recipe.py`` (seeded, documented there), runs it in eval
mode on one padded batch of two RGB images of different sizes (a NestedTensor, so the padding mask
matters) and writes ``<name>.pt`` next to this script with:

- ``official_repo``, ``official_commit``, ``official_argv`` (the arguments given to the official parser)
  and ``official_args`` (every resulting argument, as JSON);
- ``recipe_version``, ``seed``, ``state_spec`` ([key, shape, low, high] per official key in sorted
  order), ``aliases`` and ``digests``: enough to rebuild exactly the official state dict the outputs
  came from (``recipe.rebuild_official_state_dict``), ~100 MB of float32 that is not stored;
- ``images``: the two uint8 RGB images [3, H_i, W_i]; ``pixel_mean`` / ``pixel_std`` (0-255 scale) with
  which they were normalised, ``(image - mean) / std``, the formula of ``DETRDetector.preprocess_image``
  (the official ToTensor + Normalize computes the same up to float rounding; the same input tensor is
  used so that only the models are compared);
- ``pred_logits`` [L, B, Q, C] and ``pred_boxes`` [L, B, Q, 4] (normalised cxcywh): the official
  ``aux_outputs`` followed by the final output, L = decoder layers.

Sizes: width 256 with 8 heads, the only width all three run at: the official code hard-codes it
(ConditionalDETR ``models/transformer.py:37-38`` embeds a reference point with 128 frequencies per
coordinate whatever ``hidden_dim`` is; DAB-DETR ``models/DAB_DETR/transformer.py:79`` builds its encoder
with the default ``d_model=256`` of line 139, so its ``query_scale`` MLP is 256-wide; SMCA-DETR
``models/transformer.py:231,232,239`` builds ``point1 = MLP(256, 256, 2, 3)`` and 8 heads of offsets /
scales). Small elsewhere: 1 encoder and 2 decoder layers, FFN 64, 12 queries, the official 91-way
(SMCA: 92-way) class head; torchvision ResNet-50 with FrozenBN, DC5 via the official ``--dilation``.
The weights are not stored (see ``recipe.py``), so the width costs no fixture size.

Run-time patches, all in memory (the fetched files are not edited; none changes numerics):

- ``torchvision.__version__`` reads "0.9.0" while the official modules are imported: SMCA-DETR's
  ``util/misc.py:21`` tests ``float(torchvision.__version__[:3]) < 0.7``, which is true for "0.29.1"
  and imports ``torchvision.ops._new_empty_tensor`` (gone). Restored after the import.
- ``torch.nn.modules.linear._LinearWithBias`` = ``NonDynamicallyQuantizableLinear`` and a module
  ``torch._overrides`` = ``torch.overrides`` while importing: ConditionalDETR's
  ``models/attention.py:29,50`` take the pre-1.9 / pre-1.7 names for torch 2.x because of an
  operator-precedence slip in their version tests (``major == 1 and minor < 9`` written as
  ``(major == 1 and minor) < 9``); the names given are the ones the tests meant to pick for torch >= 1.9.
  Removed after the import.
- stub ``addict``, ``yapf.yapflib.yapf_api`` and ``timm.models.layers`` modules for DAB-DETR (its
  ``util/slconfig.py``, which ``engine.py`` imports, imports ``addict.Dict`` and yapf's ``FormatCode``
  at import time to parse and format config files; ``models/DAB_DETR/swin_transformer.py:14`` imports
  timm's layers for the Swin backbones; ``models/dab_deformable_detr`` imports its compiled CUDA op
  ``MultiScaleDeformableAttention``; none is used by the ResNet DAB-DETR): ``addict.Dict`` is ``dict`` (subclassed at import
  time), ``FormatCode`` raises if called.
- each official ``backbone`` module's ``is_main_process`` returns False while building, so the
  ``pretrained=is_main_process()`` of torchvision's ResNet is False (no download; the weights are
  replaced by the recipe's anyway).
- ``--device cpu``; the official top-level packages (``models``, ``util``, ``datasets``, ``engine``,
  ``main``) share names across the three repositories, so they are dropped from ``sys.modules``
  between models.

Prepare the official code (the commits of /work/shared/OFFICIAL_NOTES.md), then run:

  git --git-dir=<bare ConditionalDETR> archive 8ea7c3f | tar -x -C /tmp/official/ConditionalDETR   # etc.
  python tests/checkpoint/golden/make_golden.py --official-root /tmp/official

The official code needs only what this project's environment has (torch, torchvision, scipy,
pycocotools); it is not a dependency of the project and is not vendored.
"""
import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import types

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(HERE))))  # the repository root

from tests.checkpoint.golden.recipe import RECIPE_VERSION, generate_state_dict, tensor_digest, value_range  # noqa: E402

IMAGE_SIZES = ((144, 184), (176, 120))  # (h, w): padded to 176 x 184; partial stride-32 cells at the borders
PIXEL_MEAN = (123.675, 116.280, 103.530)  # RGB, 0-255 (official Normalize([0.485, 0.456, 0.406]) x 255)
PIXEL_STD = (58.395, 57.120, 57.375)
SEED = 20261202
SMALL = ["--enc_layers", "1", "--dec_layers", "2", "--dim_feedforward", "64", "--num_queries", "12", "--device", "cpu"]

# name -> official repository folder under --official-root, GitHub name, commit, argv, build function
MODELS = {
    "conditional_detr": dict(
        folder="ConditionalDETR", repo="Atten4Vis/ConditionalDETR", commit="8ea7c3f3fff49cd287855d4f13cc12a6066bc8e9",
        argv=SMALL + ["--hidden_dim", "256", "--nheads", "8"], build="build_model", backbone_module="models.backbone"),
    "conditional_detr_dc5": dict(
        folder="ConditionalDETR", repo="Atten4Vis/ConditionalDETR", commit="8ea7c3f3fff49cd287855d4f13cc12a6066bc8e9",
        argv=SMALL + ["--hidden_dim", "256", "--nheads", "8", "--dilation"], build="build_model",
        backbone_module="models.backbone"),
    "dab_detr": dict(
        folder="DAB-DETR", repo="IDEA-Research/DAB-DETR", commit="723ddb80e95dbd3c9a2e4ef68c1e0fa9319167cf",
        argv=SMALL + ["-m", "dab_detr", "--coco_path", "unused", "--hidden_dim", "256", "--nheads", "8"],
        build="build_DABDETR", backbone_module="models.DAB_DETR.backbone"),
    "smca_detr": dict(
        folder="SMCA-DETR", repo="gaopengcuhk/SMCA-DETR", commit="e4df3ab2081571a016c82794a85abd2342a2fc1b",
        # the 50-epoch README command's --dynamic_scale type3 --smooth 8
        argv=SMALL + ["--hidden_dim", "256", "--nheads", "8", "--dynamic_scale", "type3", "--smooth", "8"],
        build="build_model", backbone_module="models.backbone"),
}
OFFICIAL_TOP_LEVEL = ("models", "util", "datasets", "engine", "main")


# modules DAB-DETR imports for its config-file parser only (util/slconfig.py:13-14, ConfigDict subclasses
# addict.Dict at import time): name -> {attribute: value}; FormatCode raises if called
STUB_MODULES = {"addict": {"Dict": dict}, "yapf": {}, "yapf.yapflib": {}, "yapf.yapflib.yapf_api": {"FormatCode": None},
                # and timm for its Swin backbones only (models/DAB_DETR/swin_transformer.py:14)
                "timm": {}, "timm.models": {}, "timm.models.layers": {"DropPath": None, "to_2tuple": None, "trunc_normal_": None},
                # and the compiled CUDA op of its deformable variant (ops/functions/ms_deform_attn_func.py:18)
                "MultiScaleDeformableAttention": {}}


def _unavailable(what):
    def fail(*args, **kwargs):
        raise RuntimeError(f"{what} is a stub of make_golden.py (not installed, not needed to build the model)")

    return fail


def _drop_official_modules():
    for name in list(sys.modules):
        if name.split(".")[0] in OFFICIAL_TOP_LEVEL:
            del sys.modules[name]


@contextlib.contextmanager
def official_code(folder):
    """Import the official repository in ``folder`` with the run-time patches of the module docstring."""
    import torchvision
    from torch.nn.modules import linear

    _drop_official_modules()
    sys.path.insert(0, folder)
    saved_version = torchvision.__version__
    torchvision.__version__ = "0.9.0"
    had_old_name = hasattr(linear, "_LinearWithBias")
    if not had_old_name:
        linear._LinearWithBias = linear.NonDynamicallyQuantizableLinear
    had_old_overrides = "torch._overrides" in sys.modules
    if not had_old_overrides:
        sys.modules["torch._overrides"] = torch.overrides
    stubs = [name for name in STUB_MODULES if name not in sys.modules]
    for name in stubs:
        sys.modules[name] = types.ModuleType(name)
        for attr, value in STUB_MODULES[name].items():
            setattr(sys.modules[name], attr, _unavailable(f"{name}.{attr}") if value is None else value)
    try:
        main = importlib.import_module("main")
    finally:
        torchvision.__version__ = saved_version
        if not had_old_name:
            del linear._LinearWithBias
        if not had_old_overrides:
            del sys.modules["torch._overrides"]
    try:
        yield main
    finally:
        for name in stubs:
            del sys.modules[name]
        sys.path.remove(folder)
        _drop_official_modules()


def official_commit(folder, expected):
    """The checked-out commit if ``folder`` is a git work tree (must be ``expected``), else ``expected``
    as recorded by whoever extracted the archive."""
    if not os.path.isdir(os.path.join(folder, ".git")):
        return expected
    head = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    if head != expected:
        raise SystemExit(f"{folder} is at {head}, the fixtures are made from {expected}")
    return head


def make_images(seed=SEED):
    """Two uint8 RGB images [3, h, w]: smooth random colour fields plus noise (not pure noise, so that
    convolutions see structure)."""
    rng = np.random.default_rng(seed)
    images = []
    for h, w in IMAGE_SIZES:
        coarse = rng.random((3, h // 16 + 2, w // 16 + 2))
        field = np.kron(coarse, np.ones((16, 16)))[:, :h, :w]
        img = np.clip(255 * (0.8 * field + 0.2 * rng.random((3, h, w))), 0, 255).round().astype(np.uint8)
        images.append(torch.from_numpy(img))
    return images


def state_spec(official_sd):
    """[key, shape, low, high] of every distinct official tensor in sorted key order, and the aliases
    (keys naming a tensor another, sorted-earlier key already names)."""
    spec, aliases, seen = [], {}, {}
    for key in sorted(official_sd):
        t = official_sd[key]
        if t.dtype != torch.float32:
            raise TypeError(f"official {key!r} is {t.dtype}; the recipe draws float32 only")
        ident = (t.data_ptr(), tuple(t.shape), t.stride())
        if ident in seen:
            aliases[key] = seen[ident]
            continue
        seen[ident] = key
        low, high = value_range(key, list(t.shape))
        spec.append([key, list(t.shape), float(low), float(high)])
    return spec, aliases


def run_official(name, root):
    m = MODELS[name]
    folder = os.path.join(root, m["folder"])
    if not os.path.isfile(os.path.join(folder, "main.py")):
        raise SystemExit(f"--official-root {root}: {folder}/main.py not found (extract {m['repo']} @{m['commit'][:7]} there)")
    commit = official_commit(folder, m["commit"])
    with official_code(folder) as main:
        parser = argparse.ArgumentParser(parents=[main.get_args_parser()])
        args = parser.parse_args(m["argv"])
        backbone = importlib.import_module(m["backbone_module"])
        backbone.is_main_process = lambda: False  # pretrained=False: no download
        torch.manual_seed(SEED)
        model = getattr(main, m["build"])(args)[0]
        model.eval()
        spec, aliases = state_spec(model.state_dict())
        sd = generate_state_dict(spec, SEED, aliases)
        model.load_state_dict(sd, strict=True)
        for key, t in model.state_dict().items():  # what runs is exactly the recipe's state dict
            assert torch.equal(t, sd[key]), key
        images = make_images()
        mean = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
        std = torch.tensor(PIXEL_STD).view(3, 1, 1)
        normalised = [(img.float() - mean) / std for img in images]
        from util.misc import nested_tensor_from_tensor_list

        samples = nested_tensor_from_tensor_list(normalised)
        with torch.no_grad():
            if name.startswith("smca"):  # the official forward reads each image's unpadded (h, w)
                targets = [{"size": torch.tensor(img.shape[-2:])} for img in images]
                out = model([samples, targets])
            else:
                out = model(samples)
    layers = out["aux_outputs"] + [{"pred_logits": out["pred_logits"], "pred_boxes": out["pred_boxes"]}]
    return {
        "name": name,
        "official_repo": m["repo"],
        "official_commit": commit,
        "official_argv": list(m["argv"]),
        "official_args": json.dumps(vars(args), default=str, sort_keys=True),
        "recipe_version": RECIPE_VERSION,
        "seed": SEED,
        "state_spec": spec,
        "aliases": aliases,
        "digests": {k: tensor_digest(v) for k, v in sd.items()},
        "images": images,
        "pixel_mean": list(PIXEL_MEAN),
        "pixel_std": list(PIXEL_STD),
        "pred_logits": torch.stack([o["pred_logits"] for o in layers]).contiguous(),
        "pred_boxes": torch.stack([o["pred_boxes"] for o in layers]).contiguous(),
        "torch_version": str(torch.__version__),
        "numpy_version": str(np.__version__),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-root", required=True, help="folder holding ConditionalDETR/, DAB-DETR/, SMCA-DETR/")
    parser.add_argument("--models", nargs="+", default=sorted(MODELS), choices=sorted(MODELS))
    parser.add_argument("--output-dir", default=HERE)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for name in args.models:
        fixture = run_official(name, os.path.abspath(args.official_root))
        path = os.path.join(args.output_dir, f"{name}.pt")
        torch.save(fixture, path)
        logits, boxes = fixture["pred_logits"], fixture["pred_boxes"]
        print(f"{name}: {fixture['official_repo']}@{fixture['official_commit'][:7]} -> {path} "
              f"({os.path.getsize(path) / 1024:.0f} KiB); logits {tuple(logits.shape)} mean {logits.mean():.3f} "
              f"std {logits.std():.3f}; boxes in [{boxes.min():.3f}, {boxes.max():.3f}] std {boxes.std():.3f}")


if __name__ == "__main__":
    main()
