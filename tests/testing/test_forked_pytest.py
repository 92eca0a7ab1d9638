"""sd_detr.testing.forked_pytest: a server that preloads modules once answers pytest runs from forked
children, each importing the package under test from its own root; a failing run, a timeout and a package
imported from elsewhere are told apart, and a library printing on import does not corrupt the answers.
The server here preloads a tiny module, not torch, so that the test takes about a second of CPU."""
import os
import sys

import pytest

from sd_detr.testing.forked_pytest import ForkedPytest, ForkServerError

TESTS = """\
import os
import time

import fakepkg


def test_ok():
    assert fakepkg.VALUE == 1 and os.environ["FAKE_FLAG"] == "on"


def test_broken():
    assert fakepkg.VALUE == 2


def test_slow():
    time.sleep(60)
"""


def _root(path, value=1):
    (path / "fakepkg").mkdir(parents=True)
    (path / "fakepkg" / "__init__.py").write_text(f"VALUE = {value}\n")
    (path / "test_fake.py").write_text(TESTS)
    return str(path)


def test_forked_runs_import_the_package_from_their_root_and_report_failures_and_timeouts(tmp_path):
    """Bugs caught: children sharing the server's (or each other's) import of the package under test, a
    failing run reported as passing, a hung child never killed, and prints of a preloaded library (here
    ``noisy``) read as the server's answer."""
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "noisy.py").write_text("print('hello from a library')\n")
    _root(libs, value=99)  # a fakepkg on the server's path, outside every root: a child must never take it
    one, two = _root(tmp_path / "one"), _root(tmp_path / "two", value=2)
    env = dict(os.environ, PYTHONPATH=str(libs))
    args, flag = ["-q", "-p", "no:cacheprovider", "-rfE"], {"FAKE_FLAG": "on"}  # flag: the children's env
    with ForkedPytest(sys.executable, env=env, preload=("noisy", "pytest"), package="fakepkg") as server:
        code, out = server.run(one, args + ["test_fake.py::test_ok"], flag, timeout=60)
        assert code == 0, out
        code, out = server.run(two, args + ["test_fake.py::test_ok"], flag, timeout=60)  # root two: VALUE = 2
        assert code == 1 and "FAILED test_fake.py::test_ok" in out, out
        assert server.run(one, args + ["test_fake.py::test_slow"], flag, timeout=1) == (-1, "timeout")
        os.remove(os.path.join(one, "fakepkg", "__init__.py"))
        os.rmdir(os.path.join(one, "fakepkg"))  # now only the one on the server's path is left
        with pytest.raises(ForkServerError, match=r"fakepkg imported from .*libs.*, not from the copy"):
            server.run(one, args + ["test_fake.py::test_ok"], flag, timeout=60)
        code, out = server.run(two, args + ["test_fake.py::test_broken"], flag, timeout=60)  # still serving
        assert code == 0, out  # and root two's package: VALUE = 2
    assert server.proc.returncode == 0
