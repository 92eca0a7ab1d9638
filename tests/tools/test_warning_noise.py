"""The tools start without the ``torch.jit.script`` FutureWarning that fvcore and Detectron2 trigger at
import time, and the filter that hides it does not leak into users' code."""
import os
import subprocess
import sys

import pytest

from ..utils import REPO

pytestmark = pytest.mark.slow  # a python start-up per tool (about 35 s)


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTHONWARNINGS", None)  # the default warning filters, as a user has them
    return env


@pytest.mark.parametrize("tool", ["convert_checkpoint.py", "lazyconfig_train_net.py", "demo.py"])
def test_tool_help_prints_no_torch_jit_script_future_warning(tool):
    """Catches the filter missing or installed after detectron2/fvcore is first imported by a tool."""
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", tool), "--help"], env=_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage" in proc.stdout
    assert "FutureWarning" not in proc.stderr and "torch.jit.script" not in proc.stderr, proc.stderr


def test_users_own_torch_jit_script_still_warns_after_importing_sd_detr():
    """Catches a global ``warnings.filterwarnings("ignore", ...)`` left installed by ``import sd_detr``."""
    code = ("import warnings, torch, sd_detr\n"
            "def f(x: torch.Tensor) -> torch.Tensor:\n"
            "    return x + 1\n"
            "with warnings.catch_warnings(record=True) as w:\n"  # keeps the filters in force, records
            "    try:\n"
            "        torch.jit.script(f)\n"
            "    except OSError:  # no source for code given with -c; the warning comes first\n"
            "        pass\n"
            "print('WARNED' if any('torch.jit.script' in str(x.message) for x in w) else 'SILENT')\n")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "WARNED"
