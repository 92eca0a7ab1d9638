"""End to end through tools/lazyconfig_train_net.py: the tiny DAB-DETR trains on the synthetic data and
its COCO AP beats an untrained model's by far."""
import os

from ..utils import REPO, train_and_compare_with_untrained

TINY = os.path.join(REPO, "projects", "dab_detr", "configs", "dab_detr_tiny_synthetic.py")


def test_tiny_dab_detr_learns_on_synthetic_data(synthetic_env, tmp_path):
    chance, trained = train_and_compare_with_untrained(TINY, synthetic_env, tmp_path)
    # measured (projects/dab_detr/README.md): untrained AP 0.003 / AP50 0.015; after the short budget
    # AP 1.2 / AP50 4.8 (DAB-DETR learns more slowly than Conditional DETR at this scale)
    assert trained["bbox/AP50"] > max(10 * chance["bbox/AP50"], 2.0), (chance, trained)
    assert trained["bbox/AP"] > max(10 * chance["bbox/AP"], 0.5), (chance, trained)
