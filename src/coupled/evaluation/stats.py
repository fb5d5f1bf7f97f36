"""Uncertainty for per-item scores: percentile bootstrap intervals over test items (method.md section 5).

Scores are [N] (one per test item) or [S, N] (S sampling seeds of the same N items). Seeds are averaged per
item first, so the bootstrap resamples items, the unit the test set was drawn in, not (seed, item) pairs,
which would treat the repeated draws of one item as independent evidence and make intervals too narrow.

A `Metric` says what a score is: its name, its direction (WER: lower is better) and whether it is a mean of
per-item values (accuracy) or a ratio of sums (corpus WER: total edits over total reference words, per-item
scores [N, 2] or [S, N, 2] of numerator and denominator, resampled as pairs so the statistic stays a ratio).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..errors import CoupledError
from ..scores import METRICS, Metric, get_metric  # noqa: F401 (part of this module's API)
from ..scores import per_item as _per_item
from ..seeds import sequence

__all__ = ["Metric", "METRICS", "get_metric", "bootstrap_ci", "paired_bootstrap", "gap_recovered"]

# Bound on resampled values held at once (int32 indices + float64 values: 48 MB), whatever N and n_boot are.
_CHUNK_VALUES = 1 << 22


def _check_settings(n_boot, level) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 1:
        raise CoupledError(f"n_boot must be a positive integer, got {n_boot!r}; pass e.g. 2000")
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise CoupledError(f"level must be a number in (0, 1), got {level!r}; pass e.g. 0.95")


def _statistics(columns: list[np.ndarray], combine, n_boot: int, seed: int) -> np.ndarray:
    """`combine(*column sums)` over `n_boot` resamples of the items (one index draw shared by every column)."""
    n = columns[0].shape[0]
    rng = np.random.default_rng(sequence("bootstrap", seed))
    rows = max(1, _CHUNK_VALUES // n)
    out = []
    # int32 indices: several times faster to draw and gather than numpy's default int64.
    for i in range(0, n_boot, rows):
        idx = rng.integers(0, n, size=(min(rows, n_boot - i), n), dtype=np.int32)
        out.append(combine(*(c[idx].sum(axis=1) for c in columns)))
    return np.concatenate(out)


def _quantiles(stats: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def bootstrap_ci(values, n_boot: int = 2000, seed: int = 0, level: float = 0.95, metric="accuracy") -> tuple[float, float]:
    """Percentile bootstrap interval `(lo, hi)` of a score.

    `values`: [N] per-item scores or [S, N] (S sampling seeds; averaged per item before resampling items);
    for a ratio metric (WER) [N, 2] or [S, N, 2] numerator/denominator pairs. `n_boot`: number of resamples;
    `seed`: seeds the resampling (same inputs and seed, same interval); `level`: coverage, e.g. 0.95 for
    the 2.5% and 97.5% percentiles; `metric`: a Metric or its name (what the score is).
    """
    _check_settings(n_boot, level)
    m = get_metric(metric)
    v = _per_item(values, "values", m.ratio, m.columns)
    if m.ratio:
        return _quantiles(_statistics(list(v.T), lambda *s: m.statistic(np.stack(s, -1)), n_boot, seed), level)
    n = v.shape[0]
    return _quantiles(_statistics([v], lambda s: s / n, n_boot, seed), level)


def paired_bootstrap(a, b, n_boot: int = 2000, seed: int = 0, level: float = 0.95, metric="accuracy") -> tuple[float, float, float]:
    """Difference of scores `score(a) - score(b)` with a paired percentile bootstrap interval.

    `a`, `b`: per-item scores on the same N items in the same order, each [N] or [S, N] ([N, 2] / [S, N, 2]
    for a ratio metric; seeds averaged per item first, separately, so they may have different S). Each
    resample draws one set of item indices for both, which cancels the item-difficulty variance the two
    share. `n_boot`, `seed`, `level`, `metric`: as in `bootstrap_ci`. Returns `(delta, lo, hi)`; identical
    inputs give exactly (0, 0, 0). The sign is the raw difference: for a lower-is-better metric a negative
    delta means `a` is better.
    """
    _check_settings(n_boot, level)
    m = get_metric(metric)
    a, b = _per_item(a, "a", m.ratio, m.columns), _per_item(b, "b", m.ratio, m.columns)
    if a.shape != b.shape:
        raise CoupledError(f"paired scores must cover the same items, got {a.shape[0]} and {b.shape[0]} items; score both methods on the same test items")
    if m.ratio:
        w = a.shape[1]
        stats = _statistics([*a.T, *b.T], lambda *s: m.statistic(np.stack(s[:w], -1)) - m.statistic(np.stack(s[w:], -1)),
                            n_boot, seed)
        if np.array_equal(a, b):
            return 0.0, 0.0, 0.0
        return (m.value(a) - m.value(b), *_quantiles(stats, level))
    # mean(a[idx]) - mean(b[idx]) == mean((a - b)[idx]): resampling the difference is the paired bootstrap.
    d = a - b
    n = d.shape[0]
    return (float(d.mean()), *_quantiles(_statistics([d], lambda s: s / n, n_boot, seed), level))


def gap_recovered(acc: float, acc_noisy: float, acc_clean: float) -> float:
    """Share of the corruption's accuracy loss a method wins back: `(acc - acc_noisy) / (acc_clean - acc_noisy)`.

    `acc`: the method's accuracy; `acc_noisy`: the classifier's on the degraded inputs; `acc_clean`: its
    accuracy on clean inputs. NaN when there is no gap (`acc_clean == acc_noisy`), where it is undefined.
    """
    acc, acc_noisy, acc_clean = (float(x) for x in (acc, acc_noisy, acc_clean))
    gap = acc_clean - acc_noisy
    return (acc - acc_noisy) / gap if gap != 0 else math.nan
