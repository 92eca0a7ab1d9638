"""tools/mutation_check.py's own logic, without running any mutant: a snippet must occur exactly once,
the mutation is applied to the copy and restored, the table counts killed and surviving mutants, and
every planted mutant still applies to the package and names test files that exist."""
import os
import sys

import pytest

from ..utils import REPO

sys.path.insert(0, os.path.join(REPO, "tools"))
import mutation_check as mc  # noqa: E402


def _mutant(original, mutated="y = 2", path="pkg/mod.py"):
    return mc.Mutant("m", path, original, mutated, ("tests/test_x.py",), "a planted bug")


def test_a_snippet_that_is_missing_or_ambiguous_is_an_error_naming_the_mutant_and_file(tmp_path):
    """Bug caught: a stale mutant silently applied nowhere (it would count as 'survived') or in two places."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("x = 1\nx = 1\nz = 3\n")
    with pytest.raises(mc.MutationError, match=r"mutant m: .*'w = 0'.* occurs 0 times in pkg/mod.py"):
        mc.apply_mutant(str(tmp_path), _mutant("w = 0"))
    with pytest.raises(mc.MutationError, match="occurs 2 times"):
        mc.apply_mutant(str(tmp_path), _mutant("x = 1"))
    with pytest.raises(mc.MutationError, match="file pkg/other.py not found"):
        mc.apply_mutant(str(tmp_path), _mutant("z = 3", path="pkg/other.py"))
    assert (tmp_path / "pkg" / "mod.py").read_text() == "x = 1\nx = 1\nz = 3\n"  # untouched


def test_a_mutation_is_applied_once_and_restored(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("x = 1\nz = 3\n")
    m = _mutant("z = 3")
    original = mc.apply_mutant(str(tmp_path), m)
    assert (tmp_path / "pkg" / "mod.py").read_text() == "x = 1\ny = 2\n"
    mc.restore(str(tmp_path), m, original)
    assert (tmp_path / "pkg" / "mod.py").read_text() == "x = 1\nz = 3\n"


def test_table_lists_each_result_and_counts_the_killed():
    a, b = _mutant("a"), mc.Mutant("other", "sd_detr/x.py", "b", "c", (), "another bug")
    report = {"results": [mc.Result(a, "killed", "tests/test_x.py::test_y", 1.0), mc.Result(b, "survived", "", 2.0)],
              "baseline_failures": ["tests/test_x.py::test_broken"], "tests_from": "abc123"}
    text = mc.table(report)
    assert "| m | pkg/mod.py | a planted bug | killed | tests/test_x.py::test_y |" in text
    assert "| other | x.py | another bug | survived |  |" in text
    assert "1 of 2 mutants killed (tests of abc123); survivors: other" in text
    assert "tests/test_x.py::test_broken" in text


def test_failing_ids_are_read_from_the_pytest_summary():
    out = "....F\nFAILED tests/a.py::test_b[1] - AssertionError: x\nERROR tests/c.py - ImportError\n1 failed"
    assert mc.failing_ids(out) == ["tests/a.py::test_b[1]", "tests/c.py"]


def test_every_planted_mutant_applies_to_the_package_and_names_existing_tests():
    """Bug caught: package code changed under a mutant (its snippet no longer matches), or a mutant
    pointing at a test file that was renamed: the mutation check would refuse to run."""
    names = [m.name for m in mc.MUTANTS]
    assert len(names) == len(set(names))
    for m in mc.MUTANTS:
        with open(os.path.join(REPO, m.path)) as f:
            assert f.read().count(m.original) == 1, f"{m.name}: snippet not found exactly once in {m.path}"
        assert m.original != m.mutated and m.tests, m.name
        for t in m.tests:
            assert os.path.isfile(os.path.join(REPO, t.split("::")[0])), f"{m.name}: {t} does not exist"
