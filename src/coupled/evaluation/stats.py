"""Uncertainty for per-item scores: percentile bootstrap intervals over test items (method.md section 5).

Scores are [N] (one per test item) or [S, N] (S sampling seeds of the same N items). Seeds are averaged per
item first, so the bootstrap resamples items, the unit the test set was drawn in, not (seed, item) pairs,
which would treat the repeated draws of one item as independent evidence and make intervals too narrow.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..errors import CoupledError
from ..seeds import sequence

__all__ = ["bootstrap_ci", "paired_bootstrap", "gap_recovered"]

# Bound on resampled values held at once (int32 indices + float64 values: 48 MB), whatever N and n_boot are.
_CHUNK_VALUES = 1 << 22


def _per_item(values, name: str) -> np.ndarray:
    """[N] or [S, N] scores -> [N] float64 per-item means over seeds."""
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise CoupledError(f"{name} must be numeric scores of shape [N] or [S, N], got {type(values).__name__}; pass a numpy array") from None
    if v.ndim not in (1, 2) or v.size == 0:
        raise CoupledError(f"{name} must be non-empty of shape [N] or [S, N] (S seeds, N items), got shape {v.shape}; stack per-seed scores with np.stack")
    if not np.isfinite(v).all():
        raise CoupledError(f"{name} contains NaN or infinite scores; drop or fix those items before bootstrapping")
    return v.mean(axis=0) if v.ndim == 2 else v


def _check_settings(n_boot, level) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 1:
        raise CoupledError(f"n_boot must be a positive integer, got {n_boot!r}; pass e.g. 2000")
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise CoupledError(f"level must be a number in (0, 1), got {level!r}; pass e.g. 0.95")


def _interval(v: np.ndarray, n_boot: int, seed: int, level: float) -> tuple[float, float]:
    """Percentile interval of the mean of `v` [N] over `n_boot` resamples of its items."""
    n = v.shape[0]
    rng = np.random.default_rng(sequence("bootstrap", seed))
    rows = max(1, _CHUNK_VALUES // n)
    # int32 indices: several times faster to draw and gather than numpy's default int64.
    means = np.concatenate([v[rng.integers(0, n, size=(min(rows, n_boot - i), n), dtype=np.int32)].mean(axis=1) for i in range(0, n_boot, rows)])
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def bootstrap_ci(values, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval `(lo, hi)` of the mean score.

    `values`: [N] per-item scores or [S, N] (S sampling seeds; averaged per item before resampling items).
    `n_boot`: number of resamples; `seed`: seeds the resampling (same inputs and seed, same interval);
    `level`: coverage, e.g. 0.95 for the 2.5% and 97.5% percentiles.
    """
    _check_settings(n_boot, level)
    return _interval(_per_item(values, "values"), n_boot, seed, level)


def paired_bootstrap(a, b, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Difference of mean scores `mean(a) - mean(b)` with a paired percentile bootstrap interval.

    `a`, `b`: per-item scores on the same N items in the same order, each [N] or [S, N] (seeds averaged per
    item first, separately, so they may have different S). Each resample draws one set of item indices for
    both, which cancels the item-difficulty variance the two share. `n_boot`, `seed`, `level`: as in
    `bootstrap_ci`. Returns `(delta, lo, hi)`; identical inputs give exactly (0, 0, 0).
    """
    _check_settings(n_boot, level)
    a, b = _per_item(a, "a"), _per_item(b, "b")
    if a.shape != b.shape:
        raise CoupledError(f"paired scores must cover the same items, got {a.shape[0]} and {b.shape[0]} items; score both methods on the same test items")
    # mean(a[idx]) - mean(b[idx]) == mean((a - b)[idx]): resampling the difference is the paired bootstrap.
    d = a - b
    return (float(d.mean()), *_interval(d, n_boot, seed, level))


def gap_recovered(acc: float, acc_noisy: float, acc_clean: float) -> float:
    """Share of the corruption's accuracy loss a method wins back: `(acc - acc_noisy) / (acc_clean - acc_noisy)`.

    `acc`: the method's accuracy; `acc_noisy`: the classifier's on the degraded inputs; `acc_clean`: its
    accuracy on clean inputs. NaN when there is no gap (`acc_clean == acc_noisy`), where it is undefined.
    """
    acc, acc_noisy, acc_clean = (float(x) for x in (acc, acc_noisy, acc_clean))
    gap = acc_clean - acc_noisy
    return (acc - acc_noisy) / gap if gap != 0 else math.nan
