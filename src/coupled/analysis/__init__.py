"""The Gaussian laboratory (issue 18, item 2): diffusion sampling of a circulant Gaussian prior, unconditional
and zero-shot guided, in closed form per frequency, its Wasserstein-2 distances and squared error, and the
designs (time grids, guidance weights) it yields. Torch only; imports nothing above the engine."""

from .design import design_alpha_bar, design_grid, design_guidance, effective_spectrum, grid_w2
from .empirical import circulant_report, denoising_error, fourier_moment, power_spectrum_2d
from .spectral import (
    Transfer, bin_counts, denoiser_gain, gaussian_blur_gains, gaussian_mmse, grid_alpha_bar, mse_to_truth, posterior,
    power_law_spectrum, real_fourier_basis, residual_rms, sampler_transfer, w2_diagonal, w2_to_data, w2_to_posterior,
)

__all__ = [
    "Transfer", "bin_counts", "denoiser_gain", "gaussian_blur_gains", "grid_alpha_bar", "mse_to_truth", "posterior",
    "power_law_spectrum", "real_fourier_basis", "residual_rms", "sampler_transfer", "w2_diagonal", "w2_to_data",
    "w2_to_posterior", "design_alpha_bar", "design_grid", "design_guidance", "grid_w2", "circulant_report",
    "fourier_moment", "power_spectrum_2d", "gaussian_mmse", "effective_spectrum", "denoising_error",
]
