"""The repository's own mutants (tools/mutants.py, run by tools/mutation_check.py) against its package and
tests: every planted mutant still applies and names tests that exist, none of them in the slow tier, and the
copy the mutants run in finds the package's configs. The machinery is tested in tests/testing/test_mutation.py."""
import os

from sd_detr.testing import mutation

from ..utils import REPO

MUTANTS = mutation.load_mutants(os.path.join(REPO, "tools", "mutants.py"))


def test_every_planted_mutant_applies_inside_its_function_and_names_existing_tests():
    """Bug caught: package code changed under a mutant (its function renamed, or its snippet no longer
    inside it), or a mutant pointing at a test file or test that was renamed: the mutation check would
    refuse to run, or plant the bug somewhere else. The message lists the mutants at fault."""
    assert len(MUTANTS) >= 68
    errors = mutation.check_mutants(MUTANTS, REPO)
    assert errors == [], "mutants that no longer apply:\n" + "\n".join(errors)


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
    for m in MUTANTS:
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
    mutation.copy_repository(REPO, str(dst))
    links = dst / "sd_detr" / "model_zoo" / "configs"
    names = sorted(os.listdir(links))
    assert "common" in names and "sd_detr" in names, names
    for name in names:
        resolved = os.path.realpath(links / name)
        assert resolved.startswith(os.path.realpath(dst) + os.sep), (name, resolved)
    assert (links / "sd_detr" / "sd_detr_r50_12ep.py").is_file()
