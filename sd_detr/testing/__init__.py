"""Tools for testing code built on sd_detr: nothing here is imported by the detectors.

- :mod:`sd_detr.testing.mutation`: hand-planted mutants (exact snippets of a source tree and their
  replacements) run against the tests that should kill them.
- :mod:`sd_detr.testing.forked_pytest`: pytest runs in forked children of one interpreter that imported
  the heavy libraries once.
"""
