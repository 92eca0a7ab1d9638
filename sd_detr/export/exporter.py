"""Export a detector to ONNX or TorchScript, with the metadata a user needs, and check the result.

Both formats come from one ``torch.jit.trace`` of :class:`~sd_detr.export.ExportableDetector`: ONNX through
the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``), TorchScript as the traced module
itself. Why not the dynamo exporter (torch 2.14's default): it needs ``onnxscript`` (one more pinned
dependency) and ``torch.export`` does not set ``torch.jit.is_tracing()``, so the project's CPU fast paths
(oneDNN linear layers as 1x1 convolutions, padded attention values) would be exported as they are instead
of as plain ``MatMul``/attention; the tracing exporter takes the plain paths that the project guards for
tracing (``sd_detr/layers/linear.py``, ``sd_detr/attention/core.py``).
"""
import json
import os
import re
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .wrapper import ExportableDetector

FORMATS = ("onnx", "torchscript")
DEFAULT_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAMES = ("boxes", "scores", "labels")
METADATA_KEY = "sd_detr"  # ONNX metadata_props key / TorchScript extra file of the JSON metadata


class ExportError(RuntimeError):
    """An export that failed, naming the detector, the config and, where known, the module at fault."""


def side_json_path(path: str) -> str:
    """The metadata file written next to an exported file: ``model.onnx`` -> ``model.onnx.json``."""
    return path + ".json"


def build_metadata(model, *, fmt: str, input_shape: Sequence[int], dynamic: bool, class_names: Sequence[str] = None,
                   config_file: str = None, checkpoint: str = None, test_resize: dict = None,
                   opset: int = DEFAULT_OPSET) -> dict:
    """What a user of the exported file needs: input layout and size, normalisation, classes, outputs.

    input_shape: the traced input shape, [3, H, W] or [B, 3, H, W]. ``dynamic``: height and width are
    dynamic axes (the batch never is).
    """
    num_classes = int(model.num_classes)
    if class_names is None:
        class_names = [f"class_{i}" for i in range(num_classes)]
    class_names = [str(c) for c in class_names]
    if len(class_names) != num_classes:
        raise ExportError(f"{len(class_names)} class names for a detector with num_classes={num_classes}: {class_names}")
    shape = [int(s) for s in input_shape]
    lead = "B, " if len(shape) == 4 else ""
    return {
        "format": fmt,
        "detector": type(model).__name__,
        "config_file": config_file,
        "checkpoint": checkpoint,
        "input": {
            "name": INPUT_NAME,
            "shape": shape,
            "dynamic_height_width": bool(dynamic),
            "dtype": "uint8 (float accepted by TorchScript)",
            "channel_order": model.input_format,
            "value_range": [0, 255],
            "note": "unpadded image(s); normalisation (x - pixel_mean) / pixel_std is inside the graph",
        },
        "pixel_mean": [float(v) for v in model.pixel_mean.flatten()],
        "pixel_std": [float(v) for v in model.pixel_std.flatten()],
        "class_names": class_names,
        "num_classes": num_classes,
        "num_select": int(model.num_select),
        "clip_boxes": bool(model.clip_boxes),
        "outputs": {
            "boxes": f"[{lead}N, 4] float32 absolute (x0, y0, x1, y1) in the input's pixels"
                     + (", clipped to the image (empty boxes are not removed)" if model.clip_boxes else ", not clipped"),
            "scores": f"[{lead}N] float32 sigmoid scores, descending",
            "labels": f"[{lead}N] int64 class indices into class_names",
            "N": "num_select (top-k over queries x classes)",
        },
        "test_resize": test_resize,
        "opset": opset if fmt == "onnx" else None,
        "exporter": "torch.onnx.export(dynamo=False)" if fmt == "onnx" else "torch.jit.trace",
        "torch_version": torch.__version__,
    }


def _scope_to_module(scope: str) -> str:
    """``__module.model/__module.model.decoder.layers.0`` -> ``decoder.layers.0`` (path inside the detector)."""
    last = scope.split("/")[-1].replace("__module.", "")
    return last[len("model."):] if last.startswith("model.") else last


def modules_using_op(traced: torch.jit.ScriptModule, op: str) -> List[str]:
    """Modules of the detector (dotted paths) whose traced graph calls ``op`` (e.g. ``aten::linalg_eigh``)."""
    found = []
    for node in traced.inlined_graph.nodes():
        if node.kind() == op:
            name = _scope_to_module(node.scopeName()) or "<detector>"
            if name not in found:
                found.append(name)
    return found


