"""Converting the official released checkpoints to this project's parameter names.

Each converter is an ordered list of (regex, replacement) rules applied to every official key; a key
no rule matches is an error, never silently dropped. Class heads are reduced from the official
91/92-way outputs (index = COCO category id) to Detectron2's 80 contiguous classes.
"""
import re
from typing import Callable, Dict, List, Sequence, Tuple

import torch

Rule = Tuple[str, str]

# torchvision ResNet (official backbones) -> Detectron2 ResNet
RESNET_RULES: List[Rule] = [
    (r"^backbone\.0\.body\.conv1\.weight$", "backbone.stem.conv1.weight"),
    (r"^backbone\.0\.body\.bn1\.(.+)$", r"backbone.stem.conv1.norm.\1"),
    (r"^backbone\.0\.body\.layer(\d)\.(\d+)\.conv(\d)\.weight$", lambda m: f"backbone.res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.weight"),
    (r"^backbone\.0\.body\.layer(\d)\.(\d+)\.bn(\d)\.(.+)$", lambda m: f"backbone.res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.{m[4]}"),
    (r"^backbone\.0\.body\.layer(\d)\.(\d+)\.downsample\.0\.weight$", lambda m: f"backbone.res{int(m[1]) + 1}.{m[2]}.shortcut.weight"),
    (r"^backbone\.0\.body\.layer(\d)\.(\d+)\.downsample\.1\.(.+)$", lambda m: f"backbone.res{int(m[1]) + 1}.{m[2]}.shortcut.norm.{m[3]}"),
]

# DETR post-norm encoder
ENCODER_RULES: List[Rule] = [
    (r"^transformer\.encoder\.layers\.(\d+)\.self_attn\.(.+)$", r"encoder.layers.\1.self_attn.\2"),
    (r"^transformer\.encoder\.layers\.(\d+)\.linear([12])\.(.+)$", r"encoder.layers.\1.ffn.linear\2.\3"),
    (r"^transformer\.encoder\.layers\.(\d+)\.norm1\.(.+)$", r"encoder.layers.\1.norm1.\2"),
    (r"^transformer\.encoder\.layers\.(\d+)\.norm2\.(.+)$", r"encoder.layers.\1.ffn.norm.\2"),
]

# Conditional-DETR-style decoder layer (also DAB-DETR's)
CONDITIONAL_DECODER_LAYER_RULES: List[Rule] = [
    (r"^transformer\.decoder\.layers\.(\d+)\.sa_(qcontent|qpos|kcontent|kpos|v)_proj\.(.+)$", r"decoder.layers.\1.self_attn.\2_proj.\3"),
    (r"^transformer\.decoder\.layers\.(\d+)\.self_attn\.out_proj\.(.+)$", r"decoder.layers.\1.self_attn.out_proj.\2"),
    (r"^transformer\.decoder\.layers\.(\d+)\.ca_(qcontent|qpos|kcontent|kpos|v|qpos_sine)_proj\.(.+)$", r"decoder.layers.\1.cross_attn.\2_proj.\3"),
    (r"^transformer\.decoder\.layers\.(\d+)\.cross_attn\.out_proj\.(.+)$", r"decoder.layers.\1.cross_attn.out_proj.\2"),
    (r"^transformer\.decoder\.layers\.(\d+)\.linear([12])\.(.+)$", r"decoder.layers.\1.ffn.linear\2.\3"),
    (r"^transformer\.decoder\.layers\.(\d+)\.norm([12])\.(.+)$", r"decoder.layers.\1.norm\2.\3"),
    (r"^transformer\.decoder\.layers\.(\d+)\.norm3\.(.+)$", r"decoder.layers.\1.ffn.norm.\2"),
]

HEAD_RULES: List[Rule] = [
    (r"^input_proj\.(.+)$", r"input_proj.\1"),
    (r"^class_embed\.(.+)$", r"class_embed.\1"),
    (r"^bbox_embed\.(.+)$", r"bbox_embed.\1"),
]

# official source name -> (rules, names of class-head tensors whose first dim is the class).
# Each source registers itself from its own module (conditional_detr.py, ...).
CONVERTERS: Dict[str, Tuple[List[Rule], Sequence[str]]] = {}
# official source name -> rules (regex, official key of the original) of keys that hold a second copy of
# another official tensor (a module registered twice, e.g. DAB-DETR's shared box head): checked equal
# to the original, then left out.
DUPLICATES: Dict[str, List[Rule]] = {}


def register_converter(source: str, rules: List[Rule], class_keys: Sequence[str] = ("class_embed.weight", "class_embed.bias"),
                       duplicates: Sequence[Rule] = ()):
    """Make ``source`` available to :func:`convert_state_dict` and ``tools/convert_checkpoint.py``.

    ``duplicates``: (regex, replacement) rules naming, for an official key that is a copy of another
    official key, the key of the original; such keys are dropped after checking they equal the original.
    """
    if source in CONVERTERS:
        raise KeyError(f"converter {source!r} registered twice")
    CONVERTERS[source] = (list(rules), tuple(class_keys))
    if duplicates:
        DUPLICATES[source] = list(duplicates)


