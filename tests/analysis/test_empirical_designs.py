"""Issue 18 item 3's additions to the Gaussian laboratory: the empirical 2-D power spectrum and how circulant the
data are (`analysis.empirical`), a prior with a mean (`mean_gain`, `w2_to_data(mean_power=)`), and the closed forms
of the engine's PiGDM and DDNM+ steps (`pigdm_weights`, `ddnm_plus`), checked against the engine by Monte Carlo.

Tolerances as in test_gaussian_lab.py: 4 Monte Carlo standard errors per coordinate (20000 draws). A power
spectrum bin is the mean of n draws of |X_k|^2, an exponential variable (std = its mean) for a complex bin, a
scaled chi-square with one degree of freedom (std = sqrt 2 times its mean) for the self-conjugate bins, so
4 standard errors are at most 4 sqrt(2 / n) of the bin's value.
"""

import math

import pytest
import torch

from coupled.analysis import (
    circulant_report, design_guidance, fourier_moment, grid_alpha_bar,
    power_spectrum_2d, sampler_transfer, w2_to_data, w2_to_posterior,
)
from coupled.engine import sample
from coupled.engine.gaussian import GaussianPrior
from coupled.errors import CoupledError

from .lab import BIN, COUNTS, F, H, LAM, N, PROCESS, S2, SAMPLES, TOL, _agree, _circulant, _run_engine


def _stationary(n, size=8, seed=0):
    """n draws of a circulant process on a size x size torus: white noise circularly filtered by a fixed kernel."""
    g = torch.Generator().manual_seed(seed)
    kernel = torch.zeros(size, size, dtype=torch.float64)
    kernel[0, 0], kernel[0, 1], kernel[1, 0], kernel[2, 3] = 1.0, 0.6, -0.4, 0.3
    K = torch.fft.fft2(kernel)
    z = torch.randn(n, size, size, generator=g, dtype=torch.float64)
    x = torch.fft.ifft2(torch.fft.fft2(z) * K).real
    return x, (K.abs() ** 2).flatten()  # E|fft2(x, ortho)_k|^2 = |K_k|^2 for unit white noise


def test_the_power_spectrum_of_a_circulant_process_is_its_filters_squared_gain():
    x, truth = _stationary(SAMPLES)
    lam = power_spectrum_2d(x[:, None])  # [B, 1, H, W] is accepted too
    assert lam.shape == (64,)
    assert torch.all((lam - truth).abs() <= TOL * math.sqrt(2 / SAMPLES) * truth + 1e-12)
    assert float(lam.sum()) == pytest.approx(float((x ** 2).sum((1, 2)).mean()), rel=1e-9)  # Parseval
    assert torch.allclose(fourier_moment(x).diagonal().real, lam, rtol=1e-9)


def test_a_circulant_process_is_circulant_and_a_masked_one_is_not():
    x, _ = _stationary(SAMPLES)
    rep = circulant_report(x)
    # sampling noise alone leaves about (sum lam)^2 / (n sum lam^2) of the energy off the diagonal: ~1e-3 here
    assert rep["offdiagonal_energy"] < 0.01 and rep["w2_gaussian"] < 0.05 * rep["rms_norm"], rep
    mask = torch.zeros(8, 8, dtype=torch.float64)
    mask[:, :4] = 1  # the left half only: not stationary
    masked = circulant_report(x * mask)
    assert masked["offdiagonal_energy"] > 0.3 and masked["w2_gaussian"] > 0.2 * masked["rms_norm"], masked
    with pytest.raises(CoupledError, match="one channel"):
        power_spectrum_2d(torch.zeros(3, 2, 4, 4))
    with pytest.raises(CoupledError, match="B >= 2"):
        power_spectrum_2d(torch.zeros(1, 4, 4))


