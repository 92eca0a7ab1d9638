#!/usr/bin/env python
"""Draw a trained model's decoder cross-attention for the query of one detection, per head and
averaged over heads, as one PNG.

Every conditional cross-attention of the chosen decoder layer is drawn (one for Conditional DETR and
DAB-DETR, one per branch for SD-DETR: classification and localization side by side, the paper's
Figures 1 and 4). Conditional DETR's Figure 4 splits the attention into its spatial term, its content
term and the combined attention: use --parts spatial content combined. Maps are softmax weights over
the encoder feature map, upsampled onto the image, with the detection's box drawn.

Examples:
  python tools/visualize_attention.py \\
      --config-file projects/conditional_detr/configs/conditional_detr_tiny_synthetic.py \\
      --checkpoint output/demo_conditional_detr/model_final.pth \\
      --input datasets/sd_detr_synthetic/val/000003.png --output attention.png --parts spatial content combined
  python tools/visualize_attention.py --config-file projects/sd_detr/configs/sd_detr_tiny_synthetic.py \\
      --checkpoint ... --input image.png --detection 1 --output sd_detr_attention.png
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

import sd_detr  # noqa: E402,F401  (first: registers the models, quiets import-time warnings)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.data import MetadataCatalog  # noqa: E402
from detectron2.data import transforms as T  # noqa: E402

from sd_detr.attention import ConditionalCrossAttention  # noqa: E402
from sd_detr.checkpoint import DETRCheckpointer  # noqa: E402
from sd_detr.config import check_override_keys  # noqa: E402
from sd_detr.engine.accel import optimize_for_cpu  # noqa: E402
from sd_detr.layers import box_cxcywh_to_xyxy  # noqa: E402


def cross_attentions(decoder, layer):
    """(name, module) of every ConditionalCrossAttention in decoder layer ``layer``."""
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
def attention_for_detection(model, image_chw, layer=-1, detection=0):
    """Run the model once with attention recording on.

    Returns (maps, box, label, score): maps = {module name: {part: [H, h, w] weights over the unpadded
    feature map}}, box = normalised cxcywh of the detection, its class index and score.
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


def overlay(rgb, weights, box_xyxy):
    """Heat map of ``weights`` [h, w] upsampled onto ``rgb`` [H, W, 3], with the box drawn."""
    h, w = rgb.shape[:2]
    heat = F.interpolate(weights[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    heat = (heat / heat.max().clamp(min=1e-12)).numpy()
    colored = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    out = (0.45 * rgb + 0.55 * colored).astype(np.uint8)
    x0, y0, x1, y1 = (int(round(v)) for v in box_xyxy)
    cv2.rectangle(out, (x0, y0), (x1, y1), (255, 255, 255), 2)
    return out


def render(rgb, maps, box, parts, title):
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--input", required=True, help="an image file")
    parser.add_argument("--output", required=True, help="PNG to write")
    parser.add_argument("--detection", type=int, default=0, help="rank of the detection by score (0 = best)")
    parser.add_argument("--layer", type=int, default=-1, help="decoder layer (default: the last)")
    parser.add_argument("--parts", nargs="+", default=["combined"], choices=["combined", "content", "spatial"])
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides key=value")
    args = parser.parse_args(argv)

    cfg = LazyConfig.load(args.config_file)
    check_override_keys(cfg, args.opts)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    model = instantiate(cfg.model).eval()
    optimize_for_cpu(model)
    DETRCheckpointer(model, strict=True).load(args.checkpoint)
    bgr = cv2.imread(args.input, cv2.IMREAD_COLOR)
    if bgr is None:
        parser.error(f"cannot read image {args.input}")
    mapper = cfg.dataloader.test.mapper
    rgb = bgr[:, :, ::-1]
    aug_input = T.AugInput(rgb if mapper.image_format == "RGB" else bgr)
    T.AugmentationList(instantiate(mapper.augmentations))(aug_input)
    image = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
    maps, box, label, score = attention_for_detection(model, image, args.layer, args.detection)
    names = cfg.dataloader.test.dataset.names
    classes = MetadataCatalog.get(names if isinstance(names, str) else names[0]).get("thing_classes", None)
    shown = np.ascontiguousarray(aug_input.image if mapper.image_format == "RGB" else aug_input.image[:, :, ::-1])
    title = (f"{os.path.basename(args.input)}: detection {args.detection} "
             f"({classes[label] if classes else label}, score {score:.2f}), decoder layer {args.layer}")
    fig = render(shown, maps, box, args.parts, title)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    fig.savefig(args.output, dpi=100)
    print(f"wrote {args.output}: {', '.join(maps)} x {', '.join(args.parts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
