"""Shared pytest fixtures."""
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


@pytest.fixture(autouse=True)
def _restore_cpu_accel_switches():
    """Tests that build models through the tools (``optimize_for_cpu``) switch the process-wide oneDNN
    linear and value padding on; restore them so that no test depends on the order the tests run in."""
    from sd_detr.attention.core import set_value_padding, value_padding_enabled
    from sd_detr.layers.linear import onednn_linear_enabled, set_onednn_linear

    linear, padding = onednn_linear_enabled(), value_padding_enabled()
    yield
    set_onednn_linear(linear)
    set_value_padding(padding)