def test_a_prior_with_a_mean_matches_the_engines_ddim_with_the_exact_denoiser():
    m = torch.linspace(-1, 1, N, dtype=torch.float64) ** 2 - 0.3
    prior = GaussianPrior(m.float(), _circulant(LAM).float())
    grid = PROCESS.grid(4)
    g = torch.Generator().manual_seed(5)
    out = sample(prior.denoiser(PROCESS), PROCESS, grid, PROCESS.prior((SAMPLES, N), g), sampler="ddim", generator=g,
                 eta=0.5)
    t = sampler_transfer(LAM, grid_alpha_bar(PROCESS, grid), sampler="ddim", eta=0.5)
    _agree(out, t.mean_gain[BIN] * (F @ m), t.var)
    # the distance: exact generation (mean_gain 1, var lam) is 0; the zero-mean model ignores the mean term
    mp = torch.zeros_like(LAM).index_add_(0, BIN, (F @ m) ** 2) / COUNTS
    assert float(w2_to_data(LAM, t, COUNTS, mp)) > float(w2_to_data(LAM, t, COUNTS))
    exact = type(t)(torch.zeros_like(LAM), LAM, torch.ones_like(LAM))
    assert float(w2_to_data(LAM, exact, COUNTS, mp)) == 0.0
    guided = sampler_transfer(LAM, grid_alpha_bar(PROCESS, grid), h=H, s2=S2, projection_weights=1.0)
    with pytest.raises(CoupledError, match="unconditional"):
        w2_to_data(LAM, guided, COUNTS, mp)


def _observation(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, generator=g, dtype=torch.float64) @ _circulant(LAM.sqrt()).T
    return x @ _circulant(H).T + math.sqrt(S2) * torch.randn(N, generator=g, dtype=torch.float64)


def test_pigdm_closed_form_matches_the_engines_pigdm_step():
    weights = [0.5, 1.0, 2.0, 1.0, 0.3]
    d = _observation(3)
    out, ab = _run_engine("pigdm", weights, d, 6, eta=0.5, prior_variance=0.5)
    t = sampler_transfer(LAM, ab, sampler="ddim", eta=0.5, h=H, s2=S2, pigdm_weights=torch.tensor(weights),
                         prior_variance=0.5)
    _agree(out, t.gain[BIN] * (F @ d), t.var)


def test_ddnm_plus_closed_form_matches_the_engines_noisy_ddnm_step():
    weights = [1.0, 0.8, 1.0, 0.5, 1.0]
    d = _observation(4)
    out, ab = _run_engine("ddnm", weights, d, 7)
    t = sampler_transfer(LAM, ab, sampler="ddpm", h=H, s2=S2, projection_weights=torch.tensor(weights), ddnm_plus=True)
    _agree(out, t.gain[BIN] * (F @ d), t.var)


@pytest.mark.parametrize("method,sampler,eta", [("pigdm", "ddim", 1.0), ("ddnm", "ddpm", 0.0)])
def test_designed_pigdm_and_ddnm_weights_are_no_worse_than_the_defaults(method, sampler, eta):
    ab = grid_alpha_bar(PROCESS, PROCESS.grid(3))
    w = design_guidance(LAM, H, S2, ab, COUNTS, method=method, sampler=sampler, eta=eta, iters=20)
    key = {"pigdm": {"pigdm_weights": None}, "ddnm": {"projection_weights": None, "ddnm_plus": True}}[method]

    def w2(weights):
        kw = {k: (weights if v is None else v) for k, v in key.items()}
        return float(w2_to_posterior(LAM, H, S2, sampler_transfer(LAM, ab, sampler=sampler, eta=eta, h=H, s2=S2, **kw),
                                     COUNTS))

    assert w.shape == (3,) and w2(w) <= w2(1.0)


def test_nonnegative_designs_stay_nonnegative_and_the_unconstrained_one_is_no_worse():
    """The engine's samplers take weights >= 0; the closed form alone may prefer a step away from the data."""
    ab = grid_alpha_bar(PROCESS, PROCESS.grid(3))
    w2 = lambda w: float(w2_to_posterior(LAM, H, S2, sampler_transfer(LAM, ab, h=H, s2=S2, dps_weights=w, counts=COUNTS), COUNTS))  # noqa: E731
    free = design_guidance(LAM, H, S2, ab, COUNTS, method="dps", iters=20)
    kept = design_guidance(LAM, H, S2, ab, COUNTS, method="dps", iters=20, nonnegative=True)
    assert torch.all(kept >= 0) and w2(kept) <= w2(1.0) + 1e-12 and w2(free) <= w2(kept) + 1e-9
