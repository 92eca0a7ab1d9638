#!/usr/bin/env python
"""Draw a model's detections on images of its config's test dataset, in a grid, as one PNG.

Uses Detectron2's Visualizer with the dataset's metadata (class names).

Example:
  python tools/visualize_predictions.py \\
      --config-file projects/conditional_detr/configs/conditional_detr_tiny_synthetic.py \\
      --checkpoint output/conditional_detr_tiny_synthetic/model_final.pth \\
      --output output/conditional_detr_tiny_synthetic/predictions.png --num-images 8 --threshold 0.5
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.data import MetadataCatalog  # noqa: E402
from detectron2.utils.visualizer import Visualizer  # noqa: E402

from sd_detr.checkpoint import DETRCheckpointer  # noqa: E402
from sd_detr.config import check_override_keys  # noqa: E402


def draw_predictions(model, dataset_dicts, mapper, metadata, threshold):
    """Yield RGB uint8 pictures of the detections (score >= threshold) of each dataset dict."""
    model.eval()
    for d in dataset_dicts:
        inputs = mapper(dict(d))
        with torch.no_grad():
            inst = model([inputs])[0]["instances"].to("cpu")
        inst = inst[inst.scores >= threshold]
        image = cv2.cvtColor(cv2.imread(d["file_name"], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        vis = Visualizer(image, metadata, scale=2.0)
        yield vis.draw_instance_predictions(inst).get_image()


def tile(images, columns):
    """Grid of RGB images (padded to the largest) -> one RGB image."""
    h = max(i.shape[0] for i in images)
    w = max(i.shape[1] for i in images)
    rows = (len(images) + columns - 1) // columns
    grid = np.full((rows * h, columns * w, 3), 255, dtype=np.uint8)
    for k, img in enumerate(images):
        r, c = divmod(k, columns)
        grid[r * h: r * h + img.shape[0], c * w: c * w + img.shape[1]] = img
    return grid


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument("--num-images", type=int, default=8)
    parser.add_argument("--columns", type=int, default=4)
    parser.add_argument("--threshold", type=float, default=0.5, help="minimum score of a drawn detection")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides key=value")
    args = parser.parse_args(argv)

    cfg = LazyConfig.load(args.config_file)
    check_override_keys(cfg, args.opts)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    model = instantiate(cfg.model).to(cfg.train.device)
    DETRCheckpointer(model, strict=True).load(args.checkpoint)
    dataset = instantiate(cfg.dataloader.test.dataset)[: args.num_images]
    mapper = instantiate(cfg.dataloader.test.mapper)
    names = cfg.dataloader.test.dataset.names
    metadata = MetadataCatalog.get(names if isinstance(names, str) else names[0])
    pictures = list(draw_predictions(model, dataset, mapper, metadata, args.threshold))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    cv2.imwrite(args.output, cv2.cvtColor(tile(pictures, args.columns), cv2.COLOR_RGB2BGR))
    print(f"wrote {len(pictures)} images with detections (score >= {args.threshold}) to {args.output}")


if __name__ == "__main__":
    main()
