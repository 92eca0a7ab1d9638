"""CUDA checks of every tiny detector (run by tools/gpu_check.sh on a GPU machine; skipped without CUDA, so
the CPU suite never depends on them)."""
import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from sd_detr.model_zoo import detectors, get_config_file

from ..utils import random_batch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TINY = {d.name: get_config_file(d.tiny) for d in detectors()}  # every registered detector's tiny config


def _model(name):
    torch.manual_seed(0)
    return instantiate(LazyConfig.load(TINY[name]).model)


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_detector_on_cuda_gives_its_cpu_outputs(name):
    model = _model(name).eval()
    batch = random_batch(model.num_classes, with_instances=False)
    with torch.no_grad():
        cpu = model(batch)
        model.to("cuda")
        gpu = model(batch)
    for a, b in zip(cpu, gpu):
        a, b = a["instances"], b["instances"].to("cpu")
        # TF32 matmuls are off by default in PyTorch for float32, so the two agree closely
        torch.testing.assert_close(b.scores, a.scores, atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(b.pred_boxes.tensor, a.pred_boxes.tensor, atol=0.05, rtol=1e-3)


@pytest.mark.parametrize("name", sorted(TINY))
def test_amp_training_step_on_cuda_gives_finite_losses_and_gradients(name):
    model = _model(name).to("cuda").train()
    batch = random_batch(model.num_classes)
    scaler = torch.amp.GradScaler("cuda")
    with torch.autocast("cuda"):
        losses = model(batch)
    assert all(torch.isfinite(v).all() for v in losses.values()), losses
    scaler.scale(sum(losses.values())).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
