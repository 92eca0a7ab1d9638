"""End to end through tools/lazyconfig_train_net.py, as a user runs it: the tiny SD-DETR (mini-detector,
task-aware queries, disentangled decoder, task-alignment loss with repeated positives) trains on the
synthetic data and its COCO AP beats an untrained model's by far."""
import os

from ..utils import REPO, train_and_compare_with_untrained

TINY = os.path.join(REPO, "projects", "sd_detr", "configs", "sd_detr_tiny_synthetic.py")


def test_tiny_sd_detr_learns_on_synthetic_data(synthetic_env, tmp_path):
    chance, trained = train_and_compare_with_untrained(TINY, synthetic_env, tmp_path)
    assert trained["bbox/AP50"] > max(10 * chance["bbox/AP50"], 5.0), (chance, trained)
    assert trained["bbox/AP"] > max(10 * chance["bbox/AP"], 1.0), (chance, trained)
