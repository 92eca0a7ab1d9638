"""Run an exported detector with the call interface of Detectron2's ``DefaultPredictor``."""
import logging

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.structures import Boxes, Instances

from .exporter import load_metadata, onnx_runner, torchscript_runner

logger = logging.getLogger(__name__)


class OnnxPredictor:
    """``predictor(bgr_image) -> {"instances": Instances}`` for a file written by ``tools/export_model.py``
    (ONNX through onnxruntime on CPU, or TorchScript), as :class:`sd_detr.engine.LazyPredictor` /
    ``DefaultPredictor`` do for the eager model; ``tools/demo.py`` can draw its output unchanged.

    - The image is resized as at export time: with dynamic height/width by the config's test resize
      (``metadata["test_resize"]``: ResizeShortestEdge, as LazyPredictor), at a fixed size to exactly the
      exported (H, W), aspect ratio not kept: the first image of another size logs a warning saying so
      (once per predictor).
    - Boxes are scaled back to the original image (absolute xyxy); if the model clips, they are clipped
      and empty ones dropped, as ``detector_postprocess`` does.

    Args:
        path: the exported ``.onnx`` or TorchScript file (metadata from ``path + ".json"`` or the file).
        num_threads: onnxruntime intra-op threads (0: its default).

    Attributes: ``metadata`` (the export metadata), ``class_names``.
    """

    def __init__(self, path: str, num_threads: int = 0):
        self.metadata = load_metadata(path)
        self.class_names = self.metadata["class_names"]
        self.input_format = self.metadata["input"]["channel_order"]
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"{path}: input channel_order must be RGB or BGR, got {self.input_format!r}")
        shape = self.metadata["input"]["shape"]
        if len(shape) != 3:
            raise ValueError(f"{path}: exported for a batch {shape}; OnnxPredictor needs a single-image export")
        self.dynamic = self.metadata["input"]["dynamic_height_width"]
        resize = self.metadata.get("test_resize")
        if self.dynamic:
            if not resize:
                raise ValueError(f"{path}: a dynamic-size export needs metadata['test_resize'] (export with a config)")
            self.aug = T.ResizeShortestEdge(resize["short_edge_length"], resize["max_size"], "choice")
        else:
            self.aug = T.Resize((shape[1], shape[2]))
        self.path = path
        self._warned_resize = False
        self.run = onnx_runner(path, num_threads) if self.metadata["format"] == "onnx" else torchscript_runner(path)

    def __call__(self, original_image):
        """original_image: HxWx3 uint8 numpy array in BGR order (as cv2.imread gives)."""
        if self.input_format == "RGB":
            original_image = original_image[:, :, ::-1]
        height, width = original_image.shape[:2]
        if not self.dynamic and not self._warned_resize and (height, width) != tuple(self.metadata["input"]["shape"][1:]):
            self._warned_resize = True  # once per predictor: a demo over a folder would repeat it per image
            exported = self.metadata["input"]["shape"]
            logger.warning(
                f"{self.path} was exported at the fixed size {exported[1]}x{exported[2]} (height x width): images of "
                f"another size, such as this {height}x{width} one, are resized to it, aspect ratio not kept (boxes "
                "are scaled back). Export with --dynamic to resize as the config's test resize does."
            )
        aug_input = T.AugInput(np.ascontiguousarray(original_image))
        self.aug(aug_input)
        image = np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)).astype(np.uint8)
        boxes, scores, labels = self.run(image)
        in_h, in_w = image.shape[1:]
        boxes = Boxes(torch.as_tensor(boxes))
        boxes.scale(width / in_w, height / in_h)
        inst = Instances((height, width))
        if self.metadata["clip_boxes"]:
            boxes.clip((height, width))
        inst.pred_boxes = boxes
        inst.scores = torch.as_tensor(scores)
        inst.pred_classes = torch.as_tensor(labels)
        if self.metadata["clip_boxes"]:
            inst = inst[boxes.nonempty()]
        return {"instances": inst}
