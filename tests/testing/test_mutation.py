"""sd_detr.testing.mutation's logic, without running any mutant: a snippet must occur exactly once inside
the function its mutant names (found with ``ast``), the mutation is applied there and restored, the check
names every stale mutant, the table counts killed and surviving mutants; mutant lists are read from a file
and selected by name. The repository's own mutants are checked in tests/tools/test_mutation_check.py."""
import pytest

from sd_detr.testing import mutation


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
    return mutation.Mutant(name, path, original, mutated, ("tests/test_x.py",), "a planted bug", function=function)


def _package(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(MODULE)
    return str(tmp_path)


def test_definition_spans_name_functions_methods_nested_functions_classes_and_constants():
    """Bug caught: a span that misses the decorator or the last line, or a nested name under the wrong
    parent (the mutant would be checked against the wrong stretch of code)."""
    spans = mutation.definition_spans(MODULE)
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
    with pytest.raises(mutation.MutationError, match=r"mutant m \(pkg/mod.py\): the original snippet 'w = 0' occurs 0 "
                                               r"times in f of pkg/mod.py \(needs exactly 1\)$"):
        mutation.apply_mutant(root, _mutant("w = 0"))
    with pytest.raises(mutation.MutationError, match="occurs 2 times in f of pkg/mod.py"):
        mutation.apply_mutant(root, _mutant("x = 1"))
    # present in the file, but not in the function the mutant names: moved code is reported as such
    with pytest.raises(mutation.MutationError, match=r"occurs 0 times in Net.forward of pkg/mod.py .* 2 times elsewhere "
                                               r"in the file \(moved\?\)"):
        mutation.apply_mutant(root, _mutant("x = 1", function="Net.forward"))
    with pytest.raises(mutation.MutationError, match=r"mutant gone \(pkg/mod.py\): function Net.backward not found in "
                                               r"pkg/mod.py \(renamed, moved or removed"):
        mutation.apply_mutant(root, _mutant("y = 1", function="Net.backward", name="gone"))
    with pytest.raises(mutation.MutationError, match="mutant m .*names no function"):
        mutation.apply_mutant(root, _mutant("z = 3", function=""))
    with pytest.raises(mutation.MutationError, match="file pkg/other.py not found"):
        mutation.apply_mutant(root, _mutant("z = 3", path="pkg/other.py"))
    assert (tmp_path / "pkg" / "mod.py").read_text() == MODULE  # untouched


def test_a_mutation_is_applied_inside_its_function_only_and_restored(tmp_path):
    """Bug caught: the replacement landing on the first occurrence in the file (here in ``f``) when the
    mutant names ``Net.forward``."""
    root = _package(tmp_path)
    m = _mutant("y = 1", "y = 7", function="Net.forward")
    original = mutation.apply_mutant(root, m)
    assert (tmp_path / "pkg" / "mod.py").read_text() == MODULE.replace("        y = 1", "        y = 7")
    assert "    y = 1\n\n\nclass Net" in (tmp_path / "pkg" / "mod.py").read_text()  # f's copy untouched
    mutation.restore(root, m, original)
    assert (tmp_path / "pkg" / "mod.py").read_text() == MODULE
    # a decorator belongs to its function, a class-level constant is a definition of its own
    mutation.restore(root, m, mutation.apply_mutant(root, _mutant("@torch.no_grad()\n", "", function="Net.forward")))
    mutation.restore(root, m, mutation.apply_mutant(root, _mutant('"cls": "cls"', '"cls": "loc"', function="Net.SOURCES")))
    assert (tmp_path / "pkg" / "mod.py").read_text() == MODULE


def test_check_reports_each_mutant_that_does_not_apply_or_names_a_missing_test(tmp_path):
    """Bug caught: ``--check`` passing while a mutant no longer applies or points at a renamed test."""
    root = _package(tmp_path)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("def test_y():\n    assert True\n\n\nclass TestZ:\n"
                                                 "    def test_w(self):\n        pass\n")
    good = mutation.Mutant("good", "pkg/mod.py", "z = 3", "z = 4",
                     ("tests/test_x.py", "tests/test_x.py::test_y[1-2]", "tests/test_x.py::TestZ::test_w"), "ok",
                     function="f")
    bad_tests = mutation.Mutant("bad_tests", "pkg/mod.py", "z = 3", "z = 4",
                          ("tests/test_x.py::test_gone", "tests/test_missing.py"), "stale tests", function="f")
    moved = _mutant("z = 3", function="Net.forward", name="moved")
    assert mutation.check_mutants([good], root) == []
    errors = mutation.check_mutants([good, bad_tests, moved, good], root)
    assert errors == ["mutant bad_tests: test tests/test_x.py::test_gone does not exist",
                      "mutant bad_tests: test tests/test_missing.py does not exist",
                      "mutant moved (pkg/mod.py): the original snippet 'z = 3' occurs 0 times in Net.forward of "
                      "pkg/mod.py (needs exactly 1); it occurs 1 times elsewhere in the file (moved?)",
                      "mutant good: the name is used twice"]


def test_table_lists_each_result_and_counts_the_killed():
    a, b = _mutant("a"), mutation.Mutant("other", "sd_detr/x.py", "b", "c", (), "another bug")
    report = {"results": [mutation.Result(a, "killed", "tests/test_x.py::test_y", 1.0), mutation.Result(b, "survived", "", 2.0)],
              "baseline_failures": ["tests/test_x.py::test_broken"], "tests_from": "abc123"}
    text = mutation.table(report)
    assert "| m | pkg/mod.py | a planted bug | killed | tests/test_x.py::test_y |" in text
    assert "| other | x.py | another bug | survived |  |" in text
    assert "1 of 2 mutants killed (tests of abc123); survivors: other" in text
    assert "tests/test_x.py::test_broken" in text


def test_failing_ids_are_read_from_the_pytest_summary():
    out = "....F\nFAILED tests/a.py::test_b[1] - AssertionError: x\nERROR tests/c.py - ImportError\n1 failed"
    assert mutation.failing_ids(out) == ["tests/a.py::test_b[1]", "tests/c.py"]


def test_check_returns_1_and_logs_only_the_mutants_that_do_not_apply(tmp_path):
    """Bug caught: ``--check`` printing success (exit 0) while a mutant is stale, or listing good ones."""
    root = _package(tmp_path)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("def test_y():\n    assert True\n")
    good = _mutant("z = 3", name="good_mutant")
    stale = _mutant("cost = cost * 2", function="Net.forward", name="stale_mutant")
    lines = []
    assert mutation.check([good, stale], root, log=lines.append) == 1
    assert len(lines) == 1 and "mutant stale_mutant (pkg/mod.py)" in lines[0] and "Net.forward" in lines[0]
    assert "good_mutant" not in lines[0]
    lines.clear()
    assert mutation.check([good], root, log=lines.append) == 0
    assert lines == ["all 1 mutants apply inside their functions and name existing tests"]


def test_select_keeps_the_order_asked_for_and_names_unknown_mutants():
    a, b, c = (_mutant("x", name=n) for n in "abc")
    assert mutation.select([a, b, c], None) == [a, b, c]
    assert mutation.select([a, b, c], ["c", "a"]) == [c, a]
    with pytest.raises(mutation.MutationError, match=r"^unknown mutant\(s\) \['d', 'e'\]; --list shows them$"):
        mutation.select([a, b, c], ["a", "d", "e"])
    assert mutation.listing([a]) == f"{'a':40s} {'pkg/mod.py':45s} a planted bug"


def test_a_mutant_list_is_loaded_from_its_file_and_anything_else_is_refused(tmp_path):
    """Bug caught: a list file whose entries are not mutants (or that names another list) accepted, and
    failing later as an AttributeError deep in the run."""
    good = tmp_path / "mutants.py"
    good.write_text("from sd_detr.testing.mutation import Mutant\n"
                    "MUTANTS = [Mutant('m', 'pkg/mod.py', 'z = 3', 'z = 4', ('tests/test_x.py',), 'bug',\n"
                    "                  function='f')]\n"
                    "OTHER = [1]\n")
    [m] = mutation.load_mutants(str(good))
    assert m == mutation.Mutant("m", "pkg/mod.py", "z = 3", "z = 4", ("tests/test_x.py",), "bug", function="f")
    with pytest.raises(mutation.MutationError, match="OTHER is not a list of"):
        mutation.load_mutants(str(good), "OTHER")
    with pytest.raises(mutation.MutationError, match="MISSING is not a list of"):
        mutation.load_mutants(str(good), "MISSING")
    with pytest.raises(mutation.MutationError, match="no mutant list at"):
        mutation.load_mutants(str(tmp_path / "absent.py"))
