"""Helpers shared by the tests."""
import glob
import os

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def project_configs(pattern="*.py"):
    """Every LazyConfig file of every project (models/ sub-configs excluded)."""
    return sorted(glob.glob(os.path.join(REPO, "projects", "*", "configs", pattern)))


def shrink_model_config(model_cfg):
    """Shrink a full-size detector config in place to a few-second CPU size, keeping its structure
    (``sd_detr.config.SIZES["test"]``)."""
    from sd_detr.config import apply_size

    return apply_size(model_cfg, "test")


def tiny_synthetic_yacs(cfg, meta_architecture):
    """The yacs twin of ``sd_detr.config.apply_tiny_synthetic_size``: set ``cfg`` (with the detector's keys
    already added) to the size of the ``*_tiny_synthetic.py`` configs, on CPU. Returns ``cfg``."""
    from sd_detr.config import apply_size_yacs

    cfg.MODEL.META_ARCHITECTURE = meta_architecture
    cfg.MODEL.DEVICE = "cpu"
    return apply_size_yacs(cfg, "tiny_synthetic")


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


def random_encoder_memory(channels, bsz=2, h=3, w=4, seed=0):
    """An ``EncoderMemory`` of random memory and positions on an h x w map; the last two cells of image 1
    are padding."""
    from sd_detr.modeling import EncoderMemory

    g = torch.Generator().manual_seed(seed)
    memory = torch.randn(bsz, h * w, channels, generator=g)
    mask = torch.zeros(bsz, h * w, dtype=torch.bool)
    mask[1, -2:] = True
    return EncoderMemory(memory=memory, pos=torch.randn(bsz, h * w, channels, generator=g), mask=mask,
                         spatial_shape=(h, w), stride=32, image_sizes=torch.tensor([[96.0, 128.0], [96.0, 96.0]]))


def padded_encoder_memory(channels, shape, valid, stride, image_sizes, seed=0):
    """An ``EncoderMemory`` of two images on a ``shape`` (h, w) map with zero positions: image 0 fills the
    map, image 1 only its top-left ``valid`` (h, w) cells; ``image_sizes`` [[H, W], [H, W]] in pixels."""
    from sd_detr.modeling import EncoderMemory

    h, w = shape
    g = torch.Generator().manual_seed(seed)
    memory = torch.randn(2, h * w, channels, generator=g)
    mask = torch.ones(2, h, w, dtype=torch.bool)
    mask[0] = False
    mask[1, : valid[0], : valid[1]] = False
    return EncoderMemory(memory=memory, pos=torch.zeros_like(memory), mask=mask.flatten(1), spatial_shape=(h, w),
                         stride=stride, image_sizes=torch.tensor(image_sizes, dtype=torch.float32))


# ---------------------------------------------------------------- end-to-end runs of the training tool
import subprocess  # noqa: E402
import sys  # noqa: E402

TRAIN_TOOL = os.path.join(REPO, "tools", "lazyconfig_train_net.py")
# Learning tests memorise: 300 iterations of 4 images on the 16 training images of the small synthetic set
# (the ``memorise_env`` fixture), with the test-time resize instead of the random augmentation, evaluated
# on those same images. A working detector reaches AP50 45-90 there in about a minute on 2 cores, where the
# generalising protocol (1500 iterations on the 320 images, evaluated on unseen ones) needed 5-7 minutes per
# detector for AP50 5-35; what generalises is measured with several seeds in docs/ablations.md, not here.
MEMORISE_BUDGET = ["train.max_iter=300", "lr_multiplier.milestones=[270,300]", "train.eval_period=300",
                   "train.checkpointer.period=100000", "dataloader.train.total_batch_size=4",
                   "dataloader.train.mapper.augmentations.is_train=False",
                   "dataloader.train.mapper.augmentations.test_min_size=160",
                   "dataloader.train.mapper.augmentations.test_max_size=320",
                   "dataloader.test.dataset.names=sd_detr_synthetic_train"]
# SD-DETR and SMCA-DETR memorise fastest: 200 iterations keep their margins and the suite under 20 minutes
_SCHEDULE_KEYS = ("train.max_iter", "lr_multiplier.milestones", "train.eval_period")
MEMORISE_BUDGET_SHORT = ["train.max_iter=200", "lr_multiplier.milestones=[180,200]", "train.eval_period=200",
                         *(o for o in MEMORISE_BUDGET if o.split("=")[0] not in _SCHEDULE_KEYS)]


def run_train_tool(config, env, *args, timeout=1800):
    """Run tools/lazyconfig_train_net.py as a user would; fail with its output tail if it fails."""
    proc = subprocess.run([sys.executable, TRAIN_TOOL, "--config-file", config, *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def read_metrics(output_dir):
    """metrics.json rows (a line cut short by a killed run is skipped)."""
    from sd_detr.utils.metrics import read_metrics_json

    return read_metrics_json(str(output_dir))


def final_eval(output_dir):
    """The last COCO evaluation a run wrote to metrics.json ("bbox/AP", "bbox/AP50", ...)."""
    evals = [r for r in read_metrics(output_dir) if "bbox/AP" in r]
    assert evals, f"no evaluation results in {output_dir}/metrics.json"
    return evals[-1]


def memorise_and_compare_with_untrained(config, env, tmp_path, *overrides, budget=MEMORISE_BUDGET):
    """(untrained, trained) final evaluations of a config that memorises the small synthetic training set
    (``env``: the ``memorise_env`` fixture; ``budget``: :data:`MEMORISE_BUDGET`). The untrained model
    (max_iter=0: only the final evaluation runs) is the chance level of exactly this protocol."""
    eval_on_train = [o for o in budget if o.startswith("dataloader.test.")]
    run_train_tool(config, env, f"train.output_dir={tmp_path / 'untrained'}", "train.max_iter=0", *eval_on_train,
                   *overrides)
    run_train_tool(config, env, f"train.output_dir={tmp_path / 'trained'}", *budget, *overrides)
    return final_eval(tmp_path / "untrained"), final_eval(tmp_path / "trained")
