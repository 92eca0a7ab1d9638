"""The benchmark's tasks, default input size and batch, and model-size presets."""
from typing import Dict

TASKS = ("flops", "inference", "train", "interleaved", "interleaved_train")
INTERLEAVED = ("interleaved", "interleaved_train")
DEFAULT_SIZE, DEFAULT_BATCH = [800, 1216], 1

# name -> input size, batch, and the config overrides of every config (each key must exist in it)
PRESETS: Dict[str, dict] = {
    "small": {
        "size": [320, 320],
        "batch": 4,
        "overrides": [
            "model.backbone.depth=18",
            "model.backbone.res2_out_channels=64",  # basic blocks: res2 64 ... res5 512 channels
            "model.hidden_dim=128",
            "model.encoder.num_layers=3",
            "model.decoder.num_layers=3",
            "model.query_init.num_queries=100",
        ],
    },
}


def preset_overrides(cfg, preset):
    """The overrides of ``preset`` (a name of :data:`PRESETS` or None) for the loaded config ``cfg``:
    the preset's list, plus ``model.criterion.assigner.repeat_stages`` = every decoder layer but the last
    where the config has such an assigner (SD-DETR's [0..4] would wrap around 3 layers)."""
    if preset is None:
        return []
    out = list(PRESETS[preset]["overrides"])
    layers = next(int(o.split("=", 1)[1]) for o in out if o.startswith("model.decoder.num_layers="))
    assigner = cfg.model.get("criterion", {}).get("assigner", None)
    if assigner is not None and assigner.get("repeat_stages", None) is not None:
        out.append(f"model.criterion.assigner.repeat_stages=[{','.join(str(i) for i in range(layers - 1))}]")
    return out


def apply_preset_sizes(args):
    """Fill ``args.size`` / ``args.batch`` left unset (None) from the preset ``args.preset`` (a name or
    None), else the defaults; returns ``args``."""
    preset = PRESETS[args.preset] if args.preset else {}
    if args.size is None:
        args.size = list(preset.get("size", DEFAULT_SIZE))
    if args.batch is None:
        args.batch = preset.get("batch", DEFAULT_BATCH)
    return args