def coco_91_to_80_indices() -> List[int]:
    """Rows of an official COCO head (index = COCO category id) for Detectron2's 80 contiguous classes."""
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    return [c["id"] for c in COCO_CATEGORIES if c["isthing"]]


def _apply(rules: List[Rule], key: str):
    for pattern, repl in rules:
        m = re.match(pattern, key)
        if m:
            return repl(m) if callable(repl) else m.expand(repl)
    return None


def rank_sources(official: Dict[str, torch.Tensor]) -> List[Tuple[str, int]]:
    """(source, number of ``official``'s keys its rules or duplicate rules cover) for every registered
    source, most first (ties by name). The families share backbone, encoder and much of the decoder, so a
    checkpoint is only told apart by the whole count: the right source covers every key."""
    counts = []
    for source, (rules, _) in CONVERTERS.items():
        duplicates = DUPLICATES.get(source, [])
        covered = sum(1 for k in official if _apply(rules, k) is not None or _apply(duplicates, k) is not None)
        counts.append((source, covered))
    return sorted(counts, key=lambda sc: (-sc[1], sc[0]))


def _looks_already_converted(keys: Sequence[str]) -> bool:
    """This project's (or Detectron2's) names: a Detectron2 ResNet and no official ``transformer.`` keys."""
    return any(k.startswith(("backbone.stem.", "backbone.res")) for k in keys) \
        and not any(k.startswith("transformer.") for k in keys)


def source_hint(source: str, official: Dict[str, torch.Tensor]) -> str:
    """A sentence for the error about ``official``'s unconvertible keys under ``--source source``: which
    source it looks like, or that it is already converted, or that no source fits it."""
    if _looks_already_converted(list(official)):
        return ("The keys are already in this project's names (a Detectron2 ResNet, no 'transformer.' keys): "
                "load the checkpoint directly (train.init_checkpoint=... / --checkpoint), without converting.")
    ranking = rank_sources(official)
    best, covered = ranking[0]
    own = dict(ranking)[source]
    if best != source and covered > own:
        full = "all" if covered == len(official) else f"{covered} of"
        return (f"The checkpoint looks like --source {best}: its rules cover {full} {len(official)} keys, "
                f"those of {source} {own}.")
    return (f"No registered source covers all {len(official)} keys (" + ", ".join(f"{s}: {c}" for s, c in ranking)
            + "): is it an official checkpoint of one of them?")


def convert_state_dict(source: str, official: Dict[str, torch.Tensor], num_classes: int = 80,
                       ignore: Sequence[str] = ()) -> Dict[str, torch.Tensor]:
    """Map an official state dict to this project's names.

    Args:
        source: a key of :data:`CONVERTERS`.
        official: the official ``model`` state dict.
        num_classes: 80 maps the COCO-id-indexed class head to Detectron2's contiguous classes;
            otherwise the head is kept as is (must equal its size).
        ignore: regexes of official keys to leave out on purpose (e.g. duplicated shared heads).
    Raises:
        KeyError naming every official key no rule covers, with the ``--source`` the keys look like
        (:func:`source_hint`); ValueError naming a registered duplicate that differs from (or lacks) its
        original.
    """
    if source not in CONVERTERS:
        raise KeyError(f"unknown source {source!r}; choose one of {sorted(CONVERTERS)}")
    rules, class_keys = CONVERTERS[source]
    duplicates = DUPLICATES.get(source, [])
    out, unknown = {}, []
    for key, value in official.items():
        if any(re.match(p, key) for p in ignore):
            continue
        original = _apply(duplicates, key)
        if original is not None:
            if original not in official or not torch.equal(official[original], value):
                raise ValueError(f"{key!r} should be a copy of {original!r}, but "
                                 + ("that key is missing" if original not in official else "the tensors differ"))
            continue
        new = _apply(rules, key)
        if new is None:
            unknown.append(key)
            continue
        if new in out:
            raise KeyError(f"two official keys map to {new!r} (second: {key!r})")
        out[new] = value
    if unknown:
        shown = ", ".join(unknown[:40]) + (f", ... and {len(unknown) - 40} more" if len(unknown) > 40 else "")
        raise KeyError(f"{len(unknown)} keys have no conversion rule of {source}: {shown}. "
                       + source_hint(source, official))
    for k in class_keys:
        head = out[k]
        if num_classes == 80 and head.shape[0] != 80:
            out[k] = head[coco_91_to_80_indices()].clone()
        elif head.shape[0] != num_classes:
            raise ValueError(f"{k} has {head.shape[0]} classes, cannot make {num_classes}")
    return out
