"""No module of sd_detr imports one that imports it back (issue 12: config/defaults.py <-> the detectors'
yacs modules was such a circle), and the checker itself sees a cycle when there is one."""
import os
import sys

from .utils import REPO

sys.path.insert(0, os.path.join(REPO, "tools"))
import import_graph  # noqa: E402


def test_the_package_has_no_import_cycle():
    edges = import_graph.import_edges(import_graph.package_modules(REPO))
    assert "sd_detr.config.defaults" in edges["sd_detr.config.yacs"]  # the graph is really read
    assert import_graph.import_cycles(edges) == []


def _write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_a_cycle_through_a_function_level_relative_import_is_found(tmp_path):
    """Bug caught: only module-level imports read (the old circle was a deferred import inside
    add_all_configs), or relative imports resolved one level off."""
    root = str(tmp_path)
    _write(root, "sd_detr/__init__.py", "")
    _write(root, "sd_detr/config/__init__.py", "")
    _write(root, "sd_detr/config/a.py", "def f():\n    from .b import g\n")
    _write(root, "sd_detr/config/b.py", "from .a import f\n")
    _write(root, "sd_detr/config/c.py", "from ..config import a\n")
    edges = import_graph.import_edges(import_graph.package_modules(root))
    assert edges["sd_detr.config.c"] == {"sd_detr.config", "sd_detr.config.a"}
    assert import_graph.import_cycles(edges) == [["sd_detr.config.a", "sd_detr.config.b"]]


# Every tool's library logic lives in sd_detr (issue 23): tests import the package, never a tool (they may run a
# tool as a subprocess, as a user does). The list is the folder's, less import_graph.py (a dev script this test
# imports to read the graph) and mutants.py (data: the mutants tools/mutation_check.py plants, not a tool).
NOT_TOOLS = ("import_graph", "mutants")
MOVED_TOOLS = tuple(import_graph.tool_modules(REPO, exclude=NOT_TOOLS))


def test_no_test_imports_a_tool():
    assert {"run_ablations", "benchmark", "demo", "gpu_check", "lazyconfig_train_net"} <= set(MOVED_TOOLS)
    assert not set(NOT_TOOLS) & set(MOVED_TOOLS)  # the folder is really read, the exceptions left out
    assert import_graph.tool_imports(REPO, MOVED_TOOLS) == []


def test_tool_imports_are_found_in_every_form_and_a_subprocess_is_not_one(tmp_path):
    """Bug caught: a form of import missed (the checker would pass a test that loads the tool: by a string, a
    name assigned the tool's path, or a computed file name in tools/), or a test that runs the tool as a
    program (a subprocess, or runpy as __main__: its command line, as a user runs it) taken for an import."""
    root = str(tmp_path)
    _write(root, "tests/a.py", "import os\nimport benchmark\n")
    _write(root, "tests/sub/b.py", "from tools.run_ablations import TABLES\nfrom tools import benchmark\n")
    _write(root, "tests/c.py", "import importlib.util, os\n"
                               "s = importlib.util.spec_from_file_location('x', os.path.join('R', 'tools', 'run_ablations.py'))\n")
    _write(root, "tests/d.py", "import subprocess\nsubprocess.run(['python', 'tools/benchmark.py', '--help'])\n"
                               "import import_graph\nfrom sd_detr import benchmark\n"
                               "import runpy\nTOOL = 'tools/benchmark.py'\nrunpy.run_path(TOOL, run_name='__main__')\n")
    _write(root, "tests/e.py", "import importlib.util, os\n"
                               "def load(name):\n"
                               "    path = os.path.join('R', 'tools', 'benchmark.py')\n"
                               "    return importlib.util.spec_from_file_location(name, path)\n"
                               "def load_any(name):\n"
                               "    return importlib.util.spec_from_file_location(name, os.path.join('R', 'tools', f'{name}.py'))\n"
                               "def elsewhere(name):\n"
                               "    return importlib.util.spec_from_file_location(name, os.path.join('R', f'{name}.py'))\n")
    tools = ("run_ablations", "benchmark")
    assert import_graph.tool_imports(root, tools) == [
        ("tests/a.py", 2, "benchmark"), ("tests/c.py", 2, "run_ablations"),
        ("tests/e.py", 4, "benchmark"), ("tests/e.py", 6, import_graph.ANY_TOOL),
        ("tests/sub/b.py", 1, "run_ablations"), ("tests/sub/b.py", 2, "benchmark")]
