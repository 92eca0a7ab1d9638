"""One run per output folder (issue 22): a lock held while a run writes there, a refusal to start a fresh
run over another run's outputs unless told to overwrite them, and the record that a run's final
evaluation finished (so that a ``--resume`` after a kill during it, or after it failed, runs it)."""
import fcntl
import glob
import json
import logging
import os

logger = logging.getLogger("sd_detr")

LOCK_FILE = "train.lock"
FINAL_EVAL_FILE = "final_evaluation.json"

_held = {}  # realpath of the folder -> [open lock file, times acquired] (re-entrant within a process)


class OutputDirInUseError(RuntimeError):
    """Another process holds the output folder's lock."""


class OutputDirNotEmptyError(RuntimeError):
    """A fresh run would mix its outputs with another run's."""


def lock_output_dir(output_dir: str) -> None:
    """Take ``output_dir/train.lock`` with ``fcntl.flock(LOCK_EX | LOCK_NB)`` for the rest of this process
    (or until :func:`unlock_output_dir`): a second run on the folder fails at once with
    :class:`OutputDirInUseError` naming the folder and the pid that holds it. The kernel drops the lock when
    the holder dies, so a SIGKILL leaves no stale lock (the file itself stays; only the lock counts).
    Re-entrant within one process (the tool takes it before ``default_setup``, ``do_train`` again)."""
    key = os.path.realpath(output_dir)
    if key in _held:
        _held[key][1] += 1
        return
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_FILE)
    f = open(path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise OutputDirInUseError(
            f"{os.path.abspath(output_dir)} is in use by another training run (pid {holder} holds {path}): "
            f"wait for it to end or stop it, or choose another train.output_dir=") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    _held[key] = [f, 1]


def _drop_inherited_locks() -> None:
    """In a forked child (a data-loader worker): close the inherited lock descriptors without unlocking.
    A flock belongs to the open file description that parent and child share, so a worker holding its copy
    kept the folder locked after a ``kill -9`` of the trainer until the orphaned worker exited; closing (not
    LOCK_UN, which would release the parent's lock) drops only the child's reference."""
    for f, _ in _held.values():
        try:
            f.close()
        except OSError:
            pass
    _held.clear()


os.register_at_fork(after_in_child=_drop_inherited_locks)


def unlock_output_dir(output_dir: str) -> None:
    """Release one :func:`lock_output_dir` of this process; the last release drops the lock."""
    key = os.path.realpath(output_dir)
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] == 0:
        del _held[key]
        entry[0].close()  # closing the descriptor drops the flock


def previous_run_files(output_dir: str, prefix: str = "model"):
    """The files another run left in ``output_dir`` that a fresh run would mix with: ``last_checkpoint``,
    its checkpoints ``PREFIX_*.pth``, ``metrics.json``, the final-evaluation record, TensorBoard event files
    and partial ``*.tmp-PID`` checkpoint files. (log.txt and config.yaml are not: each run appends to or
    rewrites them.)"""
    if not os.path.isdir(output_dir):
        return []
    names = ["last_checkpoint", "metrics.json", FINAL_EVAL_FILE]
    files = [os.path.join(output_dir, n) for n in names if os.path.isfile(os.path.join(output_dir, n))]
    for pattern in (f"{prefix}_*.pth", f"{prefix}_*.pth.tmp-*", "last_checkpoint.tmp-*", "events.out.tfevents.*"):
        files += sorted(glob.glob(os.path.join(glob.escape(output_dir), pattern)))
    return files


def check_fresh_output_dir(output_dir: str, overwrite: bool = False, keep=()) -> None:
    """For a fresh run (no ``--resume``): raise :class:`OutputDirNotEmptyError` when ``output_dir`` holds
    another run's checkpoints or metrics (the rows would interleave in metrics.json, and a later ``--resume``
    would pick up the old run's weights); with ``overwrite``, delete those files instead (never a path in
    ``keep``, e.g. a ``train.init_checkpoint`` that lies in the folder)."""
    keep = {os.path.realpath(p) for p in keep if p}
    files = [p for p in previous_run_files(output_dir) if os.path.realpath(p) not in keep]
    if not files:
        return
    if not overwrite:
        names = ", ".join(os.path.basename(p) for p in files[:6]) + (f", ... ({len(files)} files)"
                                                                    if len(files) > 6 else "")
        raise OutputDirNotEmptyError(
            f"{os.path.abspath(output_dir)} holds another run's outputs ({names}): continue that run with "
            f"--resume, start over in this folder with --overwrite (deletes them), or choose another "
            f"train.output_dir=")
    for p in files:
        os.remove(p)
    logger.info("--overwrite: removed %d files of the previous run in %s: %s", len(files), output_dir,
                ", ".join(os.path.basename(p) for p in files))


def final_evaluation_done(output_dir: str, max_iter: int) -> bool:
    """Whether the final evaluation of a run that ends at ``max_iter`` finished (its metrics.json row is
    written), as recorded by :func:`record_final_evaluation`."""
    path = os.path.join(output_dir, FINAL_EVAL_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("iteration") == max_iter


def record_final_evaluation(output_dir: str, max_iter: int, results: dict) -> None:
    """Write ``output_dir/final_evaluation.json`` (``{"iteration": max_iter, "results": {...}}``), atomically,
    once the final evaluation's row is in metrics.json."""
    from ..checkpoint.checkpointer import atomic_write

    text = json.dumps({"iteration": int(max_iter), "results": results}, indent=1, sort_keys=True) + "\n"
    atomic_write(os.path.join(output_dir, FINAL_EVAL_FILE), lambda f: f.write(text.encode("utf-8")))


def clear_final_evaluation(output_dir: str) -> None:
    """Forget a recorded final evaluation (training continues: a new one is due at its end)."""
    path = os.path.join(output_dir, FINAL_EVAL_FILE)
    if os.path.isfile(path):
        os.remove(path)
