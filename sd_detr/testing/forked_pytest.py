"""pytest runs in forked children of one server process that imported the heavy libraries once.

One concept: a fork server for pytest. Importing torch, Detectron2, SciPy and fvcore costs about 8 s of
CPU a run on a small machine; a server process imports them once and forks a child for each pytest run,
which then imports only the code under test. The code under test (``sd_detr``) must not be imported by
the server, since each child imports it from a directory of its own (a mutated copy of a source tree).
The caller of this module has imported ``sd_detr`` (it is a module of it), so the server is a separate
interpreter that runs this file *by path*, as a script, which does not import the package: this file
imports only the standard library at module level.

The server's arguments name the modules it preloads (default :data:`PRELOAD`). Protocol: one JSON object
a line on the server's stdin (``{"root", "args", "env", "output", "timeout", "package"}``), one JSON line
back (``{"code", "output"}``); the server exits at the end of its stdin. A child changes to ``root``,
puts it first on ``sys.path``, sets ``env``, checks that ``package`` is imported from ``root`` (exit code
:data:`WRONG_PACKAGE` otherwise) and runs ``pytest.main(args)``, its stdout and stderr going to the file
``output``; a child that outlives ``timeout`` seconds is killed (code -1, output ``"timeout"``).

Usage::

    with ForkedPytest() as runner:
        code, output = runner.run("/tmp/copy", ["-q", "tests/test_x.py"], env={"OMP_NUM_THREADS": "1"})
"""
import json
import os
import subprocess
import sys
import time
from typing import Dict, Optional, Sequence, Tuple

# Libraries the tests import that do not depend on the package under test: imported once by the server.
PRELOAD = ("torch", "torchvision", "scipy.optimize", "detectron2.config", "detectron2.modeling",
           "detectron2.structures", "detectron2.utils.comm", "fvcore.nn", "pytest")
PACKAGE = "sd_detr"  # the package under test, by default
WRONG_PACKAGE = 3  # a child's exit code when the package under test is not imported from the child's root


class ForkServerError(RuntimeError):
    """The server could not start, stopped, or a child imported the package from elsewhere."""


# ---------------------------------------------------------------------------- the server (a script)
def preload(names: Sequence[str] = PRELOAD) -> None:
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            importlib.import_module(name)
    if PACKAGE in sys.modules:  # a preloaded library imported it: children would not load their own
        raise ForkServerError(f"{PACKAGE} is already imported in the fork server; children would not load theirs")


def run_child(root: str, args: Sequence[str], env: Dict[str, str], output: str, package: str = PACKAGE) -> int:
    """The forked child's work; returns its exit code (never raises)."""
    code = 4
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.chdir(root)
        os.environ.update(env)
        sys.dont_write_bytecode = True  # a stale .pyc of a mutated module must never be reused
        sys.path.insert(0, root)
        import importlib

        import pytest

        module = importlib.import_module(package)
        if not os.path.realpath(module.__file__).startswith(os.path.realpath(root) + os.sep):
            print(f"{package} imported from {module.__file__}, not from the copy {root}")
            code = WRONG_PACKAGE
        else:
            code = int(pytest.main(list(args)))
    except BaseException as e:  # noqa: B902  (the child must reach os._exit whatever happens)
        print(f"forked pytest child failed: {e!r}")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def run_forked(root: str, args: Sequence[str], env: Dict[str, str], output: str, timeout: float,
               package: str = PACKAGE) -> Tuple[int, str]:
    """Fork, run pytest in the child (:func:`run_child`), wait at most ``timeout`` seconds."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        os._exit(run_child(root, args, env, output, package))
    deadline = time.time() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.time() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return -1, "timeout"
        time.sleep(0.2)
    with open(output) as f:
        text = f.read()
    return os.waitstatus_to_exitcode(status), text


def serve(names: Sequence[str] = PRELOAD) -> None:
    """Answer requests from stdin until it closes. The answers go to the original stdout; the server's
    own fd 1 is pointed at stderr, so that a library printing on import cannot corrupt the protocol."""
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    preload(names)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        code, text = run_forked(request["root"], request["args"], request["env"], request["output"],
                                request["timeout"], request.get("package", PACKAGE))
        answers.write(json.dumps({"code": code, "output": text}) + "\n")
        answers.flush()


# ---------------------------------------------------------------------------- the client
class ForkedPytest:
    """Client of a fork server (started here, with ``python``, on this file), which imports ``preload``.
    ``env``: the server's environment (it matters for the preloaded libraries, e.g. ``OMP_NUM_THREADS`` read
    by torch on import); default this process's. ``package``: the package the children must import from
    their ``root``."""

    def __init__(self, python: str = sys.executable, env: Optional[Dict[str, str]] = None,
                 preload: Sequence[str] = PRELOAD, package: str = PACKAGE):
        self.package = package
        self.proc = subprocess.Popen([python, os.path.abspath(__file__)] + list(preload), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def run(self, root: str, args: Sequence[str], env: Dict[str, str], output: Optional[str] = None,
            timeout: float = 600) -> Tuple[int, str]:
        """(pytest's exit code, its output) of ``pytest.main(args)`` in a forked child, in ``root``;
        ``output``: the file the child writes (default ``<root>/../pytest_output.txt``).
        A :class:`ForkServerError` if the server is gone or the child imported the package from elsewhere."""
        output = output or os.path.join(os.path.dirname(os.path.abspath(root)), "pytest_output.txt")
        request = {"root": root, "args": list(args), "env": dict(env), "output": output, "timeout": timeout,
                   "package": self.package}
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            raise ForkServerError(f"the pytest fork server stopped (exit {self.proc.wait()}); see its stderr above")
        answer = json.loads(line)
        if answer["code"] == WRONG_PACKAGE:
            raise ForkServerError(answer["output"].strip())
        return answer["code"], answer["output"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait()
        self.proc.stdout.close()

    def __enter__(self) -> "ForkedPytest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    if sys.path and os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
        sys.path.pop(0)  # run by path: this folder must not shadow anything the server imports
    serve(sys.argv[1:] if len(sys.argv) > 1 else PRELOAD)
