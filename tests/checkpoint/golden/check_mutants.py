#!/usr/bin/env python
"""Check by hand that the golden test fails on the bugs it is meant to catch (never run by CI).

Copies the working tree (without .git, .venv, output/, datasets/) to a temporary folder, plants each
mutant below in the copy (never in the repository), runs the matching case of
``tests/checkpoint/test_golden_official.py`` there and prints KILLED (the test failed) or SURVIVED.
The unmutated copy is run first and must pass. About a minute per case on 2 shared CPU cores.

  python tests/checkpoint/golden/check_mutants.py
"""
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TEST = "tests/checkpoint/test_golden_official.py::test_converted_official_weights_give_the_official_logits_and_boxes"

# (what, file, original text, mutated text, golden case)
MUTANTS = [
    ("Conditional DETR: query scale lambda_q removed", "sd_detr/modeling/decoder/conditional.py",
     "scale = 1.0 if i == 0 else self.query_scale(tgt)", "scale = 1.0", "conditional_detr"),
    ("DAB-DETR: width/height modulation removed", "sd_detr/modeling/decoder/dab.py",
     "        if self.ref_anchor_head is not None:\n            spatial = modulate_spatial_query(",
     "        if False:\n            spatial = modulate_spatial_query(", "dab_detr"),
    ("DAB-DETR: encoder position scaling by content removed", "sd_detr/modeling/encoder.py",
     "layer_pos = pos if self.query_scale is None else pos * self.query_scale(out)", "layer_pos = pos", "dab_detr"),
    ("SMCA-DETR: Gaussian map not added", "sd_detr/modeling/decoder/smca.py",
     "biases = [gaussian_log_weights(centers, scales, lvl.grid, self.beta) for lvl in levels]",
     "biases = [0 * gaussian_log_weights(centers, scales, lvl.grid, self.beta) for lvl in levels]", "smca_detr"),
    ("DC5: res5 block 0 dilated too (Detectron2's res5_dilation=2)", "sd_detr/modeling/backbone.py",
     'kwargs["dilation_per_block"] = [1] + [2] * (num_blocks - 1)', 'kwargs["dilation_per_block"] = [2] * num_blocks',
     "conditional_detr_dc5"),
]


def run_case(root, case):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", f"{TEST}[{case}]"],
                          cwd=root, capture_output=True, text=True, env=env)


def main():
    root = tempfile.mkdtemp(prefix="sd_detr_mutants_")
    try:
        shutil.copytree(REPO, root, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".git", ".venv", "output", "datasets", "__pycache__", "*.egg-info"))
        clean = run_case(root, "conditional_detr")
        if clean.returncode:
            sys.exit(f"the unmutated copy fails the golden test:\n{clean.stdout[-2000:]}")
        killed = 0
        for what, path, old, new, case in MUTANTS:
            f = os.path.join(root, path)
            with open(f) as fh:
                src = fh.read()
            if src.count(old) != 1:
                print(f"[SKIPPED] {what}: the original text is not in {path} once (code changed: update the mutant)")
                continue
            with open(f, "w") as fh:
                fh.write(src.replace(old, new))
            try:
                r = run_case(root, case)
            finally:
                with open(f, "w") as fh:
                    fh.write(src)
            detail = next((line.strip() for line in r.stdout.splitlines() if line.startswith("E") and "official" in line), "")
            killed += bool(r.returncode)
            print(f"[{'KILLED' if r.returncode else 'SURVIVED'}] {what}: {detail}", flush=True)
        print(f"{killed} of {len(MUTANTS)} mutants killed")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
