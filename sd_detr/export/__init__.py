"""Export of the project's detectors to ONNX and TorchScript (tensor in, tensors out) and a predictor for
the exported files. See docs/export.md and tools/export_model.py."""
from .exporter import (
    DEFAULT_OPSET,
    FORMATS,
    ExportError,
    build_metadata,
    compare_detections,
    export_onnx,
    export_torchscript,
    load_metadata,
    modules_using_op,
    onnx_runner,
    side_json_path,
    torchscript_runner,
    trace,
    verify,
)
from .predictor import OnnxPredictor
from .wrapper import ExportableDetector, topk_detections

__all__ = [
    "DEFAULT_OPSET", "FORMATS", "ExportError", "ExportableDetector", "OnnxPredictor", "build_metadata",
    "compare_detections", "export_onnx", "export_torchscript", "load_metadata", "modules_using_op", "onnx_runner",
    "side_json_path", "topk_detections", "torchscript_runner", "trace", "verify",
]
