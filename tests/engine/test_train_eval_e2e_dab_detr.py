"""End to end through tools/lazyconfig_train_net.py: the tiny DAB-DETR learns: it memorises the small
synthetic training set, its COCO AP there far above an untrained model's."""
import os

import pytest

from ..utils import REPO, memorise_and_compare_with_untrained

TINY = os.path.join(REPO, "projects", "dab_detr", "configs", "dab_detr_tiny_synthetic.py")


@pytest.mark.slow
def test_tiny_dab_detr_memorises_the_small_training_set(memorise_env, tmp_path):
    chance, trained = memorise_and_compare_with_untrained(TINY, memorise_env, tmp_path)
    # measured 2026-12-07 (tests.utils.MEMORISE_BUDGET, 1 thread): AP 1.9 / AP50 7.6, far below the other
    # three detectors' 17-57 / 45-90 (DAB-DETR learns more slowly at this scale: projects/dab_detr/README.md)
    assert trained["bbox/AP50"] > max(10 * chance["bbox/AP50"], 3.0), (chance, trained)
    assert trained["bbox/AP"] > max(10 * chance["bbox/AP"], 0.6), (chance, trained)
