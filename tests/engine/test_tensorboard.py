"""TensorBoard events by default (issue 23 §2): a training run writes an events file beside metrics.json
holding the same scalars. The set-up installs tensorboard, so a missing package fails here, not skips."""
import glob
import os
import shutil

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto.event_pb2 import SessionLog

from sd_detr.engine import do_train

from .test_resume_metrics import _raw_rows, _tiny_cfg


def _scalars(output_dir):
    """{tag: {step: value}} of every TensorBoard events file in ``output_dir`` (read as TensorBoard does:
    purged steps of a resumed run dropped)."""
    files = glob.glob(os.path.join(str(output_dir), "events.out.tfevents.*"))
    assert files, f"no TensorBoard events file in {output_dir}: {sorted(os.listdir(output_dir))}"
    acc = EventAccumulator(str(output_dir), size_guidance={"scalars": 0})  # 0: keep every event
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def _assert_same_as_metrics_json(scalars, rows, keys=("total_loss", "lr")):
    for key in keys:
        expected = {r["iteration"]: r[key] for r in rows if key in r}
        assert expected, key
        assert scalars[key].keys() == expected.keys(), key
        for step, value in expected.items():  # TensorBoard stores float32
            assert abs(scalars[key][step] - value) <= 1e-6 * max(1.0, abs(value)), (key, step)


def test_training_writes_the_metrics_json_scalars_as_tensorboard_events(synthetic_root, tmp_path, monkeypatch):
    """4 iterations logged every iteration (lr dropped x0.1 after iteration 2): the events hold total_loss and
    lr at iterations 0-3 with metrics.json's values. Then the state a kill after iteration 3 leaves when the
    last checkpoint is iteration 1, resumed: TensorBoard shows each step once, the resumed run's values (its
    purge_step). Catches the writer dropped (or tensorboard missing: no events file) and a resume whose
    events of steps 2-3 are shown twice or with the killed run's values."""
    monkeypatch.setenv("SD_DETR_SYNTHETIC_ROOT", synthetic_root)
    do_train(_tiny_cfg(tmp_path, max_iter=4, checkpoint_period=2))
    rows = _raw_rows(tmp_path)
    assert [r["iteration"] for r in rows] == [0, 1, 2, 3]
    scalars = _scalars(tmp_path)
    _assert_same_as_metrics_json(scalars, rows)
    assert len({r["lr"] for r in rows}) == 2  # the lr really changes within the run

    (tmp_path / "last_checkpoint").write_text("model_0000001.pth")
    for f in ("model_0000003.pth", "model_final.pth"):
        os.remove(tmp_path / f)
    killed = {k: dict(v) for k, v in scalars.items()}
    do_train(_tiny_cfg(tmp_path, max_iter=4, checkpoint_period=2), resume=True)
    rows = _raw_rows(tmp_path)
    assert [r["iteration"] for r in rows] == [0, 1, 2, 3]
    scalars = _scalars(tmp_path)
    _assert_same_as_metrics_json(scalars, rows)
    # the resumed steps are the new run's (the data order restarts at a resume, so the losses differ)
    assert scalars["total_loss"][3] != killed["total_loss"][3]
    # the resumed run's file starts by purging steps >= 2 (its purge_step): what TensorBoard readers honour
    # whatever their out-of-order heuristics (EventAccumulator's alone would hide a missing one)
    files = sorted(glob.glob(str(tmp_path / "events.out.tfevents.*")), key=os.path.getmtime)
    assert len(files) == 2
    starts = [e.step for e in EventFileLoader(files[1]).Load()
              if e.HasField("session_log") and e.session_log.status == SessionLog.START]
    assert starts == [2], starts
    shutil.rmtree(tmp_path)
