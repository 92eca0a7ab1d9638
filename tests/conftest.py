"""Shared pytest fixtures."""
import logging

import pytest


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """Directory of a small synthetic dataset (12 train / 6 val images, seed 0), generated once."""
    from sd_detr.data.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("sd_detr_synthetic")
    generate_synthetic_dataset(str(root), num_train=12, num_val=6, seed=0, progress=False)
    return str(root)


@pytest.fixture(scope="session")
def synthetic_env(tmp_path_factory):
    """Environment for subprocess runs of the tools: the full default synthetic dataset (320 + 80
    images, generated once per session into a temporary root, about 2 s)."""
    import os

    root = tmp_path_factory.mktemp("synthetic_full")
    return dict(os.environ, SD_DETR_SYNTHETIC_ROOT=str(root), PYTHONWARNINGS="ignore")


@pytest.fixture(scope="session")
def memorise_env(tmp_path_factory):
    """Environment for the learning tests' subprocess runs (``tests.utils.MEMORISE_BUDGET``): a small
    synthetic dataset (16 train / 8 val images, 4 per shifted split, seed 0), generated once per session."""
    import os

    from sd_detr.data.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic_memorise")
    generate_synthetic_dataset(str(root), num_train=16, num_val=8, num_val_shift=4, seed=0, progress=False)
    return dict(os.environ, SD_DETR_SYNTHETIC_ROOT=str(root), PYTHONWARNINGS="ignore")


@pytest.fixture
def sd_detr_log(caplog):
    """caplog on the project's logger, whether or not it propagates (Detectron2's setup_logger,
    which every tool's main() calls, makes "sd_detr" stop propagating to the root logger caplog listens on)."""
    logger = logging.getLogger("sd_detr")
    logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.INFO)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield caplog
    logger.setLevel(level)
    logger.removeHandler(caplog.handler)
