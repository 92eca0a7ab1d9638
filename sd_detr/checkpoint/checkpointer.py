"""A DetectionCheckpointer that refuses checkpoints whose keys do not fit the model."""
import os
import shutil

import torch
from detectron2.checkpoint import DetectionCheckpointer

from .safe_load import load_pickle_weights, load_torch_weights


class CheckpointMismatchError(RuntimeError):
    pass


def _format_list(title, items, limit=40):
    items = list(items)
    if not items:
        return ""
    shown = "\n    ".join(str(x) for x in items[:limit])
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"\n  {title} ({len(items)}):\n    {shown}{more}"


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (disk full, I/O error); the previous one is untouched."""


def atomic_write(path: str, write) -> None:
    """Call ``write(f)`` on ``PATH.tmp-PID`` (binary, same folder), flush and fsync it, then rename it over
    ``path`` with ``os.replace`` (atomic on POSIX): readers see the old file or the complete new one, never a
    part. On any error (or a KeyboardInterrupt) the temporary file is removed and ``path`` is untouched."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable (a power loss right after must not bring the old name back)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # not every file system lets a folder be fsynced
        pass


def _tensors(obj, prefix=""):
    """(key path, tensor) of every tensor in nested dicts / lists / tuples."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}.{i}" if prefix else str(i))


def first_non_finite_tensor(state):
    """Key path (e.g. ``model.backbone.res2.0.conv1.weight``) of the first floating-point tensor of
    ``state`` with a NaN or inf, or None."""
    for key, t in _tensors(state):
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            return key
    return None


def estimate_saved_bytes(state) -> int:
    """Bytes ``torch.save(state)`` writes, estimated from the tensors (a view shares its storage, counted
    once), plus the zip records' alignment and the pickled structure (a generous 64 KiB + 1 KiB a tensor)."""
    seen, total, count = set(), 0, 0
    for _, t in _tensors(state):
        count += 1
        storage = t.untyped_storage()
        if storage.data_ptr() in seen and storage.data_ptr() != 0:
            continue
        seen.add(storage.data_ptr())
        total += storage.nbytes()
    return total + 1024 * count + 65536


def _free_bytes(folder):
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _fmt_bytes(n) -> str:
    if n is None:
        return "an unknown number of bytes"
    return f"{n} bytes ({n / 2**20:.1f} MiB)"


