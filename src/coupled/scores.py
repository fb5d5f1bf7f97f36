"""What a task score is: a `Metric` names it, says its direction (WER: lower is better) and whether it is a
mean of per-item values (accuracy) or a ratio of sums (corpus WER: total edits over total reference words, so
per-item scores are (numerator, denominator) pairs). A leaf module (numpy only): domains say which metric
scores their answers, evaluation bootstraps it (`coupled.evaluation.stats`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import CoupledError

__all__ = ["Metric", "METRICS", "get_metric", "per_item"]


@dataclass(frozen=True)
class Metric:
    """A task score: `name` (as results.json writes it), `higher_is_better`, and `ratio` (per-item scores are
    (numerator, denominator) pairs and the score is sum(numerators) / sum(denominators))."""

    name: str
    higher_is_better: bool = True
    ratio: bool = False

    def value(self, scores) -> float:
        """The score of per-item `scores` ([N], or [N, 2] for a ratio; [S, ...] seeds averaged per item)."""
        v = per_item(scores, self.name, self.ratio)
        return float(v[:, 0].sum() / v[:, 1].sum()) if self.ratio else float(v.mean())

    def better(self, a: float, b: float) -> bool:
        """True when score `a` beats score `b`."""
        return a > b if self.higher_is_better else a < b

    def key(self, value: float) -> float:
        """A sort key under which larger is better."""
        return value if self.higher_is_better else -value


METRICS = {"accuracy": Metric("accuracy"), "wer": Metric("wer", higher_is_better=False, ratio=True)}


def get_metric(name) -> Metric:
    """The registered metric `name` (a Metric passes through); one-line error naming the valid ones."""
    if isinstance(name, Metric):
        return name
    if name not in METRICS:
        raise CoupledError(f"unknown metric {name!r}; valid: {', '.join(METRICS)}")
    return METRICS[name]


def per_item(values, name: str, ratio: bool = False) -> np.ndarray:
    """[N] or [S, N] scores -> [N] float64 per-item means over seeds ([N, 2] / [S, N, 2] -> [N, 2] for a ratio)."""
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise CoupledError(f"{name} must be numeric scores of shape [N] or [S, N], got {type(values).__name__}; pass a numpy array") from None
    base = 1 + int(ratio)
    if v.ndim not in (base, base + 1) or v.size == 0 or (ratio and v.shape[-1] != 2):
        want = "[N, 2] or [S, N, 2] (numerator, denominator per item)" if ratio else "[N] or [S, N] (S seeds, N items)"
        raise CoupledError(f"{name} must be non-empty of shape {want}, got shape {v.shape}; stack per-seed scores with np.stack")
    if not np.isfinite(v).all():
        raise CoupledError(f"{name} contains NaN or infinite scores; drop or fix those items before bootstrapping")
    if ratio and v[..., 1].sum() <= 0:
        raise CoupledError(f"{name}: the denominators sum to {v[..., 1].sum():g}; a ratio needs a positive total (e.g. reference words)")
    return v.mean(axis=0) if v.ndim == base + 1 else v
