"""A DetectionCheckpointer that refuses checkpoints whose keys do not fit the model."""
from detectron2.checkpoint import DetectionCheckpointer


class CheckpointMismatchError(RuntimeError):
    pass


def _format_list(title, items, limit=40):
    items = list(items)
    if not items:
        return ""
    shown = "\n    ".join(str(x) for x in items[:limit])
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"\n  {title} ({len(items)}):\n    {shown}{more}"


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
