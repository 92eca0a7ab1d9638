"""tools/mutation_check.py's own logic, without running any mutant: a snippet must occur exactly once
inside the function its mutant names (found with ``ast``), the mutation is applied there and restored,
``--check`` names every stale mutant, the table counts killed and surviving mutants, and every planted
mutant still applies to the package and names tests that exist."""
import os
import sys

import pytest

from ..utils import REPO

sys.path.insert(0, os.path.join(REPO, "tools"))
import mutation_check as mc  # noqa: E402


MODULE = """\
import torch

LIMITS = {"a": 1,
          "b": 2}


def f():
    x = 1
    x = 1
    z = 3
    y = 1


class Net:
    SOURCES = {"cls": "cls"}

    @torch.no_grad()
    def forward(self):
        def inner():
            return 5
        y = 1
        return inner()
"""


def _mutant(original, mutated="q = 2", path="pkg/mod.py", function="f", name="m"):
    return mc.Mutant(name, path, original, mutated, ("tests/test_x.py",), "a planted bug", function=function)


def _package(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(MODULE)
    return str(tmp_path)


def test_definition_spans_name_functions_methods_nested_functions_classes_and_constants():
    """Bug caught: a span that misses the decorator or the last line, or a nested name under the wrong
    parent (the mutant would be checked against the wrong stretch of code)."""
    spans = mc.definition_spans(MODULE)
    text = {name: MODULE[s:e] for name, [(s, e)] in spans.items()}
    assert set(text) == {"LIMITS", "f", "Net", "Net.SOURCES", "Net.forward", "Net.forward.inner"}
    assert text["LIMITS"] == 'LIMITS = {"a": 1,\n          "b": 2}\n'
    assert text["f"].startswith("def f():") and text["f"].endswith("    y = 1\n")
    assert text["Net.forward"].startswith("    @torch.no_grad()\n    def forward")
    assert text["Net.forward"].endswith("return inner()\n")
    assert text["Net.forward.inner"] == "        def inner():\n            return 5\n"
    assert text["Net.SOURCES"] == '    SOURCES = {"cls": "cls"}\n'
    assert "x = 1" not in text["Net"] and "SOURCES" in text["Net"]


def test_a_snippet_missing_from_its_function_or_ambiguous_there_is_an_error_naming_mutant_file_and_function(tmp_path):
    """Bug caught: a stale mutant silently applied nowhere (it would count as 'survived'), in two
    places, or somewhere else in the file after a refactor moved the code it targets."""
    root = _package(tmp_path)
    with pytest.raises(mc.MutationError, match=r"mutant m \(pkg/mod.py\): the original snippet 'w = 0' occurs 0 "
                                               r"times in f of pkg/mod.py \(needs exactly 1\)$"):
        mc.apply_mutant(root, _mutant("w = 0"))
    with pytest.raises(mc.MutationError, match="occurs 2 times in f of pkg/mod.py"):
        mc.apply_mutant(root, _mutant("x = 1"))
    # present in the file, but not in the function the mutant names: moved code is reported as such
    with pytest.raises(mc.MutationError, match=r"occurs 0 times in Net.forward of pkg/mod.py .* 2 times elsewhere "
                                               r"in the file \(moved\?\)"):
        mc.apply_mutant(root, _mutant("x = 1", function="Net.forward"))
    with pytest.raises(mc.MutationError, match=r"mutant gone \(pkg/mod.py\): function Net.backward not found in "
                                               r"pkg/mod.py \(renamed, moved or removed"):
        mc.apply_mutant(root, _mutant("y = 1", function="Net.backward", name="gone"))
    with pytest.raises(mc.MutationError, match="mutant m .*names no function"):
        mc.apply_mutant(root, _mutant("z = 3", function=""))
    with pytest.raises(mc.MutationError, match="file pkg/other.py not found"):
        mc.apply_mutant(root, _mutant("z = 3", path="pkg/other.py"))
    assert (tmp_path / "pkg" / "mod.py").read_text() == MODULE  # untouched


def test_a_mutation_is_applied_inside_its_function_only_and_restored(tmp_path):
    """Bug caught: the replacement landing on the first occurrence in the file (here in ``f``) when the
    mutant names ``Net.forward``."""
    root = _package(tmp_path)
    m = _mutant("y = 1", "y = 7", function="Net.forward")
    original = mc.apply_mutant(root, m)
    assert (tmp_path / "pkg" / "mod.py").read_text() == MODULE.replace("        y = 1", "        y = 7")
    assert "    y = 1\n\n\nclass Net" in (tmp_path / "pkg" / "mod.py").read_text()  # f's copy untouched
    mc.restore(root, m, original)
    assert (tmp_path / "pkg" / "mod.py").read_text() == MODULE
    # a decorator belongs to its function, a class-level constant is a definition of its own
    mc.restore(root, m, mc.apply_mutant(root, _mutant("@torch.no_grad()\n", "", function="Net.forward")))
    mc.restore(root, m, mc.apply_mutant(root, _mutant('"cls": "cls"', '"cls": "loc"', function="Net.SOURCES")))
    assert (tmp_path / "pkg" / "mod.py").read_text() == MODULE


def test_check_reports_each_mutant_that_does_not_apply_or_names_a_missing_test(tmp_path):
    """Bug caught: ``--check`` passing while a mutant no longer applies or points at a renamed test."""
    root = _package(tmp_path)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("def test_y():\n    assert True\n\n\nclass TestZ:\n"
                                                 "    def test_w(self):\n        pass\n")
    good = mc.Mutant("good", "pkg/mod.py", "z = 3", "z = 4",
                     ("tests/test_x.py", "tests/test_x.py::test_y[1-2]", "tests/test_x.py::TestZ::test_w"), "ok",
                     function="f")
    bad_tests = mc.Mutant("bad_tests", "pkg/mod.py", "z = 3", "z = 4",
                          ("tests/test_x.py::test_gone", "tests/test_missing.py"), "stale tests", function="f")
    moved = _mutant("z = 3", function="Net.forward", name="moved")
    assert mc.check_mutants([good], root) == []
    errors = mc.check_mutants([good, bad_tests, moved, good], root)
    assert errors == ["mutant bad_tests: test tests/test_x.py::test_gone does not exist",
                      "mutant bad_tests: test tests/test_missing.py does not exist",
                      "mutant moved (pkg/mod.py): the original snippet 'z = 3' occurs 0 times in Net.forward of "
                      "pkg/mod.py (needs exactly 1); it occurs 1 times elsewhere in the file (moved?)",
                      "mutant good: the name is used twice"]


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


def test_every_planted_mutant_applies_inside_its_function_and_names_existing_tests():
    """Bug caught: package code changed under a mutant (its function renamed, or its snippet no longer
    inside it), or a mutant pointing at a test file or test that was renamed: the mutation check would
    refuse to run, or plant the bug somewhere else. The message lists the mutants at fault."""
    assert len(mc.MUTANTS) >= 68
    errors = mc.check_mutants(mc.MUTANTS, REPO)
    assert errors == [], "mutants that no longer apply:\n" + "\n".join(errors)


def test_check_option_exits_1_and_names_the_mutant_that_does_not_apply(monkeypatch, capsys):
    """Bug caught: ``--check`` printing success (exit 0) while a mutant is stale."""
    stale = mc.Mutant("stale_mutant", "sd_detr/modeling/matcher.py", "cost = cost * 2", "cost = cost * 3",
                      ("tests/modeling/test_matcher.py",), "stale", function="HungarianMatcher.forward")
    monkeypatch.setattr(mc, "MUTANTS", [mc.MUTANTS[0], stale])
    assert mc.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert "mutant stale_mutant (sd_detr/modeling/matcher.py)" in out and "HungarianMatcher.forward" in out
    assert mc.MUTANTS[0].name not in out
    monkeypatch.setattr(mc, "MUTANTS", [mc.MUTANTS[0]])
    assert mc.main(["--check"]) == 0


def _is_slow(decorators) -> bool:
    """Whether a decorator list holds ``pytest.mark.slow`` (or ``mark.slow``), called or not."""
    import ast

    for d in decorators:
        d = d.func if isinstance(d, ast.Call) else d
        if isinstance(d, ast.Attribute) and d.attr == "slow":
            return True
    return False


def _slow_tests(path):
    """(whole module slow, names of the slow test functions) of a test file, read with ast."""
    import ast

    tree = ast.parse(open(path).read())
    module_slow = any(
        isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets)
        and "slow" in ast.unparse(node.value) for node in tree.body)
    funcs = {node.name for node in ast.walk(tree)
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_slow(node.decorator_list)}
    return module_slow, funcs


