"""Macro-F1 as a metric with a direction: per-item class counts summed, then combined; bootstrapped like WER."""

import numpy as np
import pytest

from coupled.errors import CoupledError
from coupled.evaluation.stats import bootstrap_ci, paired_bootstrap
from coupled.scores import get_metric, macro_f1_counts


def _macro_f1(refs, hyps, k):
    f1 = []
    for c in range(k):
        tp = np.sum((refs == c) & (hyps == c))
        fp = np.sum((refs != c) & (hyps == c))
        fn = np.sum((refs == c) & (hyps != c))
        if 2 * tp + fp + fn:
            f1.append(2 * tp / (2 * tp + fp + fn))
    return np.mean(f1)


def test_macro_f1_matches_its_definition():
    rng = np.random.default_rng(0)
    refs = rng.integers(0, 3, 200)
    hyps = np.where(rng.random(200) < 0.7, refs, rng.integers(0, 3, 200))
    m = get_metric("macro_f1")
    assert m.higher_is_better and m.ratio
    counts = macro_f1_counts(refs, hyps, 3)
    assert counts.shape == (200, 9)
    assert m.value(counts) == pytest.approx(_macro_f1(refs, hyps, 3))
    assert m.value(macro_f1_counts(refs, refs, 3)) == 1.0
    # a class never present and never predicted is left out, not scored 0
    assert m.value(macro_f1_counts(np.array([0, 1]), np.array([0, 1]), 3)) == 1.0
    # seeds are averaged per item: two seeds' counts give the F1 of the expected counts
    other = np.where(rng.random(200) < 0.5, refs, 0)
    two = np.stack([counts, macro_f1_counts(refs, other, 3)])
    assert m.value(two) == pytest.approx(float(m.statistic((two.mean(0)).sum(0))))


def test_macro_f1_bootstraps_and_pairs():
    rng = np.random.default_rng(1)
    refs = rng.integers(0, 3, 300)
    good = macro_f1_counts(refs, np.where(rng.random(300) < 0.9, refs, 0), 3)
    bad = macro_f1_counts(refs, np.where(rng.random(300) < 0.5, refs, 0), 3)
    m = get_metric("macro_f1")
    lo, hi = bootstrap_ci(good, n_boot=300, metric="macro_f1")
    assert lo < m.value(good) < hi
    delta, dlo, dhi = paired_bootstrap(good, bad, n_boot=300, metric="macro_f1")
    assert delta == pytest.approx(m.value(good) - m.value(bad)) and 0 < dlo < delta < dhi
    assert paired_bootstrap(good, good, n_boot=50, metric="macro_f1") == (0.0, 0.0, 0.0)
    with pytest.raises(CoupledError, match="same items"):
        paired_bootstrap(good, bad[:10], metric="macro_f1")
    assert m.better(0.9, 0.8) and not get_metric("wer").better(0.9, 0.8)