class DETRCheckpointer(DetectionCheckpointer):
    """:class:`DetectionCheckpointer` with explicit failure on mismatching checkpoints.

    Args:
        strict: raise :class:`CheckpointMismatchError` listing every missing, unexpected and wrongly
            shaped key (use for evaluation and resuming). When False (initialising training from, e.g.,
            backbone-only ImageNet weights), mismatches are logged by Detectron2 as usual, but a
            checkpoint of which no tensor fits the model at all is still an error.
    """

    def __init__(self, model, save_dir: str = "", *, strict: bool = False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.strict = strict

    # ------------------------------------------------------------------ saving (issue 22)
    def save(self, name: str, **kwargs):
        """Detectron2's ``Checkpointer.save``, made safe to kill at any moment: the checkpoint is written to
        ``NAME.pth.tmp-PID`` in the same folder, flushed, fsynced and renamed over ``NAME.pth`` (an atomic
        replace), and only then is ``last_checkpoint`` re-tagged (atomically too). A kill, a full disk or
        any error while writing leaves the previous file and tag as they were, and no temporary file.

        Refuses, before writing: a state with non-finite tensors (:class:`FloatingPointError` naming the
        first one), and a folder with less free space than the checkpoint's tensors need
        (:class:`CheckpointSaveError` naming the folder and the bytes needed)."""
        if not self.save_dir or not self.save_to_disk:
            return
        if "://" in self.save_dir:  # a remote PathManager folder: no rename there, Detectron2's way
            return super().save(name, **kwargs)
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        assert os.path.basename(save_file) == basename, basename
        bad = first_non_finite_tensor(data)
        if bad is not None:
            raise FloatingPointError(
                f"refusing to save {save_file}: tensor {bad} holds NaN or inf values; "
                f"{self._previous_checkpoint_note()}")
        need = estimate_saved_bytes(data)
        self.check_free_space(need, basename)
        self.logger.info("Saving checkpoint to {}".format(save_file))
        try:
            atomic_write(save_file, lambda f: torch.save(data, f))
        except Exception as e:
            free = _free_bytes(self.save_dir)
            raise CheckpointSaveError(
                f"could not write checkpoint {save_file}: {type(e).__name__}: {e}\n  the folder {self.save_dir} "
                f"has {_fmt_bytes(free)} free, the checkpoint needs about {_fmt_bytes(need)}; "
                f"{self._previous_checkpoint_note()}") from e
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Point ``last_checkpoint`` at ``last_filename_basename``, atomically (a kill cannot leave it empty)."""
        if "://" in self.save_dir:
            return super().tag_last_checkpoint(last_filename_basename)
        atomic_write(os.path.join(self.save_dir, "last_checkpoint"),
                     lambda f: f.write(last_filename_basename.encode("utf-8")))

    def check_free_space(self, need: int, what: str = "a checkpoint") -> None:
        """Raise :class:`CheckpointSaveError` naming the folder and ``need`` (bytes) when the folder has less
        free space (``shutil.disk_usage``). A file of the same name being replaced does not count as free: it is
        removed only once the new one is complete."""
        free = _free_bytes(self.save_dir)
        if free is None:
            return
        if free < need:
            raise CheckpointSaveError(
                f"not enough free space in {os.path.abspath(self.save_dir)} for {what}: it needs about "
                f"{_fmt_bytes(need)}, {_fmt_bytes(free)} are free (free at least {_fmt_bytes(need - free)}, or "
                f"choose another train.output_dir); {self._previous_checkpoint_note()}")

    def remove_stale_temporary_files(self):
        """Delete the ``*.tmp-PID`` files a killed save left in ``save_dir`` (call it while holding the
        folder's lock: no other process writes there). Returns the removed paths."""
        if not self.save_dir or "://" in self.save_dir or not os.path.isdir(self.save_dir):
            return []
        removed = []
        for entry in os.listdir(self.save_dir):
            stem, sep, pid = entry.rpartition(".tmp-")
            if sep and pid.isdigit() and (stem.endswith(".pth") or stem == "last_checkpoint"):
                path = os.path.join(self.save_dir, entry)
                os.remove(path)
                removed.append(path)
        if removed:
            self.logger.info("Removed %d partial checkpoint file(s) left by a killed run: %s", len(removed),
                             ", ".join(os.path.basename(p) for p in removed))
        return removed

    def _previous_checkpoint_note(self) -> str:
        last = self.get_checkpoint_file() if self.has_checkpoint() else ""
        return (f"the previous checkpoint {os.path.basename(last)} is kept and still tagged in last_checkpoint"
                if last else "no checkpoint was written")

    # ------------------------------------------------------------------ loading (issue 22)
    def _load_file(self, filename):
        """Detectron2's ``_load_file``, reading the file without running code it may carry (:mod:`.safe_load`):
        ``.pkl`` through the restricted unpickler (dicts, lists, numbers, strings, numpy arrays), then taken as
        Detectron2 takes it (a model-zoo dict with ``model`` and ``__author__`` as is, else Caffe2 / Detectron1
        blobs, renamed by matching heuristics); every other file (``.pth``, pycls ``.pyth``) with
        ``torch.load(weights_only=True)``. Raises :class:`~.safe_load.UnsafeCheckpointError` naming the file
        and the global it refused. Every load of the checkpointer (``load``, ``resume_or_load``) comes here."""
        if filename.endswith(".pkl"):
            data = load_pickle_weights(filename)
            if not isinstance(data, dict):
                raise ValueError(f"{filename}: a .pkl weight file must hold a dict, not {type(data).__name__}")
            if "model" in data and "__author__" in data:  # Detectron2 model-zoo format
                self.logger.info("Reading a file from '{}'".format(data["__author__"]))
                return data
            data = data.get("blobs", data)  # Caffe2 detection models keep the weights under "blobs"
            data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
            return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
        data = load_torch_weights(filename)
        if filename.endswith(".pyth"):  # pycls, as Detectron2 reads it
            if not isinstance(data, dict) or "model_state" not in data:
                raise ValueError(f"Cannot load .pyth file {filename}; pycls checkpoints must contain 'model_state'.")
            state = {k: v for k, v in data["model_state"].items() if not k.endswith("num_batches_tracked")}
            return {"model": state, "__author__": "pycls", "matching_heuristics": True}
        if not isinstance(data, dict):
            raise ValueError(f"{filename}: a checkpoint must hold a dict (a state dict, or one with a 'model' entry), "
                             f"not {type(data).__name__}")
        return data if "model" in data else {"model": data}

    def _load_model(self, checkpoint):
        heuristic = checkpoint.get("matching_heuristics", False)  # Detectron2 renames such keys itself
        source_keys = [k[len("module."):] if k.startswith("module.") else k for k in checkpoint["model"]]
        incompatible = super()._load_model(checkpoint)
        model_keys = set(self.model.state_dict().keys())
        shape_keys = {k for k, _, _ in incompatible.incorrect_shapes}
        loaded = heuristic or bool((set(source_keys) & model_keys) - shape_keys)
        mismatch = incompatible.missing_keys or incompatible.unexpected_keys or incompatible.incorrect_shapes
        if (self.strict and mismatch) or not loaded:
            hint = ""
            if any(k.startswith("transformer.") for k in source_keys):
                hint = ("\n  The keys look like an official DETR-family checkpoint: convert it first with "
                        "tools/convert_checkpoint.py --source ... --input OFFICIAL.pth --output OUT.pth")
            raise CheckpointMismatchError(
                f"checkpoint does not fit {type(self.model).__name__}"
                + ("" if loaded else " (no tensor of it matches the model)")
                + _format_list("missing in checkpoint", incompatible.missing_keys)
                + _format_list("unexpected in checkpoint", incompatible.unexpected_keys)
                + _format_list("shape mismatch (key, checkpoint, model)", incompatible.incorrect_shapes)
                + hint
            )
        return incompatible
