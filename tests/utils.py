"""Helpers shared by the tests."""
import glob
import os

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def project_configs(pattern="*.py"):
    """Every LazyConfig file of every project (models/ sub-configs excluded)."""
    return sorted(glob.glob(os.path.join(REPO, "projects", "*", "configs", pattern)))


def shrink_model_config(model_cfg):
    """Shrink a full-size detector config in place to a few-second CPU size, keeping its structure."""
    model_cfg.backbone.update(depth=18, stem_out_channels=8, res2_out_channels=8, freeze_at=0)
    if model_cfg.backbone.get("dc5"):
        model_cfg.backbone.depth = 50  # DC5 needs bottleneck blocks
        model_cfg.backbone.res2_out_channels = 32
    model_cfg.hidden_dim = 32
    model_cfg.position_embedding.num_pos_feats = 16
    model_cfg.encoder.update(num_layers=1, d_model=32, nhead=2, dim_feedforward=32)
    model_cfg.decoder.update(num_layers=2, nhead=2, dim_feedforward=32)
    if "d_model" in model_cfg.decoder and not str(model_cfg.decoder.d_model).startswith("${"):
        model_cfg.decoder.d_model = 32
    model_cfg.query_init.num_queries = 10
    return model_cfg


def random_batch(num_classes, sizes=((64, 80), (72, 56)), with_instances=True, seed=0):
    """Detectron2-style inputs: uint8 RGB images with a few random boxes each."""
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(seed)
    batch = []
    for h, w in sizes:
        x = {"image": torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8), "height": h, "width": w}
        if with_instances:
            n = 3
            xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.5, h * 0.5])
            wh = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.4, h * 0.4]) + 4
            inst = Instances((h, w))
            inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], 1))
            inst.gt_classes = torch.randint(0, num_classes, (n,), generator=g)
            x["instances"] = inst
        batch.append(x)
    return batch
