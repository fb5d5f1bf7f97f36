"""What a task score is: a `Metric` names it, says its direction (WER: lower is better) and whether it is a
mean of per-item values (accuracy) or a function of per-item counts summed over the items (corpus WER: total
edits over total reference words, so per-item scores are (numerator, denominator) pairs; macro-F1: per item and
class its true-positive, false-positive and false-negative indicators). A leaf module (numpy only): domains say
which metric scores their answers, evaluation bootstraps it (`coupled.evaluation.stats`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import CoupledError

__all__ = ["Metric", "METRICS", "get_metric", "per_item", "macro_f1_counts", "macro_f1_of_sums"]


def _ratio_of_sums(sums: np.ndarray) -> np.ndarray:
    return sums[..., 0] / sums[..., 1]


def macro_f1_of_sums(sums: np.ndarray) -> np.ndarray:
    """Macro-F1 of summed per-class counts `sums` [..., 3K] (tp, fp, fn of class 0, then class 1, ...): the mean over
    classes of 2 tp / (2 tp + fp + fn); a class that is neither present nor predicted is left out of the mean."""
    c = np.asarray(sums, dtype=np.float64)
    c = c.reshape(*c.shape[:-1], c.shape[-1] // 3, 3)
    den = 2 * c[..., 0] + c[..., 1] + c[..., 2]
    f1 = np.where(den > 0, 2 * c[..., 0] / np.where(den > 0, den, 1.0), np.nan)
    seen = (den > 0).sum(-1)
    return np.where(seen > 0, np.nansum(f1, -1) / np.maximum(seen, 1), 0.0)


def macro_f1_counts(refs, hyps, num_classes: int) -> np.ndarray:
    """Per-item counts [N, 3K] for macro-F1 of class answers `hyps` against `refs` (ints [N]): for each class k, item
    i adds (tp, fp, fn) = (r == h == k, h == k != r, r == k != h)."""
    r, h = np.asarray(refs).reshape(-1), np.asarray(hyps).reshape(-1)
    k = np.arange(int(num_classes))[None, :]
    tp, fp, fn = (r[:, None] == k) & (h[:, None] == k), (h[:, None] == k) & (r[:, None] != k), (r[:, None] == k) & (h[:, None] != k)
    return np.stack([tp, fp, fn], -1).reshape(len(r), -1).astype(np.float64)


@dataclass(frozen=True)
class Metric:
    """A task score: `name` (as results.json writes it), `higher_is_better`, and `ratio`: per-item scores are
    vectors of `columns` counts (None: any number) summed over the items, the score `combine(sums)` (default
    sum(numerators) / sum(denominators) of (numerator, denominator) pairs, corpus WER); else a mean of [N] values."""

    name: str
    higher_is_better: bool = True
    ratio: bool = False
    columns: int | None = 2
    combine: Callable | None = None

    def statistic(self, sums: np.ndarray) -> np.ndarray:
        """The score of column sums [..., M] of a ratio metric's per-item counts."""
        return (self.combine or _ratio_of_sums)(sums)

    def value(self, scores) -> float:
        """The score of per-item `scores` ([N], or [N, M] counts for a ratio metric; [S, ...] seeds averaged per item)."""
        v = per_item(scores, self.name, self.ratio, self.columns)
        return float(self.statistic(v.sum(axis=0))) if self.ratio else float(v.mean())

    def better(self, a: float, b: float) -> bool:
        """True when score `a` beats score `b`."""
        return a > b if self.higher_is_better else a < b

    def key(self, value: float) -> float:
        """A sort key under which larger is better."""
        return value if self.higher_is_better else -value


METRICS = {"accuracy": Metric("accuracy"), "wer": Metric("wer", higher_is_better=False, ratio=True),
           # PhysioNet/CinC 2017's score: per item [3K] (tp, fp, fn) indicators per class (`macro_f1_counts`)
           "macro_f1": Metric("macro_f1", ratio=True, columns=None, combine=macro_f1_of_sums)}


def get_metric(name) -> Metric:
    """The registered metric `name` (a Metric passes through); one-line error naming the valid ones."""
    if isinstance(name, Metric):
        return name
    if name not in METRICS:
        raise CoupledError(f"unknown metric {name!r}; valid: {', '.join(METRICS)}")
    return METRICS[name]


def per_item(values, name: str, ratio: bool = False, columns: int | None = 2) -> np.ndarray:
    """[N] or [S, N] scores -> [N] float64 per-item means over seeds ([N, M] / [S, N, M] -> [N, M] for a ratio
    metric of `columns` M counts per item; None: any M)."""
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise CoupledError(f"{name} must be numeric scores of shape [N] or [S, N], got {type(values).__name__}; pass a numpy array") from None
    base = 1 + int(ratio)
    if v.ndim not in (base, base + 1) or v.size == 0 or (ratio and columns is not None and v.shape[-1] != columns):
        want = ("[N, 2] or [S, N, 2] (numerator, denominator per item)" if columns == 2 else f"[N, M] or [S, N, M] (M = {columns or 'any'} counts per item)"
                ) if ratio else "[N] or [S, N] (S seeds, N items)"
        raise CoupledError(f"{name} must be non-empty of shape {want}, got shape {v.shape}; stack per-seed scores with np.stack")
    if not np.isfinite(v).all():
        raise CoupledError(f"{name} contains NaN or infinite scores; drop or fix those items before bootstrapping")
    if ratio and columns == 2 and v[..., 1].sum() <= 0:
        raise CoupledError(f"{name}: the denominators sum to {v[..., 1].sum():g}; a ratio needs a positive total (e.g. reference words)")
    return v.mean(axis=0) if v.ndim == base + 1 else v
