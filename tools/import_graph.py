#!/usr/bin/env python
"""The import graph between the modules of the ``sd_detr`` package, read from the source with ``ast`` (no
import is run), and its cycles: strongly connected groups of modules that import each other, directly or
round a loop, at module level or inside a function. A package's ``__init__`` counts as a module.

    python tools/import_graph.py            # prints the cycles (exit 1 if there is one)
    python tools/import_graph.py --edges    # also every edge

:func:`tool_imports` finds the test files that load a tool's module (whose logic belongs in the package).
"""
import argparse
import ast
import os
import sys
from typing import Dict, List, Sequence, Set, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def package_modules(root: str, package: str = "sd_detr") -> Dict[str, str]:
    """Dotted module name -> file, for every .py file of ``root/package``."""
    modules = {}
    for folder, _, files in os.walk(os.path.join(root, package)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                modules[dotted[: -len(".__init__")] if dotted.endswith(".__init__") else dotted] = path
    return modules


def _resolve(name: str, modules: Dict[str, str]) -> str:
    """The longest prefix of ``name`` that is a module of the package ('' if none: an outside import)."""
    while name and name not in modules:
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name


def import_edges(modules: Dict[str, str]) -> Dict[str, Set[str]]:
    """Module -> the package's modules it imports (``from .x import y`` imports ``x`` and, if ``y`` is a
    module, ``x.y``)."""
    edges = {m: set() for m in modules}
    for module, path in modules.items():
        here = module.split(".") if path.endswith("__init__.py") else module.split(".")[:-1]
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] + [f"{target}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                resolved = _resolve(name, modules)
                if resolved and resolved != module:
                    edges[module].add(resolved)
    return edges


def import_cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted, sorted."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges) + 100))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(cycles)


# calls that load a file as a module: a string naming the tool's file inside one is an import of the tool
_LOADERS = ("spec_from_file_location", "SourceFileLoader", "run_path", "load_source")
ANY_TOOL = "*"  # the tool reported for a file of tools/ whose name is computed (an f-string): it may be any


def _assignments(tree: ast.AST) -> Dict[str, List[ast.AST]]:
    """Name -> the values assigned to it anywhere in the file (``X = ...``), to follow a loader's path argument."""
    values: Dict[str, List[ast.AST]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    values.setdefault(target.id, []).append(node.value)
    return values


def _loaded_tools(call: ast.Call, tools: Sequence[str], values: Dict[str, List[ast.AST]]) -> List[str]:
    """The tools a loader call loads: the ``tool.py`` strings in its arguments, or in the values of the names
    it is given (one step, e.g. ``path = os.path.join(REPO, "tools", "x.py")``); a computed file name
    (``f"{name}.py"``) next to the folder ``"tools"`` is :data:`ANY_TOOL`. ``runpy.run_path(..., run_name=
    "__main__")`` runs the file as a program (``python FILE``), as a subprocess does: not an import."""
    if any(k.arg == "run_name" and isinstance(k.value, ast.Constant) and k.value.value == "__main__"
           for k in call.keywords):
        return []
    exprs = list(call.args)
    exprs += [v for a in call.args for n in ast.walk(a) if isinstance(n, ast.Name) for v in values.get(n.id, [])]
    hits = []
    for expr in exprs:
        strings = [c.value for c in ast.walk(expr) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
        hits += [c[:-3] for c in strings if c.endswith(".py") and os.path.basename(c)[:-3] in tools]
        computed = [j for j in ast.walk(expr) if isinstance(j, ast.JoinedStr) and j.values
                    and isinstance(j.values[-1], ast.Constant) and str(j.values[-1].value).endswith(".py")]
        if computed and any(c == "tools" or c.startswith("tools/") for c in strings):
            hits.append(ANY_TOOL)
    return sorted(set(hits))


def tool_imports(root: str, tools: Sequence[str], folder: str = "tests") -> List[Tuple[str, int, str]]:
    """``(file relative to root, line, tool)`` for every import of one of ``tools`` (module names of
    ``tools/``, e.g. ``"benchmark"``) in the .py files below ``root/folder``: ``import tool``,
    ``from tool import ...``, ``tools.tool``, or the tool's file (``tool.py``) named in a call that loads a
    file as a module (``importlib.util.spec_from_file_location``, ``runpy.run_path``, ...), directly or
    through a name assigned in the file; a file of ``tools/`` whose name is computed is :data:`ANY_TOOL`.
    Running the tool as a subprocess (or with ``runpy.run_path(..., run_name="__main__")``) is not an
    import."""
    found = []
    wanted = set(tools) | {f"tools.{t}" for t in tools}
    for dirpath, dirs, files in os.walk(os.path.join(root, folder)):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), filename=path)
            values = _assignments(tree)
            for node in ast.walk(tree):
                hits = []
                if isinstance(node, ast.Import):
                    hits = [a.name for a in node.names if a.name in wanted]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    hits = [node.module] if node.module in wanted else []
                    if node.module == "tools":
                        hits = [a.name for a in node.names if a.name in tools]
                elif isinstance(node, ast.Call):
                    func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                    if func in _LOADERS:
                        hits = _loaded_tools(node, tools, values)
                found += [(rel, node.lineno, os.path.basename(h.replace(".", "/")) if h.startswith("tools.") else
                           os.path.basename(h)) for h in hits]
    return sorted(found)


def tool_modules(root: str, exclude: Sequence[str] = ()) -> List[str]:
    """The module names of the .py files in ``root/tools`` (sorted), less ``exclude``."""
    folder = os.path.join(root, "tools")
    return sorted(n[:-3] for n in os.listdir(folder) if n.endswith(".py") and n[:-3] not in exclude)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=REPO, help="the repository (default: this one)")
    parser.add_argument("--edges", action="store_true", help="print every edge too")
    args = parser.parse_args(argv)
    edges = import_edges(package_modules(args.root))
    if args.edges:
        for m in sorted(edges):
            for t in sorted(edges[m]):
                print(f"{m} -> {t}")
    cycles = import_cycles(edges)
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} edges, {len(cycles)} import cycle(s)")
    for group in cycles:
        print("  cycle: " + ", ".join(group))
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