def test_every_mutants_tests_are_in_the_fast_tier():
    """`make test-fast` must still kill every mutant: no test a mutant names may be marked ``slow`` (a test
    moved to the slow tier would leave its mutants to a run nobody makes while working)."""
    offenders = []
    for m in mc.MUTANTS:
        for test in m.tests:
            path, _, node = test.partition("::")
            module_slow, funcs = _slow_tests(os.path.join(REPO, path))
            name = node.split("::")[-1].split("[")[0]
            if module_slow or (name and name in funcs) or (not name and funcs):
                offenders.append(f"{m.name}: {test}")
    assert not offenders, "tests of mutants marked slow:\n  " + "\n  ".join(offenders)


def test_the_copy_has_the_model_zoo_links_pointing_into_the_copy(tmp_path):
    """The copy's sd_detr must find its configs (sd_detr.model_zoo): the git-ignored links setup.py makes are
    recreated there, and they resolve to the copy's own config folders, not the working tree's (a mutant of
    a config would otherwise be tested against the original)."""
    dst = tmp_path / "repo"
    mc.copy_repository(REPO, str(dst))
    links = dst / "sd_detr" / "model_zoo" / "configs"
    names = sorted(os.listdir(links))
    assert "common" in names and "sd_detr" in names, names
    for name in names:
        resolved = os.path.realpath(links / name)
        assert resolved.startswith(os.path.realpath(dst) + os.sep), (name, resolved)
    assert (links / "sd_detr" / "sd_detr_r50_12ep.py").is_file()
