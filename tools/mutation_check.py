#!/usr/bin/env python
"""Hand-planted mutants of sd_detr/modeling and sd_detr/attention against the fast tests.

Each mutant is a plausible wiring bug (swapped branch halves, a detached tensor, a dropped term, an
ignored option, an off-by-one in a layer range, a wrong sign), written as an exact snippet of the
package and its replacement, with the fast test files (or node ids) that should notice it. For each
mutant the tool copies the repository (tracked and untracked, not ignored files) into a temporary
directory, applies the mutation there (an error if the snippet does not occur exactly once), runs the
selected tests with ``pytest -x`` and that copy first on the import path (``PYTHONPATH=<copy>``, checked
through ``sd_detr.__file__``), restores the file and reports killed / survived in a table. The working
tree itself is never modified.

Before the mutants run, the selected tests run once on the unmutated copy; tests that already fail
there are deselected (reported), so a mutant counts as killed only by a test that passes without it.

``--tests-from REV`` replaces the copy's ``tests/`` by that git revision's (to measure the suite
"before"); test files or node ids missing there are skipped.

The mutants are data about this repository: ``tools/mutants.py``. The machinery is the package's
(``sd_detr.testing.mutation``); this file is its command line, run on the repository it lies in.

Usage::

    python tools/mutation_check.py                       # every mutant, current tests
    python tools/mutation_check.py --tests-from 3663316  # the same mutants against older tests
    python tools/mutation_check.py --only sd_swap_halves tal_alpha_beta_swapped
    python tools/mutation_check.py --check               # only verify every mutant applies and its tests exist
    python tools/mutation_check.py --list

It is a tool, not part of the test suite (it runs pytest dozens of times); CPU is scarce, so each
mutant runs only its relevant test files, with OMP_NUM_THREADS=1.
"""
import argparse
import os
import sys

from sd_detr.testing import mutation

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MUTANTS = mutation.load_mutants(os.path.join(REPO, "tools", "mutants.py"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    parser.add_argument("--tests-from", metavar="REV", help="run the tests/ of this git revision instead")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--check", action="store_true",
                        help="only check that every mutant applies (its snippet once inside its function) and "
                             "names existing tests")
    parser.add_argument("--output", help="also write the markdown table to this file")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per pytest run (default 600)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs pytest (without --fork)")
    parser.add_argument("--fork", action="store_true",
                        help="run pytest in forked children of this process, which imports torch, detectron2 ... once "
                             "(POSIX; saves their import in every run)")
    args = parser.parse_args(argv)
    try:
        mutants = mutation.select(MUTANTS, args.only)
    except mutation.MutationError as e:
        raise SystemExit(str(e))
    if args.list:
        print(mutation.listing(mutants))
        return 0
    if args.check:
        return mutation.check(mutants, REPO)
    report = mutation.run_mutants(mutants, REPO, tests_from=args.tests_from, python=args.python, timeout=args.timeout,
                                  keep=args.keep, fork=args.fork)
    text = mutation.table(report)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
