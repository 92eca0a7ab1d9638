"""Pictures of a trained model's decoder cross-attention for the query of one detection, per head and
averaged over heads (the library side of tools/visualize_attention.py).

Every conditional cross-attention of the chosen decoder layer is drawn (one for Conditional DETR and
DAB-DETR, one per branch for SD-DETR: classification and localization side by side). Maps are softmax
weights over the encoder feature map, upsampled onto the image, with the detection's box drawn."""
import os
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import LazyConfig, instantiate
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T

from ..attention import ConditionalCrossAttention
from ..checkpoint import DETRCheckpointer
from ..config import check_override_keys
from ..engine.accel import optimize_for_cpu
from ..layers import box_cxcywh_to_xyxy


class ImageReadError(ValueError):
    """An input image that cannot be read (missing, or not an image)."""


def cross_attentions(decoder, layer: int) -> List[Tuple[str, ConditionalCrossAttention]]:
    """(name, module) of every ConditionalCrossAttention in decoder layer ``layer``; SD-DETR's two are
    named ``"cls branch"`` and ``"loc branch"``."""
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise ValueError(f"{type(decoder).__name__} has no `layers` to take layer {layer} from")
    found = [(name, m) for name, m in layers[layer].named_modules() if isinstance(m, ConditionalCrossAttention)]
    if not found:
        raise ValueError(f"decoder layer {layer} of {type(decoder).__name__} has no conditional cross-attention")
    branches = getattr(decoder, "branches", None)  # SD-DETR: cross_attn.0 / .1 are the "cls" / "loc" branches
    if branches and len(branches) == len(found) > 1:
        found = [(f"{b} branch", m) for b, (_, m) in zip(branches, found)]
    return found


@torch.no_grad()
def attention_for_detection(model, image_chw: torch.Tensor, layer: int = -1, detection: int = 0):
    """Run the model once on ``image_chw`` (uint8 [3, H, W], the model's input format) with attention
    recording on.

    Returns (maps, box, label, score): maps = {module name: {part: [heads, h, w] weights over the unpadded
    feature map}} (parts: combined, content, spatial), box = normalised cxcywh [4] of the detection of
    score rank ``detection``, its class index and score.
    """
    modules = cross_attentions(model.decoder, layer)
    for _, m in modules:
        m.record_attention = True
    try:
        outputs, images, dec = model.forward_outputs([{"image": image_chw}])
    finally:
        for _, m in modules:
            m.record_attention = False
    logits, boxes = outputs["pred_logits"][0], outputs["pred_boxes"][0]
    scores, index = logits.sigmoid().flatten().sort(descending=True)
    k = logits.shape[1]
    query, label = int(index[detection]) // k, int(index[detection]) % k
    mem = dec.extra["memory"]
    fh, fw = mem.spatial_shape
    ih, iw = images.image_sizes[0]
    vh, vw = int(np.ceil(ih / mem.stride)), int(np.ceil(iw / mem.stride))  # unpadded feature cells
    maps = {}
    for name, m in modules:
        maps[name or "cross_attn"] = {
            part: w[0, :, query].reshape(w.shape[1], fh, fw)[:, :vh, :vw].float()
            for part, w in m.last_attention.items()
        }
    return maps, boxes[query], label, float(scores[detection])


def overlay(rgb: np.ndarray, weights: torch.Tensor, box_xyxy: Sequence[float]) -> np.ndarray:
    """Heat map of ``weights`` [h, w] upsampled onto ``rgb`` [H, W, 3] uint8, with the box (absolute xyxy
    pixels) drawn; an RGB uint8 [H, W, 3] picture."""
    h, w = rgb.shape[:2]
    heat = F.interpolate(weights[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    heat = (heat / heat.max().clamp(min=1e-12)).numpy()
    colored = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    out = (0.45 * rgb + 0.55 * colored).astype(np.uint8)
    x0, y0, x1, y1 = (int(round(v)) for v in box_xyxy)
    cv2.rectangle(out, (x0, y0), (x1, y1), (255, 255, 255), 2)
    return out


def render(rgb: np.ndarray, maps: Dict, box: torch.Tensor, parts: Sequence[str], title: str):
    """A matplotlib figure: one row per (module, part), columns = the mean over heads then each head."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = rgb.shape[:2]
    xyxy = (box_cxcywh_to_xyxy(box) * torch.tensor([w, h, w, h])).tolist()
    rows = [(name, part) for name in maps for part in parts]
    heads = next(iter(maps.values()))[parts[0]].shape[0]
    fig, axes = plt.subplots(len(rows), heads + 1, figsize=(2.2 * (heads + 1), 2.3 * len(rows)), squeeze=False)
    for r, (name, part) in enumerate(rows):
        weights = maps[name][part]
        panels = [("mean over heads", weights.mean(0))] + [(f"head {i}", weights[i]) for i in range(heads)]
        for c, (label, wmap) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(overlay(rgb, wmap, xyxy))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(label, fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{name}\n{part}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_attention_picture(config_file: str, checkpoint: str, image_path: str, output: str, detection: int = 0,
                           layer: int = -1, parts: Sequence[str] = ("combined",), opts: Sequence[str] = ()):
    """Load the config (``opts``: checked key=value overrides) and the checkpoint (strictly), run the
    image through the config's test augmentations, and write the attention picture of the detection of
    score rank ``detection`` in decoder layer ``layer`` to the PNG ``output`` (100 dpi). Returns the maps
    of :func:`attention_for_detection`. An unreadable image is an :class:`ImageReadError`."""
    cfg = LazyConfig.load(config_file)
    check_override_keys(cfg, list(opts))
    cfg = LazyConfig.apply_overrides(cfg, list(opts))
    model = instantiate(cfg.model).eval()
    optimize_for_cpu(model)
    DETRCheckpointer(model, strict=True).load(checkpoint)
    bgr = cv2.imread(image_path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageReadError(f"cannot read image {image_path}")
    mapper = cfg.dataloader.test.mapper
    rgb = bgr[:, :, ::-1]
    aug_input = T.AugInput(rgb if mapper.image_format == "RGB" else bgr)
    T.AugmentationList(instantiate(mapper.augmentations))(aug_input)
    image = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
    maps, box, label, score = attention_for_detection(model, image, layer, detection)
    names = cfg.dataloader.test.dataset.names
    classes = MetadataCatalog.get(names if isinstance(names, str) else names[0]).get("thing_classes", None)
    shown = np.ascontiguousarray(aug_input.image if mapper.image_format == "RGB" else aug_input.image[:, :, ::-1])
    title = (f"{os.path.basename(image_path)}: detection {detection} "
             f"({classes[label] if classes else label}, score {score:.2f}), decoder layer {layer}")
    fig = render(shown, maps, box, list(parts), title)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    fig.savefig(output, dpi=100)
    return maps
