"""End to end through tools/lazyconfig_train_net.py: the tiny SMCA-DETR learns: it memorises the small
synthetic training set, its COCO AP there far above an untrained model's."""
import os

import pytest

from ..utils import MEMORISE_BUDGET_SHORT, REPO, memorise_and_compare_with_untrained

TINY = os.path.join(REPO, "projects", "smca_detr", "configs", "smca_detr_tiny_synthetic.py")


@pytest.mark.slow
def test_tiny_smca_detr_memorises_the_small_training_set(memorise_env, tmp_path):
    chance, trained = memorise_and_compare_with_untrained(TINY, memorise_env, tmp_path, budget=MEMORISE_BUDGET_SHORT)
    # measured 2026-12-07, 1 thread:
    # AP 57.4 / AP50 87.5 (tests.utils.MEMORISE_BUDGET, 300 iterations),
    # AP 36.1 / AP50 69.1
    # (MEMORISE_BUDGET_SHORT, 200 iterations)
    assert trained["bbox/AP50"] > max(10 * chance["bbox/AP50"], 50.0), (chance, trained)
    assert trained["bbox/AP"] > max(10 * chance["bbox/AP"], 20.0), (chance, trained)
