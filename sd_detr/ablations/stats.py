"""Statistics of a row's seeds: mean, sample standard deviation and count, their printed form, and the
comparison of two rows' mean AP."""
import math
from typing import Sequence

from .tables import METRICS


def summarize(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation (n - 1 in the denominator; None for one value) and count."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values to summarise")
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None  # NaN stays NaN
    return {"mean": mean, "std": std, "n": n}


def fmt(stat: dict) -> str:
    """``mean ± std (n)`` with one decimal; ``mean (1)`` for one seed; ``nan`` where COCOeval gave none."""
    if math.isnan(stat["mean"]):
        return f"nan ({stat['n']})"
    if stat["std"] is None:
        return f"{stat['mean']:.1f} ({stat['n']})"
    return f"{stat['mean']:.1f} ± {stat['std']:.1f} ({stat['n']})"


def aggregate(runs: Sequence[dict]) -> dict:
    """One row from its seeds' results (:func:`sd_detr.ablations.runner.run_row`): name, paper, the seeds'
    commands, dates and AP, and ``stats[(eval_label or "", metric)]`` = :func:`summarize` of that metric over
    the seeds."""
    if not runs:
        raise ValueError("a row needs at least one run")
    stats = {("", m): summarize([r[m] for r in runs]) for m in METRICS}
    for label in runs[0]["evals"]:
        stats.update({(label, m): summarize([r["evals"][label][m] for r in runs]) for m in METRICS})
    return {"name": runs[0]["name"], "paper": runs[0]["paper"], "runs": list(runs), "stats": stats,
            "date": max(r["date"] for r in runs), "iterations": sorted({r["iterations"] for r in runs})}


def compare(first: dict, other: dict) -> str:
    """How a row's mean AP stands against its reference row (``first``): the difference, and ">1 sd" when it
    holds beyond one standard deviation (the mean ± std intervals do not overlap: |diff| > std_a + std_b),
    "within 1 sd" otherwise; only the difference for single seeds."""
    a, b = first["stats"][("", "AP")], other["stats"][("", "AP")]
    diff = b["mean"] - a["mean"]
    shown = f"{round(diff, 1) + 0.0:+.1f}"  # + 0.0: no "-0.0" for a difference that rounds to zero
    if a["std"] is None or b["std"] is None:
        return shown
    return f"{shown} ({'>1 sd' if abs(diff) > a['std'] + b['std'] else 'within 1 sd'})"