def _describe(wrapper, config_file: Optional[str]) -> str:
    """The detector's class name (of a wrapper or of its trace) and the config."""
    model = wrapper.model
    name = model.original_name if isinstance(model, torch.jit.ScriptModule) else type(model).__name__
    return name + (f" (config {config_file})" if config_file else "")


def trace(wrapper: ExportableDetector, example: torch.Tensor, config_file: str = None) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of the wrapper; errors name the detector and config."""
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the tracer warns about every Python int taken from a size; export checks the result instead
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return torch.jit.trace(wrapper, (example,), check_trace=False)
    except Exception as e:  # noqa: BLE001  (re-raised with the detector's name)
        raise ExportError(f"tracing {_describe(wrapper, config_file)} failed: {type(e).__name__}: {e}") from e


def export_torchscript(wrapper, example: torch.Tensor, path: str, metadata: dict, config_file: str = None) -> str:
    """Trace (unless ``wrapper`` is already a trace of an :class:`ExportableDetector`) and save to ``path``
    with the metadata as the extra file ``sd_detr.json`` and as ``path + ".json"``. Returns ``path``."""
    traced = wrapper if isinstance(wrapper, torch.jit.ScriptModule) else trace(wrapper, example, config_file)
    text = json.dumps(metadata, indent=1)
    torch.jit.save(traced, path, _extra_files={METADATA_KEY + ".json": text})
    with open(side_json_path(path), "w") as f:
        f.write(text + "\n")
    return path


def export_onnx(wrapper, example: torch.Tensor, path: str, metadata: dict, *,
                dynamic: bool = False, opset: int = DEFAULT_OPSET, config_file: str = None) -> str:
    """Export to ONNX at ``opset`` (>= 17) with the metadata in ``metadata_props`` (key ``sd_detr``: the
    JSON; ``class_names``, ``pixel_mean``, ``pixel_std``, ``input_shape``: JSON values) and in
    ``path + ".json"``.

    wrapper: an :class:`ExportableDetector` or its trace (:func:`trace`; one trace serves both formats).
    example: the traced input [3, H, W] or [B, 3, H, W] (uint8). ``dynamic``: height and width become
    dynamic axes; check the result at a second size (:func:`verify`), some parts take sizes as constants.
    An operator without an ONNX conversion raises :class:`ExportError` naming it and the modules using it.
    """
    import onnx

    if opset < 17:
        raise ExportError(f"opset {opset} is below 17, the lowest this project exports (LayerNormalization)")
    axes = None
    if dynamic:
        h_axis = example.dim() - 2
        axes = {INPUT_NAME: {h_axis: "height", h_axis + 1: "width"}}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
            warnings.filterwarnings("ignore", message="no signature found for <torch.ScriptMethod")  # a trace given
            # documented in docs/export.md: torchvision's -1 (adaptive) becomes ONNX's 0 (adaptive)
            warnings.filterwarnings("ignore", message="ONNX export for RoIAlign with a non-zero sampling_ratio")
            torch.onnx.export(wrapper, (example,), path, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                              output_names=list(OUTPUT_NAMES), dynamic_axes=axes)
    except Exception as e:  # noqa: BLE001  (re-raised naming the detector and the module)
        msg = str(e).split("\n")[0]
        where = ""
        op = re.search(r"operator '([\w:.]+)'", msg)
        if op:
            try:
                traced = wrapper if isinstance(wrapper, torch.jit.ScriptModule) else trace(wrapper, example, config_file)
                mods = modules_using_op(traced, op.group(1))
            except ExportError:
                mods = []
            if mods:
                where = f"; {op.group(1)} is used by module(s) {', '.join(mods)}"
        raise ExportError(f"ONNX export (opset {opset}) of {_describe(wrapper, config_file)} failed: "
                          f"{type(e).__name__}: {msg}{where}") from e
    model = onnx.load(path)
    props = {METADATA_KEY: json.dumps(metadata), "class_names": json.dumps(metadata["class_names"]),
             "pixel_mean": json.dumps(metadata["pixel_mean"]), "pixel_std": json.dumps(metadata["pixel_std"]),
             "input_shape": json.dumps(metadata["input"]["shape"]),
             "dynamic_height_width": json.dumps(metadata["input"]["dynamic_height_width"])}
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.doc_string = f"sd_detr {metadata['detector']}: image -> boxes, scores, labels (see metadata_props['{METADATA_KEY}'])"
    onnx.save(model, path)
    with open(side_json_path(path), "w") as f:
        f.write(json.dumps(metadata, indent=1) + "\n")
    return path


def load_metadata(path: str) -> dict:
    """The metadata of an exported file: the side JSON if present, else the one inside the file."""
    side = side_json_path(path)
    if os.path.isfile(side):
        with open(side) as f:
            return json.load(f)
    if path.endswith(".onnx"):
        import onnx

        props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
        if METADATA_KEY not in props:
            raise KeyError(f"{path}: no metadata_props[{METADATA_KEY!r}] (not exported by sd_detr?)")
        return json.loads(props[METADATA_KEY])
    extra = {METADATA_KEY + ".json": ""}
    torch.jit.load(path, _extra_files=extra)
    if not extra[METADATA_KEY + ".json"]:
        raise KeyError(f"{path}: no extra file {METADATA_KEY}.json (not exported by sd_detr?)")
    return json.loads(extra[METADATA_KEY + ".json"])


def onnx_runner(path: str, num_threads: int = 0, spinning: bool = True):
    """``image uint8 [..., 3, H, W] tensor or array -> (boxes, scores, labels)`` numpy arrays, onnxruntime CPU.

    ``spinning=False``: onnxruntime's threads sleep after a run instead of spin-waiting (else they take CPU
    from whatever runs next, e.g. the eager model in an interleaved benchmark)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if num_threads:
        opts.intra_op_num_threads = num_threads
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])

    def run(image):
        image = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        return tuple(session.run(list(OUTPUT_NAMES), {INPUT_NAME: image}))

    return run


