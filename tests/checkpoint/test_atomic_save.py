"""DETRCheckpointer.save is safe to interrupt (issue 22): a checkpoint is written to a temporary file in the
same folder and renamed over its name, ``last_checkpoint`` is re-tagged only afterwards, a full disk is
an error naming the folder and the bytes needed before anything is written, and a state with NaN or inf
is never saved."""
import glob
import io
import os
from collections import namedtuple

import pytest
import torch
from torch import nn

import sd_detr.checkpoint.checkpointer as ckpt_module
from sd_detr.checkpoint import DETRCheckpointer
from sd_detr.checkpoint.checkpointer import CheckpointSaveError, estimate_saved_bytes

DiskUsage = namedtuple("DiskUsage", "total used free")


def _checkpointer(folder, value):
    model = nn.Linear(64, 32)
    with torch.no_grad():
        model.weight.fill_(value)
    return model, DETRCheckpointer(model, str(folder))


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def _assert_untouched(folder, last_name, weight_value):
    """last_checkpoint still names ``last_name``, that file loads completely with the old weights, and no
    temporary file is left behind."""
    assert (folder / "last_checkpoint").read_text() == last_name
    state = _load(folder / last_name)
    assert torch.all(state["model"]["weight"] == weight_value)
    assert glob.glob(str(folder / "*.tmp*")) == []


