"""Hand-planted mutants of a source tree, run against the tests that should kill them.

One concept: the mutation check. A :class:`Mutant` is a plausible bug written as an exact snippet of a
file, the definition it lies in and its replacement, with the test files (or node ids) that should notice
it. :func:`check_mutants` verifies that each applies (its snippet exactly once inside its definition,
found with ``ast``) and names tests that exist; :func:`run_mutants` copies a repository (tracked and
untracked, not ignored files) into a temporary directory, takes a baseline, then plants each mutant there
in turn, runs its tests with ``pytest -x`` and that copy first on the import path, restores the file and
reports killed / survived; :func:`table` renders the report. The working tree is never modified.

It lives in ``sd_detr.testing`` (not ``sd_detr.utils``): it is test machinery, imported by no detector, and
it needs no test framework to import (pytest is imported only by the processes that run the tests). Every
function takes the repository root (``repo`` / ``root``) as an argument: nothing here locates files
through the layout of a checkout. The mutants of this repository are data about it and live beside the
command-line tool (``tools/mutants.py``, read with :func:`load_mutants`); ``tools/mutation_check.py`` is the
command line.
"""
import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .forked_pytest import ForkedPytest, ForkServerError

__all__ = ["Mutant", "MutationError", "Result", "definition_spans", "locate", "apply_mutant", "restore",
           "missing_tests", "check_mutants", "copy_repository", "replace_tests", "failing_ids", "run_mutants",
           "table", "select", "listing", "check", "load_mutants"]


class MutationError(ValueError):
    """A mutant that cannot be applied (its snippet is missing or ambiguous)."""


@dataclass(frozen=True)
class Mutant:
    """One planted bug: ``original`` (exact text) becomes ``mutated``, inside the definition ``function``
    of ``path``, where the snippet must occur exactly once.

    ``function`` is the dotted name of the definition the snippet lies in, as the code nests it: a
    function (``gaussian_log_weights``), a method (``HungarianMatcher.forward``), a nested function
    (``MiniDetectorQueries.forward.gather``), a class (its body, for class attributes) or a module- or
    class-level assignment (``DETR_KEYS``, ``SDDETR.TAL_KEYS``). A refactor that renames, moves or
    rewrites that definition makes the mutant fail loudly instead of silently landing elsewhere.
    """

    name: str
    path: str
    original: str
    mutated: str
    tests: Tuple[str, ...]
    description: str
    function: str = ""


