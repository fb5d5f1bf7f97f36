"""A grid designed from a denoiser's measured error per noise level (issue 18, item 3's design for the digits):
`empirical.denoising_error` measures E||x0_hat(x_t) - x0||^2, `design.effective_spectrum` fits the Gaussian with
that MMSE curve (`spectral.gaussian_mmse`), and `design_grid` designs for it.

Monte Carlo tolerance: with the exact denoiser of N(0, C) the error x0_hat - x0 is Gaussian with the posterior
covariance, whose eigenvalues per real coordinate are v_k = lam_k (1 - ab) / (ab lam_k + 1 - ab); the squared
error summed over the coordinates has mean sum v_k (the MMSE) and variance 2 sum v_k^2, so its mean over n items
has standard error sqrt(2 sum v_k^2 / n). Every noise level must agree within 4 standard errors (as the other
laboratory tests: two-sided p ~ 6e-5 per comparison, the draws seeded).
"""

import math

import pytest
import torch

from coupled.analysis import (
    bin_counts, denoising_error, design_grid, effective_spectrum, gaussian_mmse, grid_w2,
    power_law_spectrum,
)
from coupled.engine import VPProcess
from coupled.engine.gaussian import GaussianPrior
from coupled.errors import CoupledError

from .lab import BIN, COUNTS, LAM, N, PROCESS, TOL, _circulant

TIMES = [50, 200, 400, 600, 800, 950]


def _alpha_bar(times):
    return PROCESS.alpha_bar.double()[torch.tensor(times)]


def test_the_exact_denoisers_error_is_the_gaussian_mmse():
    n = 4000
    prior = GaussianPrior(torch.zeros(N), _circulant(LAM).float())
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(n, N, generator=g, dtype=torch.float64) @ _circulant(LAM.sqrt()).T).float()
    measured = denoising_error(prior.denoiser(PROCESS), PROCESS, x, TIMES, generator=g, batch=1000)
    ab = _alpha_bar(TIMES)
    mmse = gaussian_mmse(LAM, COUNTS, ab)
    v = LAM[BIN][None, :] * (1 - ab[:, None]) / (ab[:, None] * LAM[BIN][None, :] + 1 - ab[:, None])
    se = (2 * (v ** 2).sum(1) / n).sqrt()
    assert torch.all(((measured - mmse) / se).abs() < TOL), (measured, mmse)
    # a denoiser that ignores the data (x0_hat = 0) errs by E||x0||^2 = sum lam at every level: the test can fail
    zero = denoising_error(lambda x_t, t: torch.zeros_like(x_t), PROCESS, x, TIMES[:1], generator=g)
    assert float(zero[0]) == pytest.approx(float((COUNTS * LAM).sum()), rel=0.05)


def test_the_fitted_gaussian_reproduces_the_curve_and_its_grid_the_true_design():
    """From the MMSE curve of a known spectrum alone, the fit matches the curve and the grid designed for the fit
    is, on the true spectrum, as close to the data as the true spectrum's own design (within 5%)."""
    n = 64
    lam, counts = power_law_spectrum(n), bin_counts(n)
    times = torch.linspace(10, 990, 40).round().long().tolist()
    ab = _alpha_bar(times)
    curve = gaussian_mmse(lam, counts, ab)
    lam_fit, counts_fit = effective_spectrum(ab, curve, n)
    assert torch.allclose(gaussian_mmse(lam_fit, counts_fit, ab), curve, rtol=0.01)
    assert float(counts_fit.sum()) == pytest.approx(n, rel=0.05)
    true_grid = design_grid(lam, counts, PROCESS, 3, iters=60, starts=(1.0, 0.6))
    fit_grid = design_grid(lam_fit, counts_fit, PROCESS, 3, iters=60, starts=(1.0, 0.6))
    w2 = lambda grid: grid_w2(lam, counts, PROCESS, grid)  # noqa: E731
    assert w2(fit_grid) <= 1.05 * w2(true_grid)
    assert w2(fit_grid) < 0.5 * w2(PROCESS.grid(3))  # and the design matters here: uniform is far worse


