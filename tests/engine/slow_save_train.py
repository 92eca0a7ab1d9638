"""tools/lazyconfig_train_net.py with torch.save slowed down: the bytes of every checkpoint are written in
20 flushed pieces over SD_DETR_TEST_SAVE_SECONDS (default 0.4 s), so that a SIGKILL sent at a random
moment often falls in the middle of a checkpoint write (a real one takes milliseconds for the tiny
models). Used by tests/engine/test_checkpoint_safety.py; run as ``python slow_save_train.py ARGS...``
with the tool's arguments."""
import io
import os
import runpy
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "lazyconfig_train_net.py")
_real_save = torch.save
_seconds = float(os.environ.get("SD_DETR_TEST_SAVE_SECONDS", "0.4"))


def _slow_save(obj, f, *args, **kwargs):
    if isinstance(f, (str, os.PathLike)):
        return _real_save(obj, f, *args, **kwargs)
    buf = io.BytesIO()
    _real_save(obj, buf, *args, **kwargs)
    data = buf.getvalue()
    step = max(1, -(-len(data) // 20))
    for i in range(0, len(data), step):
        f.write(data[i:i + step])
        f.flush()
        time.sleep(_seconds / 20)


torch.save = _slow_save

if __name__ == "__main__":
    sys.argv = [TOOL, *sys.argv[1:]]
    runpy.run_path(TOOL, run_name="__main__")
