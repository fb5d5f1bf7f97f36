import math

import numpy as np
import pytest
import torch

from coupled.errors import CoupledError
from coupled.evaluation import stats
from coupled.domains.image.metrics import psnr, ssim
from coupled.evaluation.stats import bootstrap_ci, gap_recovered, paired_bootstrap


def _bernoulli(n, p, seed):
    return np.random.default_rng(seed).random(n) < p


def _width(ci):
    return ci[-1] - ci[-2]


# ---------------------------------------------------------------------------------------------- bootstrap
def test_bootstrap_ci_contains_mean_and_shrinks_with_n():
    small, large = _bernoulli(100, 0.7, 0), _bernoulli(4000, 0.7, 1)
    for v in (small, large):
        lo, hi = bootstrap_ci(v)
        assert lo <= v.mean() <= hi and lo < hi
    # The interval scales like 1/sqrt(N): 40x the items, about 1/6 of the width.
    assert _width(bootstrap_ci(large)) < _width(bootstrap_ci(small)) / 3


def test_bootstrap_ci_averages_seeds_per_item():
    v = np.stack([_bernoulli(300, 0.6, s) for s in range(3)])
    assert bootstrap_ci(v, seed=4) == bootstrap_ci(v.mean(axis=0), seed=4)


def test_bootstrap_ci_level_and_chunking(monkeypatch):
    v = _bernoulli(500, 0.5, 2)
    assert _width(bootstrap_ci(v, level=0.99)) > _width(bootstrap_ci(v, level=0.8))
    # Tiny chunks (3 resamples each, n_boot not a multiple) still give a sensible interval.
    monkeypatch.setattr(stats, "_CHUNK_VALUES", 3 * 500)
    lo, hi = bootstrap_ci(v, n_boot=1001)
    assert lo < v.mean() < hi and hi - lo < 0.15


def test_paired_bootstrap_of_identical_arrays_is_exactly_zero():
    a = _bernoulli(200, 0.5, 0)
    assert paired_bootstrap(a, a.copy()) == (0.0, 0.0, 0.0)
    s = np.stack([a, ~a])
    assert paired_bootstrap(s, s) == (0.0, 0.0, 0.0)


def test_paired_bootstrap_detects_true_difference_and_beats_unpaired():
    n, rng = 1000, np.random.default_rng(3)
    b = _bernoulli(n, 0.6, 5)
    a = b.copy()
    a[rng.choice(np.flatnonzero(~b), size=n // 10, replace=False)] = True  # 10% of items flipped to correct
    delta, lo, hi = paired_bootstrap(a, b)
    assert delta == pytest.approx(0.1) and 0 < lo < delta < hi
    # Unpaired: resample each method's items independently; it cannot cancel shared item difficulty.
    idx = np.random.default_rng(0).integers(0, n, size=(2, 2000, n))
    diffs = a[idx[0]].mean(1) - b[idx[1]].mean(1)
    unpaired = np.quantile(diffs, 0.975) - np.quantile(diffs, 0.025)
    assert hi - lo < 0.7 * unpaired


def test_paired_bootstrap_deterministic_and_seed_dependent():
    a, b = _bernoulli(300, 0.7, 0), _bernoulli(300, 0.6, 1)
    assert paired_bootstrap(a, b, seed=7) == paired_bootstrap(a, b, seed=7)
    # item-level quantiles are multiples of 1/300, so two seeds may land on one interval; five seeds do not
    assert len({paired_bootstrap(a, b, seed=s) for s in range(7, 12)}) > 1
    assert bootstrap_ci(a, seed=7) == bootstrap_ci(a, seed=7)


def test_paired_bootstrap_different_seed_counts():
    a = np.stack([_bernoulli(100, 0.7, s) for s in range(3)])
    b = np.stack([_bernoulli(100, 0.6, s) for s in range(10, 12)])
    delta, lo, hi = paired_bootstrap(a, b)
    assert delta == pytest.approx(a.mean() - b.mean()) and lo <= delta <= hi


@pytest.mark.parametrize(
    "call",
    [
        lambda: paired_bootstrap(np.ones(5), np.ones(6)),
        lambda: bootstrap_ci(np.ones((2, 3, 4))),
        lambda: bootstrap_ci(np.array([])),
        lambda: bootstrap_ci(np.array([1.0, np.nan])),
        lambda: bootstrap_ci(np.ones(5), level=1.5),
        lambda: bootstrap_ci(np.ones(5), n_boot=0),
    ],
)
def test_bad_input_raises_one_line_error(call):
    with pytest.raises(CoupledError) as e:
        call()
    assert "\n" not in str(e.value)


def test_gap_recovered():
    assert gap_recovered(0.8, 0.5, 0.9) == pytest.approx(0.75)
    assert gap_recovered(0.5, 0.5, 0.9) == 0.0
    assert math.isnan(gap_recovered(0.8, 0.9, 0.9))


# ---------------------------------------------------------------------------------------------- image metrics
def _images(n=3, c=3, h=28, w=28, seed=0):
    return torch.rand((n, c, h, w), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_ssim_of_identical_images_is_one():
    x = _images()
    s = ssim(x, x.clone())
    assert s.shape == (3,) and torch.allclose(s, torch.ones(3, dtype=s.dtype), atol=1e-12, rtol=0)
    assert torch.isinf(psnr(x, x)).all()


def test_ssim_and_psnr_decrease_with_noise():
    x, g = _images(), torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    s = torch.stack([ssim(x + sigma * noise, x) for sigma in (0.05, 0.2, 0.5)])
    p = torch.stack([psnr(x + sigma * noise, x) for sigma in (0.05, 0.2, 0.5)])
    assert (s[:-1] > s[1:]).all() and (p[:-1] > p[1:]).all() and (s < 1).all()


def test_psnr_matches_formula_for_known_mse():
    ref = _images(n=2)
    sign = torch.where(torch.rand(ref.shape, generator=torch.Generator().manual_seed(2)) < 0.5, -1.0, 1.0)
    out = psnr(ref + 0.1 * sign, ref)  # every error is +-0.1, so MSE = 0.01 exactly
    assert torch.allclose(out, torch.full((2,), 10 * math.log10(4 / 0.01), dtype=out.dtype), atol=1e-4)
    assert psnr(ref + 0.1 * sign, ref, data_range=1.0)[0].item() == pytest.approx(10 * math.log10(1 / 0.01), abs=1e-4)


def test_constant_shift_by_hand():
    a, c = 0.2, 0.3
    ref = torch.full((1, 1, 16, 16), a)
    # Constant images: no variance, so only the luminance term remains: (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1).
    c1 = (0.01 * 2) ** 2
    expected = (2 * a * (a + c) + c1) / (a**2 + (a + c) ** 2 + c1)
    assert ssim(ref + c, ref).item() == pytest.approx(expected, rel=1e-6)
    assert psnr(ref + c, ref).item() == pytest.approx(10 * math.log10(4 / c**2), rel=1e-6)


@pytest.mark.parametrize(
    "call",
    [
        lambda: ssim(torch.zeros(1, 1, 10, 10), torch.zeros(1, 1, 10, 10)),
        lambda: ssim(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 15)),
        lambda: psnr(torch.zeros(16, 16), torch.zeros(16, 16)),
        lambda: psnr(np.zeros((1, 1, 16, 16)), torch.zeros(1, 1, 16, 16)),
        lambda: psnr(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16), data_range=0),
    ],
)
def test_metric_bad_input_raises(call):
    with pytest.raises(CoupledError):
        call()
