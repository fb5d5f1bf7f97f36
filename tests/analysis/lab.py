"""The Gaussian laboratory's shared test world: a 16-point circular signal with a power-law spectrum, its real
Fourier basis, a blur, the engine's zero-shot samplers around its exact denoiser and the Monte Carlo agreement
check (used by test_gaussian_lab, test_empirical_designs and test_mse_design)."""

import math

import torch

from coupled.analysis import bin_counts, gaussian_blur_gains, grid_alpha_bar, power_law_spectrum, real_fourier_basis
from coupled.engine import VPProcess, sample
from coupled.engine.gaussian import GaussianPrior
from coupled.engine.operators import Measurement, Separable

N, SAMPLES, TOL = 16, 20000, 4.0
PROCESS = VPProcess(1000)
LAM = power_law_spectrum(N)
COUNTS = bin_counts(N)
F, BIN = real_fourier_basis(N)
H = gaussian_blur_gains(N, 1.0)
S2 = 1e-2


def _circulant(per_bin):
    return F.T @ torch.diag(per_bin[BIN]) @ F


def _agree(out, mean, var):
    """Per coordinate of the Fourier basis: empirical mean and variance of `out` [n, N] vs the closed form."""
    y = out.double() @ F.T
    n = y.shape[0]
    v = var[BIN]
    mean_z = (y.mean(0) - mean) / (v / n).sqrt()
    var_z = (y.var(0) - v) / (v * math.sqrt(2 / (n - 1)))
    assert mean_z.abs().max() < TOL, mean_z
    assert var_z.abs().max() < TOL, var_z


def _blur_operator():
    return Separable(torch.ones(1, 1), _circulant(H))  # x [n, 1, N] -> A x along the last axis


def _run_engine(sampler, weights, d, seed, **options):
    """The engine's zero-shot `sampler` around the exact denoiser of N(0, circ LAM), blur H, noise S2, on SAMPLES
    draws: `d` is one observation [N] shared by all or one per draw [SAMPLES, N]; returns (x_hat [SAMPLES, N],
    the grid's alpha_bar)."""
    denoise = GaussianPrior(torch.zeros(N), _circulant(LAM).float()).denoiser(PROCESS)
    flat = lambda x, t, **kw: denoise(x[:, 0], t)[:, None]  # noqa: E731  ([n, 1, N] through the [n, N] denoiser)
    m = Measurement(_blur_operator(), d.float().expand(SAMPLES, N)[:, None].clone(), math.sqrt(S2))
    grid = PROCESS.grid(len(weights))
    g = torch.Generator().manual_seed(seed)
    out = sample(flat, PROCESS, grid, PROCESS.prior((SAMPLES, 1, N), g), sampler=sampler, generator=g,
                 measurement=m, weight=list(weights), **options)
    return out[:, 0], grid_alpha_bar(PROCESS, grid)
