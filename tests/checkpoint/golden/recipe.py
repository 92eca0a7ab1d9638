"""The deterministic weight recipe shared by ``make_golden.py`` (which loads it into the official models)
and ``tests/checkpoint/test_golden_official.py`` (which rebuilds the same official state dict from a
fixture without the official code).

A fixture stores, instead of ~100 MB of float32 weights, for every official state-dict key in sorted
order its shape and a value range ``[low, high)``; :func:`generate_state_dict` draws the tensors from
one ``numpy.random.default_rng(seed)`` in that order (``low + (high - low) * rng.random(shape)``, float64
rounded to float32). Keys that are a second name of the same official tensor (DAB-DETR registers its
box head twice) are listed as aliases and receive the very same tensor. A 16-hex-digit SHA-256 digest of
each tensor's bytes is stored next to it, so a change of the recipe or of numpy's generator is reported
by key instead of showing up as an unexplained output difference.
"""
import hashlib
from collections import OrderedDict
from typing import Dict, List, Sequence

import numpy as np
import torch

RECIPE_VERSION = 1


def tensor_digest(t: torch.Tensor) -> str:
    """First 16 hex digits of the SHA-256 of a tensor's float32 bytes (C order)."""
    return hashlib.sha256(t.detach().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()[:16]


def generate_state_dict(spec: Sequence[Sequence], seed: int, aliases: Dict[str, str] = None) -> "OrderedDict[str, torch.Tensor]":
    """Draw a state dict from the recipe.

    Args:
        spec: ``[key, shape (list of int), low, high]`` entries in draw order (sorted keys).
        seed: seed of the single ``numpy.random.default_rng`` that draws every entry in order.
        aliases: ``{alias key: original key}``; the alias gets the original's tensor object.
    Returns:
        ``{key: float32 tensor}`` with the aliases added after the drawn keys.
    """
    rng = np.random.default_rng(seed)
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for key, shape, low, high in spec:
        values = low + (high - low) * np.asarray(rng.random(size=tuple(shape)))
        out[key] = torch.from_numpy(values.astype(np.float32))
    for alias, original in (aliases or {}).items():
        if original not in out:
            raise KeyError(f"alias {alias!r} names {original!r}, which the recipe does not draw")
        out[alias] = out[original]
    return out


def rebuild_official_state_dict(fixture: dict, name: str = "fixture") -> "OrderedDict[str, torch.Tensor]":
    """The exact official state dict a golden fixture's outputs came from.

    Raises:
        ValueError naming the fixture and the first key whose tensor does not match its stored digest
        (the recipe or numpy's generator changed: regenerate the fixture with make_golden.py).
    """
    if fixture.get("recipe_version") != RECIPE_VERSION:
        raise ValueError(f"{name}: recipe_version {fixture.get('recipe_version')!r}, this recipe is {RECIPE_VERSION}")
    sd = generate_state_dict(fixture["state_spec"], fixture["seed"], fixture["aliases"])
    digests: Dict[str, str] = fixture["digests"]
    missing = sorted(set(digests) ^ set(sd))
    if missing:
        raise ValueError(f"{name}: keys drawn and keys with a digest differ: {missing[:5]}")
    for key, t in sd.items():
        if tensor_digest(t) != digests[key]:
            raise ValueError(f"{name}: the recipe no longer reproduces {key!r} (digest {tensor_digest(t)} != "
                             f"{digests[key]}); regenerate with tests/checkpoint/golden/make_golden.py")
    return sd


def value_range(key: str, shape: List[int]):
    """The recipe's ``[low, high)`` for one official tensor, chosen so that activations stay O(1)
    through a 50-layer ResNet and the transformer (no saturated sigmoid, no vanishing Gaussian map)
    while every tensor is far from its official initialisation (zero box-head layer, unit SMCA scales):

    - BatchNorm statistics: running_var in [0.5, 1.5) (positive), running_mean in [-0.1, 0.1);
    - PReLU slopes (DAB-DETR ``activation.weight``, one scalar) in [0, 0.5);
    - learned query / anchor / pattern embeddings: unit variance, [-sqrt(3), sqrt(3));
    - other tensors of 2+ dims (linear, convolution, packed attention projections): variance 1/fan_in,
      [-sqrt(3 / fan_in), sqrt(3 / fan_in)), fan_in = product of all dims but the first;
    - other 1-D ``weight`` (LayerNorm, FrozenBN scale) in [0.8, 1.2); biases in [-0.1, 0.1).
    """
    if key.endswith("running_var"):
        return 0.5, 1.5
    if key.endswith("running_mean"):
        return -0.1, 0.1
    if key.endswith("activation.weight"):
        return 0.0, 0.5
    if key.split(".")[-2] in ("query_embed", "refpoint_embed", "patterns"):
        a = 3.0 ** 0.5
        return -a, a
    if len(shape) >= 2:
        a = (3.0 / int(np.prod(shape[1:]))) ** 0.5
        return -a, a
    if key.endswith("weight"):
        return 0.8, 1.2
    return -0.1, 0.1