def _half_then_fail(real_save):
    """A torch.save that writes the first half of the real bytes into the file, then dies (as ENOSPC or a
    kill in the middle of torch's zip writer would)."""
    def save(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 123 vs 456")
    return save


@pytest.mark.parametrize("name", ["model_0000001", "model_final"])
def test_a_save_failing_midway_keeps_the_previous_checkpoint_and_tag(tmp_path, monkeypatch, name):
    """A write that fails halfway (disk full, I/O error; a kill is the same minus the clean-up) leaves the
    previous checkpoint, its last_checkpoint tag and no temporary file. Catches the old in-place write: with
    "model_final" twice (a --resume that extends a finished run rewrites model_final.pth while
    last_checkpoint names it) the first, complete model_final.pth was truncated into half a file."""
    model, checkpointer = _checkpointer(tmp_path, 1.0)
    first = "model_final" if name == "model_final" else "model_0000000"
    checkpointer.save(first, iteration=0)
    with torch.no_grad():
        model.weight.fill_(2.0)
    monkeypatch.setattr(torch, "save", _half_then_fail(torch.save))
    with pytest.raises(CheckpointSaveError) as err:
        checkpointer.save(name, iteration=1)
    _assert_untouched(tmp_path, f"{first}.pth", 1.0)
    if name != first:
        assert not (tmp_path / f"{name}.pth").exists()
    # the error says where, how much room there is and that the previous checkpoint is kept
    msg = str(err.value)
    assert str(tmp_path) in msg and "inline_container.cc" in msg and f"{first}.pth is kept" in msg
    assert "free" in msg


def test_a_complete_save_replaces_the_file_and_then_the_tag(tmp_path, monkeypatch):
    """The tag follows the file, never leads it: while torch.save writes, last_checkpoint still names the
    previous checkpoint and the new name does not exist yet (it appears complete, by the rename).
    Catches tagging before writing, and writing under the final name."""
    model, checkpointer = _checkpointer(tmp_path, 1.0)
    checkpointer.save("model_0000000", iteration=0)
    seen = {}
    real_save = torch.save

    def spy(obj, f, *args, **kwargs):
        seen["tag"] = (tmp_path / "last_checkpoint").read_text()
        seen["exists"] = (tmp_path / "model_0000001.pth").exists()
        seen["target"] = getattr(f, "name", "")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", spy)
    with torch.no_grad():
        model.weight.fill_(3.0)
    checkpointer.save("model_0000001", iteration=1)
    assert seen["tag"] == "model_0000000.pth" and seen["exists"] is False
    assert os.path.dirname(seen["target"]) == str(tmp_path)  # same folder: the rename cannot cross devices
    assert os.path.basename(seen["target"]) != "model_0000001.pth"
    _assert_untouched(tmp_path, "model_0000001.pth", 3.0)
    assert _load(tmp_path / "model_0000001.pth")["iteration"] == 1


def test_disk_full_is_an_error_naming_the_folder_and_bytes_needed_before_writing(tmp_path, monkeypatch):
    """Too little free space: a CheckpointSaveError (an OSError) naming the folder and the bytes the
    checkpoint needs, raised before anything is written (the old code started writing and died with an
    unexplained inline_container.cc error); the previous checkpoint stays tagged."""
    model, checkpointer = _checkpointer(tmp_path, 1.0)
    checkpointer.save("model_0000000", iteration=0)
    need = estimate_saved_bytes({"model": model.state_dict()})
    assert need >= 64 * 32 * 4 + 32 * 4  # at least the tensors' bytes
    calls = []
    monkeypatch.setattr(ckpt_module.shutil, "disk_usage", lambda p: DiskUsage(10**9, 10**9 - 1000, 1000))
    monkeypatch.setattr(torch, "save", lambda *a, **k: calls.append(1))
    with pytest.raises(OSError) as err:
        checkpointer.save("model_0000001", iteration=1)
    msg = str(err.value)
    assert isinstance(err.value, CheckpointSaveError)
    assert os.path.abspath(str(tmp_path)) in msg and "not enough free space" in msg
    needed = int(msg.split("it needs about ")[1].split(" bytes")[0])
    assert needed >= need and "1000 bytes" in msg
    assert calls == []  # nothing written
    _assert_untouched(tmp_path, "model_0000000.pth", 1.0)


def test_enough_free_space_saves(tmp_path, monkeypatch):
    """The check does not refuse a folder with room: catches comparing the wrong way round."""
    _, checkpointer = _checkpointer(tmp_path, 1.0)
    monkeypatch.setattr(ckpt_module.shutil, "disk_usage", lambda p: DiskUsage(10**9, 0, 10**8))
    checkpointer.save("model_0000000", iteration=0)
    _assert_untouched(tmp_path, "model_0000000.pth", 1.0)


def test_a_state_with_nan_is_never_saved(tmp_path):
    """Non-finite weights never reach a checkpoint: FloatingPointError naming the tensor, the last good
    checkpoint stays tagged. Catches the old save, which wrote (and tagged) whatever the model held."""
    model, checkpointer = _checkpointer(tmp_path, 1.0)
    checkpointer.save("model_0000000", iteration=0)
    with torch.no_grad():
        model.bias[3] = float("nan")
    with pytest.raises(FloatingPointError, match=r"model\.bias"):
        checkpointer.save("model_0000001", iteration=1)
    assert not (tmp_path / "model_0000001.pth").exists()
    _assert_untouched(tmp_path, "model_0000000.pth", 1.0)


def test_partial_files_of_a_killed_save_are_removed_and_never_a_checkpoint(tmp_path):
    """A SIGKILL during a save leaves NAME.pth.tmp-PID: it is not a checkpoint (Detectron2 lists *.pth),
    and the next run (holding the folder's lock) removes it; other files are left alone."""
    _, checkpointer = _checkpointer(tmp_path, 1.0)
    checkpointer.save("model_0000000", iteration=0)
    for name in ("model_0000001.pth.tmp-4242", "last_checkpoint.tmp-4242", "notes.tmp-1", "model_0000001.pth.tmp-x"):
        (tmp_path / name).write_bytes(b"partial")
    assert [os.path.basename(p) for p in checkpointer.get_all_checkpoint_files()] == ["model_0000000.pth"]
    removed = checkpointer.remove_stale_temporary_files()
    assert sorted(os.path.basename(p) for p in removed) == ["last_checkpoint.tmp-4242", "model_0000001.pth.tmp-4242"]
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000000.pth", "model_0000001.pth.tmp-x",
                                            "notes.tmp-1"]