def test_conditioning_reaches_the_denoiser_item_by_item():
    """An observation-conditioned denoiser sees each item's own observation, across batch boundaries: one that
    answers with its observation errs by exactly ||d - x0||^2 per item, whatever the noise."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(7, N, generator=g)
    d = x + torch.arange(7.0)[:, None]  # item i is off by i in every coordinate
    err = denoising_error(lambda x_t, t, observation, logits: observation, PROCESS, x, [10, 500], generator=g,
                          batch=3, observation=d, logits=None)
    expected = float((torch.arange(7.0) ** 2).mean() * N)
    assert torch.allclose(err, torch.tensor([expected, expected], dtype=torch.float64))
    with pytest.raises(CoupledError, match="one per signal"):
        denoising_error(lambda x_t, t, observation: observation, PROCESS, x, [10], observation=d[:3])


def test_a_grid_with_its_first_time_fixed_starts_at_the_last_training_step():
    """`fix_first` keeps T - 1 (where a trained network is in distribution from pure noise); for a spectrum whose
    free design starts lower, the fixed one is worse in the closed form but still no worse than uniform."""
    n = 64
    lam, counts = 0.05 * power_law_spectrum(n), bin_counts(n)  # small variances: the free design starts late
    free = design_grid(lam, counts, PROCESS, 3, iters=60, starts=(1.0, 0.6))
    fixed = design_grid(lam, counts, PROCESS, 3, iters=60, fix_first=True)
    w2 = lambda grid: grid_w2(lam, counts, PROCESS, grid)  # noqa: E731
    assert int(free[0]) < PROCESS.num_train_steps - 1 and int(fixed[0]) == PROCESS.num_train_steps - 1
    assert w2(free) <= w2(fixed) <= w2(PROCESS.grid(3))
    assert torch.all(fixed[:-1] > fixed[1:]) and fixed[-1] == -1


def test_the_measured_error_does_not_depend_on_the_batch_size():
    """Each item gets the same noise whatever the batches (drawn for the whole set; torch's generator does not
    split a draw into smaller ones the same way for small tensors: 3 coordinates per item shows it)."""
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(7))
    half = lambda x_t, t: 0.5 * x_t  # noqa: E731
    runs = [denoising_error(half, PROCESS, x, TIMES, generator=torch.Generator().manual_seed(8), batch=b)
            for b in (1, 7, 50)]
    # the same noise per item; only the float rounding of the sums may differ
    assert torch.allclose(runs[0], runs[1], rtol=1e-6) and torch.allclose(runs[0], runs[2], rtol=1e-6)


def test_gaussian_mmse_of_a_hand_case():
    # one coordinate of variance 1 at alpha_bar 1/2: 1 * (1/2) / (1/2 + 1/2) = 1/2; two coordinates count twice
    assert float(gaussian_mmse([1.0], [2.0], 0.5)) == pytest.approx(1.0)
    assert gaussian_mmse([1.0, 4.0], [1.0, 1.0], torch.tensor([0.5, 0.2])).shape == (2,)


def test_bad_curves_are_one_line_errors():
    ab = _alpha_bar(TIMES)
    with pytest.raises(CoupledError, match="same length"):
        effective_spectrum(ab, torch.ones(3), N)
    with pytest.raises(CoupledError, match="finite and positive"):
        effective_spectrum(ab, torch.tensor([1.0, 2.0, math.nan, 4.0, 5.0, 6.0]), N)
    with pytest.raises(CoupledError, match="strictly between 0 and 1"):
        effective_spectrum(torch.linspace(0, 1, 6), torch.ones(6), N)
    with pytest.raises(CoupledError, match="signals must be"):
        denoising_error(lambda x, t: x, VPProcess(10), torch.zeros(4), [1])
