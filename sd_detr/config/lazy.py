"""Helpers for LazyConfig files. :func:`get_config` loads a shipped config by its model-zoo name
(``get_config("common/train.py")``): :func:`sd_detr.model_zoo.get_config`, which reads the configs from inside
the installed package, never through the repository's folders."""
from ..model_zoo.model_zoo import get_config  # noqa: F401  (re-exported: sd_detr.config.get_config)


def apply_tiny_synthetic_size(model):
    """Scale a detector config down in place to the size of every ``*_tiny_synthetic.py`` config
    (:data:`sd_detr.config.sizes.SIZES` ``["tiny_synthetic"]``: a narrow ResNet-18 up to res4, a 64-d
    transformer with 4 heads, 2 + 3 layers, 30 queries, the 5 synthetic classes, top 50 detections, boxes
    clipped), so that the detectors compare at one size. Returns ``model``."""
    from .sizes import apply_size

    return apply_size(model, "tiny_synthetic")


def _target_accepts(node, name: str) -> bool:
    """Whether the LazyCall node's target takes a keyword ``name`` (a default not spelled in the config)."""
    import inspect

    from detectron2.utils.registry import locate

    target = node.get("_target_") if hasattr(node, "get") else None
    if target is None:
        return False
    if isinstance(target, str):
        target = locate(target)
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    if name in params:
        return True
    # a configurable/**kwargs __init__ forwarding to a base class: look at the base classes too
    if inspect.isclass(target):
        for base in target.__mro__[1:]:
            try:
                if name in inspect.signature(base.__init__).parameters:
                    return True
            except (TypeError, ValueError):
                continue
    return False


_MISSING = object()


def _type_name(value) -> str:
    from omegaconf import OmegaConf

    if OmegaConf.is_list(value) or isinstance(value, (list, tuple)):
        return "list"
    if OmegaConf.is_dict(value) or isinstance(value, dict):
        return "dict"
    return type(value).__name__


def _check_override_type(cfg, key: str, item: str, value) -> None:
    """Raise a TypeError when ``value`` (as Hydra parsed it) cannot replace the config's current value at
    ``key``: an int key takes an int literal only, a float key an int or a float, a bool key true/false,
    a str key a string (or a list of strings: Detectron2's dataset ``names`` take either), a list key a
    list, a dict (LazyCall) key a dict. Permissive where nothing is known: no current value (a keyword
    default), None, an interpolation ``${...}``, or other objects; ``null`` and ``${...}`` values pass too."""
    from omegaconf import OmegaConf

    if value is None or (isinstance(value, str) and value.startswith("${")):
        return
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=_MISSING) if parent_key else cfg
    if parent is _MISSING or not OmegaConf.is_config(parent):
        return
    try:
        if OmegaConf.is_interpolation(parent, int(leaf) if OmegaConf.is_list(parent) else leaf):
            return
    except (ValueError, KeyError, IndexError, TypeError):
        return
    current = OmegaConf.select(cfg, key, default=_MISSING, throw_on_resolution_failure=False)
    if current is _MISSING or current is None:
        return
    is_list = isinstance(value, (list, tuple))
    if isinstance(current, bool):
        ok, expected = isinstance(value, bool), "bool (true or false)"
    elif isinstance(current, int):
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "int"
    elif isinstance(current, float):
        ok, expected = isinstance(value, (int, float)) and not isinstance(value, bool), "float (or int)"
    elif isinstance(current, str):
        ok = isinstance(value, str) or (is_list and all(isinstance(v, str) for v in value))
        expected = "str (quote a number: key='2024')"
    elif OmegaConf.is_list(current) or isinstance(current, (list, tuple)):
        ok, expected = is_list, "list (write [a,b])"
    elif OmegaConf.is_dict(current) or isinstance(current, dict):
        ok, expected = isinstance(value, dict), "dict (write {key:value})"
    else:
        return
    if not ok:
        raise TypeError(f"config override {item!r}: {key} holds {_type_name(current)} {current!r}, "
                        f"got {_type_name(value)} {value!r}; expected {expected}")


def check_override_keys(cfg, overrides) -> None:
    """Check ``key=value`` overrides against the config before anything is built.

    Raises:
        ValueError: an override that is not ``key=value`` (or that Hydra cannot parse, or a
            comma-separated sweep, which LazyConfig cannot apply).
        KeyError: naming any key the config does not have. OmegaConf would silently create such keys (a
            typo like ``train.max_iters=10`` would be ignored). A key absent from the config is still
            accepted when it is a keyword argument of the LazyCall target it sits under (its default was
            just not spelled out). Hydra's ``+key=value`` adds a key on purpose.
        TypeError: naming key, value and expected type when the value's type does not fit the config's
            current value there (``train.max_iter=abc`` or ``=5.5``, ``optimizer.lr=fast``); see
            :func:`_check_override_type`. Without it the error came after the model and data were built,
            from deep inside, without the key.
    """
    import difflib

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    flat = []
    parser = None

    def walk(node, prefix):
        if OmegaConf.is_dict(node) or isinstance(node, dict):
            for k in node.keys():
                flat.append(prefix + str(k))
                try:
                    child = node[k]
                except Exception:  # unresolved interpolation etc.
                    continue
                walk(child, prefix + str(k) + ".")

    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key = item.split("=", 1)[0].strip()
        if key.startswith("+"):
            continue
        key = key.lstrip("~")
        # the parser LazyConfig.apply_overrides uses, so the value is typed exactly as it will be applied
        parser = parser or OverridesParser.create()
        try:
            parsed = parser.parse_overrides([item])[0]
        except Exception as e:
            raise ValueError(f"cannot parse override {item!r}: {e}") from None
        if parsed.is_sweep_override():
            raise ValueError(f"override {item!r} is a comma-separated sweep, which LazyConfig cannot apply; "
                             f"write a list in brackets: {key}=[{item.split('=', 1)[1]}]")
        if OmegaConf.select(cfg, key, default=_MISSING, throw_on_resolution_failure=False) is not _MISSING:
            if not parsed.is_delete():
                _check_override_type(cfg, key, item, parsed.value())
            continue
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key, default=_MISSING) if parent_key else cfg
        if parent is not _MISSING and _target_accepts(parent, leaf):
            continue
        if not flat:
            walk(cfg, "")
        close = difflib.get_close_matches(key, flat, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise KeyError(f"unknown config key {key!r} in override {item!r}{hint}")
