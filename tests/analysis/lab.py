"""The Gaussian laboratory's shared test world: a 16-point circular signal with a power-law spectrum, its real
Fourier basis, a blur and the Monte Carlo agreement check (used by test_gaussian_lab and test_empirical_designs)."""

import math

import torch

from coupled.analysis import bin_counts, gaussian_blur_gains, power_law_spectrum, real_fourier_basis
from coupled.engine import VPProcess

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
