"""Weight files are data: reading one never runs code.

A pickle can name any importable callable and have the unpickler call it (``os.system``, ``builtins.eval``),
so a crafted ``.pkl`` or ``.pth`` would run its code the moment it is loaded. Every weight file of the
project is read through this module instead:

- ``.pth`` (and ``.pyth``, any other name): ``torch.load(weights_only=True)``, passed explicitly so that the
  environment variable ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot turn it off. Its allowlist is PyTorch's
  (tensors, containers, numbers, strings, optimizer and scheduler state); a caller may add exact globals
  (``tools/convert_checkpoint.py``: the ``argparse.Namespace`` official checkpoints carry under ``args``).
- ``.pkl`` (Detectron2's model zoo and its converted torchvision / Caffe2 backbones): a restricted unpickler
  (:class:`WeightsUnpickler`) that builds only dicts, lists, tuples, sets, numbers, strings, bytes and numpy
  arrays / scalars / dtypes, and nothing else.

A refused global raises :class:`UnsafeCheckpointError` naming the file and the global it asked for.
"""
import _compat_pickle
import codecs
import collections
import pickle
import re

import numpy as np
import torch

__all__ = ["UnsafeCheckpointError", "WeightsUnpickler", "load_pickle_weights", "load_torch_weights",
           "load_weights_file"]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A weight file asked to build something that is not weight data (a function call, a class of its own).

    Attributes: ``path`` (the file), ``refused`` (the global it named, ``module.name``)."""

    def __init__(self, path: str, refused: str, allowed: str):
        self.path, self.refused = str(path), refused
        super().__init__(
            f"refusing to load {path}: it asks for {refused}, which is not weight data ({allowed}). Loading it "
            f"could run code it carries; nothing was run. Weight files must hold only tensors / numpy arrays "
            f"in dicts and lists: re-save the weights alone, e.g. torch.save({{'model': model.state_dict()}}, "
            f"PATH) from a source you trust.")


def _numpy_multiarray():
    try:  # numpy >= 2 (``numpy.core`` there is a deprecated alias)
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric
    return multiarray, numeric


def _allowed_globals():
    """(module, name) -> object: exactly what numpy arrays and Python containers need to be unpickled.

    numpy arrays pickle as ``_reconstruct(ndarray, shape, dtype)`` + state (protocols 0-4), or
    ``_frombuffer(buffer, dtype, shape, order)`` (protocol 5); scalars as ``scalar(dtype, bytes)``. numpy 2
    writes the module as ``numpy._core``, numpy 1 as ``numpy.core``: both spellings resolve to the installed
    numpy's objects. Protocols <= 2 write bytes as ``_codecs.encode(str, 'latin1')`` and sets as ``set(list)``.
    Nothing is imported while unpickling: a name is looked up in this table only."""
    multiarray, numeric = _numpy_multiarray()
    table = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "complex"): complex,
        ("_codecs", "encode"): codecs.encode,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        table[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    return table


_PKL_ALLOWED_TEXT = "a .pkl weight file may hold dicts, lists, numbers, strings and numpy arrays"


class WeightsUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the globals of :func:`_allowed_globals` (Python 2 names such as
    ``__builtin__.set`` are mapped to Python 3's first, as ``pickle`` does) and refuses persistent ids.
    ``path`` is named in the error."""

    _ALLOWED = None

    def __init__(self, file, path: str = "<stream>", **kwargs):
        super().__init__(file, **kwargs)
        self.path = path
        if WeightsUnpickler._ALLOWED is None:
            WeightsUnpickler._ALLOWED = _allowed_globals()

    def find_class(self, module, name):
        key = (module, name)
        if key in _compat_pickle.NAME_MAPPING:  # Python 2 pickles (Detectron1 / Caffe2 model zoo)
            key = _compat_pickle.NAME_MAPPING[key]
        elif module in _compat_pickle.IMPORT_MAPPING:
            key = (_compat_pickle.IMPORT_MAPPING[module], name)
        found = self._ALLOWED.get(key)
        if found is None:
            raise UnsafeCheckpointError(self.path, f"{key[0]}.{key[1]}", _PKL_ALLOWED_TEXT)  # Python 3 name
        return found

    def persistent_load(self, pid):
        # torch.save's tensor storages; a plain pickle of weights has none
        raise UnsafeCheckpointError(self.path, f"a persistent object ({type(pid).__name__} id)",
                                    _PKL_ALLOWED_TEXT + "; a torch.save file belongs in .pth")


def load_pickle_weights(path: str, file=None):
    """Unpickle the ``.pkl`` weight file ``path`` (or the open binary ``file`` read as ``path``) with
    :class:`WeightsUnpickler`; Python 2 strings decode as latin-1 (as Detectron2 reads them)."""
    if file is not None:
        return WeightsUnpickler(file, path=path, encoding="latin1").load()
    with open(path, "rb") as f:
        return WeightsUnpickler(f, path=path, encoding="latin1").load()


_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+)")


def load_torch_weights(path: str, map_location="cpu", extra_globals=()):
    """``torch.load(path, map_location, weights_only=True)``; ``extra_globals``: exact classes / functions the
    file may also name (``torch.serialization.safe_globals``, for this call only).

    Raises :class:`UnsafeCheckpointError` (file and refused global) when the file names anything else, and
    ``pickle.UnpicklingError`` naming the file for any other weights-only refusal."""
    try:
        with torch.serialization.safe_globals(list(extra_globals)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        message = str(e)
        found = _REFUSED_GLOBAL.search(message)
        allowed = "a .pth weight file may hold tensors, numbers, strings and containers (torch.load weights_only)"
        if extra_globals:
            allowed += " and " + ", ".join(f"{g.__module__}.{g.__qualname__}" for g in extra_globals)
        if found:
            raise UnsafeCheckpointError(path, found.group(1), allowed) from None
        # the rest of PyTorch's message advises weights_only=False: leave out that advice, keep the cause
        detail = message.split("WeightsUnpickler error:")[-1].split("Check the documentation")[0].strip()
        raise pickle.UnpicklingError(f"cannot read {path} as weights ({allowed}): {detail}") from None


def load_weights_file(path: str, map_location="cpu"):
    """The content of a weight file, read without running code: ``.pkl`` with :func:`load_pickle_weights`,
    anything else with :func:`load_torch_weights`."""
    if str(path).endswith(".pkl"):
        return load_pickle_weights(path)
    return load_torch_weights(path, map_location=map_location)
