"""Convert a checkpoint file released by an official implementation to this project's parameter names (the
library side of tools/convert_checkpoint.py; the rules are :func:`sd_detr.checkpoint.convert_state_dict`)."""
import argparse
import pickle

import torch

from .convert import convert_state_dict
from .safe_load import load_torch_weights


class ConversionError(ValueError):
    """A file that cannot be converted: its message names the file and why (for the user, not a traceback)."""


def convert_checkpoint_file(source: str, input_path: str, output_path: str, num_classes: int = 80) -> int:
    """Read the official checkpoint ``input_path`` (a dict of tensors, or a dict with a 'model' entry),
    convert its weights by the rules of ``source`` (``num_classes`` 80: the COCO-id class head mapped to
    Detectron2's 80 classes; else the official head kept) and write ``{"model": ...}`` to ``output_path``.
    Returns the number of tensors read. A file that is unsafe, not a state dict, or has keys no rule
    covers is a :class:`ConversionError` and nothing is written."""
    # Official checkpoints pickle their training options (an argparse.Namespace) under 'args' next to the
    # weights (Atten4Vis/ConditionalDETR main.py:216-222, utils.save_on_master({..., 'args': args})): that class is
    # allowed, anything else a file names is refused before it runs (torch.load weights_only=True).
    try:
        ckpt = load_torch_weights(input_path, extra_globals=[argparse.Namespace])
    except pickle.UnpicklingError as e:  # UnsafeCheckpointError: names the file and the refused global
        raise ConversionError(str(e)) from e
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConversionError(f"{input_path}: not a state dict (expected a dict of tensors or a dict with a "
                              f"'model' entry)")
    try:
        converted = convert_state_dict(source, state, num_classes=num_classes)
    except (KeyError, ValueError) as e:  # unknown keys (with the --source they look like), bad duplicates
        raise ConversionError(f"{input_path}: {e.args[0] if e.args else e}") from e
    torch.save({"model": converted, "__author__": f"sd_detr convert_checkpoint ({source})"}, output_path)
    return len(state)