def definition_spans(text: str, path: str = "<text>") -> Dict[str, List[Tuple[int, int]]]:
    """Dotted name -> [(start, end)] character spans of every definition in ``text``: functions,
    methods, nested functions, classes (decorators included, from the start of their first line to the
    end of their last), and module- or class-level assignments to a plain name. A name defined twice
    (e.g. in both branches of an ``if``) has two spans."""
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise MutationError(f"{path} does not parse: {e}") from e
    line_start = [0]
    for line in text.splitlines(keepends=True):
        line_start.append(line_start[-1] + len(line))
    spans: Dict[str, List[Tuple[int, int]]] = {}

    def add(name, node, first_line):
        spans.setdefault(name, []).append((line_start[first_line - 1], line_start[node.end_lineno]))

    def walk(node, prefix, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                add(name, child, min([child.lineno] + [d.lineno for d in child.decorator_list]))
                walk(child, name + ".", not isinstance(child, ast.ClassDef))
            elif isinstance(child, (ast.Assign, ast.AnnAssign)) and not in_function:
                targets = child.targets if isinstance(child, ast.Assign) else [child.target]
                for t in targets:
                    if isinstance(t, ast.Name):
                        add(prefix + t.id, child, child.lineno)
            elif isinstance(child, (ast.stmt, ast.excepthandler)) or type(child).__name__ == "match_case":
                walk(child, prefix, in_function)  # blocks (if, for, try, with ...); expressions hold no definitions

    walk(tree, "", False)
    return spans


def locate(text: str, mutant: Mutant, definitions: Optional[Dict[str, List[Tuple[int, int]]]] = None) -> int:
    """Character offset of ``mutant.original`` in ``text``; a :class:`MutationError` naming the mutant,
    the file and the function unless the snippet occurs exactly once inside that function.
    ``definitions``: ``definition_spans(text)`` if already computed."""
    where = f"mutant {mutant.name} ({mutant.path})"
    if not mutant.function:
        raise MutationError(f"{where}: names no function (set Mutant.function to the definition it edits)")
    if definitions is None:
        definitions = definition_spans(text, mutant.path)
    spans = definitions.get(mutant.function, [])
    if not spans:
        raise MutationError(f"{where}: function {mutant.function} not found in {mutant.path} "
                            "(renamed, moved or removed? update the mutant)")
    if len(spans) > 1:
        raise MutationError(f"{where}: {mutant.function} is defined {len(spans)} times in {mutant.path}")
    start, end = spans[0]
    inside = text.count(mutant.original, start, end)
    if inside != 1:
        elsewhere = text.count(mutant.original) - inside
        hint = f"; it occurs {elsewhere} times elsewhere in the file (moved?)" if elsewhere else ""
        raise MutationError(f"{where}: the original snippet {mutant.original!r} occurs {inside} times in "
                            f"{mutant.function} of {mutant.path} (needs exactly 1){hint}")
    return text.index(mutant.original, start, end)


def apply_mutant(root: str, mutant: Mutant) -> str:
    """Write the mutation into ``root/mutant.path`` (inside ``mutant.function`` only); returns the
    original text (to restore it)."""
    path = os.path.join(root, mutant.path)
    if not os.path.isfile(path):
        raise MutationError(f"mutant {mutant.name}: file {mutant.path} not found under {root}")
    with open(path) as f:
        text = f.read()
    at = locate(text, mutant)
    with open(path, "w") as f:
        f.write(text[:at] + mutant.mutated + text[at + len(mutant.original):])
    return text


def _read_definitions(root: str, rel: str, cache: dict):
    """(text, definition spans) of ``root/rel``, or None if there is no such file; memoised in ``cache``."""
    if rel not in cache:
        path = os.path.join(root, rel)
        if not os.path.isfile(path):
            cache[rel] = None
        else:
            with open(path) as f:
                text = f.read()
            cache[rel] = (text, definition_spans(text, rel))
    return cache[rel]


def missing_tests(root: str, mutant: Mutant, cache: Optional[dict] = None) -> List[str]:
    """The test files / node ids of ``mutant`` that do not exist under ``root``: a missing file, or a
    node id whose test (``file::test_x``, ``file::TestCls::test_x``, parameters ``[...]`` ignored) is not
    defined in its file."""
    cache = {} if cache is None else cache
    missing = []
    for t in mutant.tests:
        file, *parts = t.split("::")
        found = _read_definitions(root, file, cache)
        if found is None or parts and ".".join(p.split("[")[0] for p in parts) not in found[1]:
            missing.append(t)
    return missing


def check_mutants(mutants: Sequence[Mutant], root: str) -> List[str]:
    """One line per problem: a mutant that does not apply (no function, function gone, snippet not
    exactly once inside it), names no tests or tests that do not exist, or a duplicate name."""
    errors = []
    seen = set()
    cache: dict = {}
    for m in mutants:
        if m.name in seen:
            errors.append(f"mutant {m.name}: the name is used twice")
        seen.add(m.name)
        try:
            found = _read_definitions(root, m.path, cache)
            if found is None:
                errors.append(f"mutant {m.name}: file {m.path} not found")
            else:
                locate(found[0], m, found[1])
        except MutationError as e:
            errors.append(str(e))
        if m.original == m.mutated:
            errors.append(f"mutant {m.name}: the mutation changes nothing")
        if not m.tests:
            errors.append(f"mutant {m.name}: names no tests")
        for t in missing_tests(root, m, cache):
            errors.append(f"mutant {m.name}: test {t} does not exist")
    return errors


def restore(root: str, mutant: Mutant, text: str) -> None:
    with open(os.path.join(root, mutant.path), "w") as f:
        f.write(text)


def repository_files(repo: str) -> List[str]:
    """Tracked and untracked files that git does not ignore (the working tree as it is now)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo, check=True,
                         capture_output=True).stdout.decode()
    return [p for p in out.split("\0") if p and os.path.isfile(os.path.join(repo, p))]


MODEL_ZOO_LINKS = os.path.join("sd_detr", "model_zoo", "configs")


def copy_repository(repo: str, dst: str) -> None:
    """Copy the working tree's files, and the git-ignored model-zoo links setup.py makes
    (``sd_detr/model_zoo/configs/<name>`` -> ``../../../configs/<name>`` or ``.../projects/<p>/configs``):
    relative links, so the copy's point to the copy's own config folders."""
    for rel in repository_files(repo):
        target = os.path.join(dst, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(repo, rel), target)
    links = os.path.join(repo, MODEL_ZOO_LINKS)
    if not os.path.isdir(links):
        raise MutationError(f"{links} is missing: install the checkout once (`pip install -e .`), which makes it")
    os.makedirs(os.path.join(dst, MODEL_ZOO_LINKS), exist_ok=True)
    for name in sorted(os.listdir(links)):
        source = os.path.join(links, name)
        if os.path.islink(source) and not os.path.isabs(os.readlink(source)):
            os.symlink(os.readlink(source), os.path.join(dst, MODEL_ZOO_LINKS, name))
        elif os.path.isdir(source):
            shutil.copytree(source, os.path.join(dst, MODEL_ZOO_LINKS, name))


def replace_tests(repo: str, dst: str, rev: str) -> None:
    """Replace ``dst/tests`` by the ``tests/`` tree of git revision ``rev`` of ``repo``."""
    shutil.rmtree(os.path.join(dst, "tests"), ignore_errors=True)
    archive = subprocess.run(["git", "archive", rev, "tests"], cwd=repo, capture_output=True)
    if archive.returncode != 0:
        raise MutationError(f"--tests-from {rev}: git archive failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", dst], input=archive.stdout, check=True)


def test_env(copy: str) -> Dict[str, str]:
    env = dict(os.environ, PYTHONPATH=copy, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1",
               PYTHONWARNINGS="ignore")
    return env


def check_import_path(python: str, copy: str) -> str:
    """``sd_detr.__file__`` as the tests will see it; an error unless it lies inside the copy."""
    proc = subprocess.run([python, "-c", "import sd_detr; print(sd_detr.__file__)"], cwd=copy, env=test_env(copy),
                          capture_output=True, text=True)
    where = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()
    if proc.returncode != 0 or not os.path.realpath(where).startswith(os.path.realpath(copy) + os.sep):
        raise MutationError(f"sd_detr is imported from {where!r}, not from the copy {copy}")
    return where


def existing_tests(copy: str, tests: Sequence[str]) -> List[str]:
    """The test files / node ids whose file exists in the copy (an older revision may lack some)."""
    return [t for t in tests if os.path.isfile(os.path.join(copy, t.split("::")[0]))]


_FAILED = re.compile(r"^(FAILED|ERROR) (\S+)")


def pytest_args(tests: Sequence[str], deselect: Sequence[str] = (), stop_first: bool = True) -> List[str]:
    args = ["-q", "-p", "no:cacheprovider", "-rfE", "--no-header"] + (["-x"] if stop_first else []) + list(tests)
    for d in deselect:
        args += ["--deselect", d]
    return args


def run_pytest(python: str, copy: str, tests: Sequence[str], deselect: Sequence[str] = (), stop_first: bool = True,
               timeout: float = 600, fork: Optional[ForkedPytest] = None) -> Tuple[int, str]:
    """(exit code, output) of pytest on ``tests`` in ``copy``: a subprocess of ``python``, or a forked child
    of the ``fork`` server (code -1: timed out)."""
    if fork is not None:
        try:
            return fork.run(copy, pytest_args(tests, deselect, stop_first), test_env(copy), timeout=timeout)
        except ForkServerError as e:
            raise MutationError(str(e)) from e
    cmd = [python, "-m", "pytest"] + pytest_args(tests, deselect, stop_first)
    try:
        proc = subprocess.run(cmd, cwd=copy, env=test_env(copy), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, "timeout"
    return proc.returncode, proc.stdout + proc.stderr


def failing_ids(output: str) -> List[str]:
    """Node ids (or files, for collection errors) in pytest's ``-rfE`` summary."""
    ids = []
    for line in output.splitlines():
        m = _FAILED.match(line)
        if m:
            ids.append(m.group(2))
    return ids


def first_failure(output: str) -> str:
    ids = failing_ids(output)
    return ids[0] if ids else ""


@dataclass
class Result:
    mutant: Mutant
    status: str  # killed | survived | no tests | error
    detail: str
    seconds: float


def run_mutants(mutants: Sequence[Mutant], repo: str, tests_from: Optional[str] = None,
                python: str = sys.executable, timeout: float = 600, keep: bool = False, fork: bool = False,
                log: Callable[[str], None] = print) -> dict:
    """Copy the repository ``repo`` once, take a baseline, then apply / test / restore each mutant in turn.

    ``python`` runs pytest in a subprocess per run; with ``fork``, pytest runs instead in forked children of
    a server started with this interpreter (:mod:`sd_detr.testing.forked_pytest`), which imports the heavy
    libraries once. ``timeout``: seconds per pytest run (three times that for the baseline). Returns
    ``{"results": [Result], "baseline_failures": [node id], "tests_from": tests_from}`` (see :func:`table`)."""
    tmp = tempfile.mkdtemp(prefix="sd_detr_mutants_")
    copy = os.path.join(tmp, "repo")
    server = None
    try:
        if fork:  # started first: it imports the libraries while the repository is copied
            server = ForkedPytest(sys.executable, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"))
        copy_repository(repo, copy)
        if tests_from:
            replace_tests(repo, copy, tests_from)
        for m in mutants:  # every snippet must apply before anything runs
            restore(copy, m, apply_mutant(copy, m))
        where = check_import_path(python, copy)
        log(f"copy: {copy} (sd_detr imported from {where})")
        selected = sorted({t for m in mutants for t in existing_tests(copy, m.tests)})
        log(f"baseline: {len(selected)} test selections on the unmutated copy ...")
        rc, out = run_pytest(python, copy, selected, stop_first=False, timeout=timeout * 3, fork=server)
        broken = failing_ids(out) if rc not in (0, 5) else []
        if rc not in (0, 1, 5):
            raise MutationError(f"baseline pytest run failed (exit {rc}):\n{out[-3000:]}")
        broken_files = {b for b in broken if "::" not in b}
        deselect = [b for b in broken if "::" in b]
        if broken:
            log(f"baseline failures, deselected for every mutant: {broken}")
        results = []
        for m in mutants:
            tests = [t for t in existing_tests(copy, m.tests) if t.split("::")[0] not in broken_files]
            start = time.time()
            if not tests:
                results.append(Result(m, "no tests", "", 0.0))
                log(f"{m.name:40s} no tests")
                continue
            original = apply_mutant(copy, m)
            try:
                rc, out = run_pytest(python, copy, tests, deselect, timeout=timeout, fork=server)
            finally:
                restore(copy, m, original)
            if rc == 0:
                status, detail = "survived", ""
            elif rc == 5:
                status, detail = "no tests", "nothing collected"
            elif rc == -1:
                status, detail = "killed", "timeout"
            else:
                status, detail = "killed", first_failure(out) or f"pytest exit {rc}"
            results.append(Result(m, status, detail, time.time() - start))
            log(f"{m.name:40s} {status:9s} {time.time() - start:6.1f} s  {detail}")
        return {"results": results, "baseline_failures": broken, "tests_from": tests_from}
    finally:
        if server is not None:
            server.close()
        if keep:
            log(f"kept the copy at {copy}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def table(report: dict) -> str:
    """Markdown table of the results and a one-line summary."""
    results = report["results"]
    label = f"tests of {report['tests_from']}" if report.get("tests_from") else "current tests"
    lines = [f"| mutant | file | bug | result ({label}) | first failing test |", "|---|---|---|---|---|"]
    for r in results:
        cells = [r.mutant.name, r.mutant.path.replace("sd_detr/", ""), r.mutant.description, r.status, r.detail]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    killed = sum(r.status == "killed" for r in results)
    lines.append("")
    lines.append(f"{killed} of {len(results)} mutants killed ({label}); survivors: "
                 + (", ".join(r.mutant.name for r in results if r.status != "killed") or "none"))
    if report.get("baseline_failures"):
        lines.append(f"deselected (failing without any mutant): {', '.join(report['baseline_failures'])}")
    return "\n".join(lines)


def select(mutants: Sequence[Mutant], names: Optional[Sequence[str]]) -> List[Mutant]:
    """The mutants called ``names``, in that order (all of ``mutants`` if none); a :class:`MutationError`
    naming the unknown ones."""
    if not names:
        return list(mutants)
    by_name = {m.name: m for m in mutants}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise MutationError(f"unknown mutant(s) {unknown}; --list shows them")
    return [by_name[n] for n in names]


def listing(mutants: Sequence[Mutant]) -> str:
    """One line a mutant: name, file, description (what ``--list`` prints)."""
    return "\n".join(f"{m.name:40s} {m.path:45s} {m.description}" for m in mutants)


def check(mutants: Sequence[Mutant], root: str, log: Callable[[str], None] = print) -> int:
    """``--check``: log the problems of :func:`check_mutants` (or a line of success); the exit status
    (1 if any mutant is stale)."""
    errors = check_mutants(mutants, root)
    log("\n".join(errors) or f"all {len(mutants)} mutants apply inside their functions and name existing tests")
    return 1 if errors else 0


def load_mutants(path: str, name: str = "MUTANTS") -> List[Mutant]:
    """The list ``name`` of the Python file ``path`` (a list of :class:`Mutant`: data about a repository,
    kept beside it, e.g. ``<repo>/tools/mutants.py``); a :class:`MutationError` if it holds anything else."""
    spec = importlib.util.spec_from_file_location(f"_mutants_{abs(hash(os.path.abspath(path)))}", path)
    if spec is None or not os.path.isfile(path):
        raise MutationError(f"no mutant list at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    mutants = getattr(module, name, None)
    if not isinstance(mutants, (list, tuple)) or not all(isinstance(m, Mutant) for m in mutants):
        raise MutationError(f"{path}: {name} is not a list of sd_detr.testing.mutation.Mutant")
    return list(mutants)