def torchscript_runner(path: str):
    """``image tensor -> (boxes, scores, labels)`` numpy arrays from a saved TorchScript file."""
    module = torch.jit.load(path, map_location="cpu")

    def run(image):
        with torch.no_grad():
            return tuple(t.numpy() for t in module(torch.as_tensor(image)))

    return run


def compare_detections(expected: Sequence[np.ndarray], actual: Sequence[np.ndarray], score_tol: float = 1e-4,
                       box_tol: float = 1e-2, allow_ties: bool = False) -> Tuple[bool, str]:
    """Whether two (boxes [..., N, 4], scores [..., N], labels [..., N]) triples are the same detections:
    equal labels, scores within ``score_tol``, boxes within ``box_tol`` pixels, in the same order.

    ``allow_ties``: detections whose scores are within ``score_tol`` of each other may come in either order
    (a top-k of an untrained model has many near-equal scores, ordered by float rounding), and at the
    cut-off (within ``score_tol`` of the last kept score) either of two may be kept. Returns (ok, message).
    """
    eb, es, el = (np.asarray(x).reshape(-1, *np.asarray(x).shape[-1:]) if i == 0 else np.asarray(x).reshape(-1)
                  for i, x in enumerate(expected))
    ab, as_, al = (np.asarray(x).reshape(-1, *np.asarray(x).shape[-1:]) if i == 0 else np.asarray(x).reshape(-1)
                   for i, x in enumerate(actual))
    eb, ab = eb.reshape(-1, 4), ab.reshape(-1, 4)
    if es.shape != as_.shape:
        return False, f"{es.shape[0]} vs {as_.shape[0]} detections"
    ds, db = np.abs(es - as_), np.abs(eb - ab).max(axis=1)
    same = (el == al) & (ds <= score_tol) & (db <= box_tol)
    if same.all():
        return True, f"max score diff {ds.max():.2e}, max box diff {db.max():.2e} px"
    if allow_ties:
        used = np.zeros(len(es), dtype=bool)
        cut = es.min() + score_tol
        for i in range(len(as_)):
            cand = np.nonzero(~used & (el == al[i]) & (np.abs(es - as_[i]) <= score_tol)
                              & (np.abs(eb - ab[i]).max(axis=1) <= box_tol))[0]
            if len(cand):
                used[cand[0]] = True
            elif as_[i] > cut:
                return False, f"detection {i} (label {al[i]}, score {as_[i]:.6f}) has no match"
        return True, f"same detections up to the order of tied scores (max score diff {ds.max():.2e})"
    i = int(np.argmin(same))
    return False, (f"detection {i}: label {el[i]} vs {al[i]}, score {es[i]:.6f} vs {as_[i]:.6f}, "
                   f"box diff {db[i]:.3g} px ({(~same).sum()} of {len(same)} differ)")


def verify(wrapper: ExportableDetector, runner, shapes: Sequence[Sequence[int]], seed: int = 0, **tolerances) -> Dict:
    """Run the eager wrapper and an exported ``runner`` on seeded random uint8 images of each shape;
    returns {shape: (ok, message)}."""
    g = torch.Generator().manual_seed(seed)
    results = {}
    for shape in shapes:
        image = torch.randint(0, 256, tuple(shape), generator=g, dtype=torch.uint8)
        with torch.no_grad():
            expected = tuple(t.numpy() for t in wrapper(image))
        results[tuple(shape)] = compare_detections(expected, runner(image), **tolerances)
    return results
