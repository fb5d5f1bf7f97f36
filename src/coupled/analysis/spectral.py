"""The Gaussian laboratory: diffusion sampling of a circulant Gaussian prior, in closed form per frequency.

After Benita, Elad and Keshet, "Spectral Analysis of Diffusion Models with Application to Schedule Design"
(arXiv 2502.00180, section 3: with Gaussian data and the ideal denoiser the reverse process is, per
frequency, an affine map of the initial noise, a "spectral transfer function"), and "Analyzing and Guiding
Zero-Shot Posterior Sampling in Diffusion Models" (arXiv 2602.07715: zero-shot samplers for a linear
degradation are the same kind of per-frequency recursion, driven by the observation as well, and the ideal
posterior is closed-form too, so samplers and posterior compare per frequency in Wasserstein-2).

The model. x in R^N has a circulant (stationary) covariance with eigenvalues `lam[k]` on the real-FFT bins
k = 0..N//2; the observation is d = A x + n with A circulant, gains `h[k]` (real: a zero-phase kernel; a
phase would only rotate d's coefficient), and n white with variance `s2`. In the orthonormal real Fourier
basis of `real_fourier_basis` every coordinate is an independent scalar channel: x_c ~ N(0, lam[k]),
d_c = h[k] x_c + n_c. Every function below works on the K = N//2 + 1 bins (one scalar channel each);
`bin_counts(N)` says how many real coordinates share a bin (1 for k = 0 and N/2, else 2), which is how a
distance over R^N is summed from the bins.

A sampler's state in channel c after i steps is x_i = g_i d_c + sqrt(v_i) z (z standard normal, independent
of d): every step is x_{i+1} = alpha_i x_i + beta_i d + gamma_i z_i, so g_{i+1} = alpha_i g_i + beta_i and
v_{i+1} = alpha_i^2 v_i + gamma_i^2 (paper 1, eq. of the transfer function, unrolled as a recursion), from
x_0 ~ N(0, 1), the VP prior. The output given d is N(g_S d, v_S): `Transfer(gain, var)`. Without a
degradation the gain is 0 and `var` is the generated distribution's per-frequency variance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..engine.processes import VPProcess
from ..errors import CoupledError

__all__ = [
    "Transfer", "real_fourier_basis", "bin_counts", "power_law_spectrum", "gaussian_blur_gains", "grid_alpha_bar",
    "denoiser_gain", "sampler_transfer", "posterior", "w2_diagonal", "w2_to_data", "w2_to_posterior",
    "mse_to_truth", "residual_rms", "gaussian_mmse",
]

_f64 = torch.float64


@dataclass(frozen=True)
class Transfer:
    """A sampler's (or the posterior's) output per frequency: x | d ~ N(gain * d, var) in each real coordinate
    of bin k (float64 tensors [K]); gain is 0 for an unconditional sampler."""

    gain: torch.Tensor
    var: torch.Tensor
    mean_gain: torch.Tensor | None = None  # unconditional samplers: output mean = mean_gain * the prior's mean m


def real_fourier_basis(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(F, k): F [n, n] orthonormal (rows sqrt(2/n) cos and sin of 2 pi k j / n, and the constant and
    alternating rows for k = 0 and n/2), k [n] the real-FFT bin of each row. A circulant covariance with
    eigenvalues lam is F.T @ diag(lam[k]) @ F; the coordinates F x are sqrt(2) Re and Im of rfft(x, 'ortho')."""
    if n < 2:
        raise CoupledError(f"the signal length must be at least 2, got {n}")
    j = torch.arange(n, dtype=_f64)
    rows, bins = [], []
    for k in range(n // 2 + 1):
        w = 2 * math.pi * k * j / n
        if k == 0 or 2 * k == n:
            rows.append(torch.cos(w) / math.sqrt(n))
            bins.append(k)
        else:
            rows += [torch.cos(w) * math.sqrt(2 / n), torch.sin(w) * math.sqrt(2 / n)]
            bins += [k, k]
    return torch.stack(rows), torch.tensor(bins)


def bin_counts(n: int) -> torch.Tensor:
    """How many real coordinates each real-FFT bin of a length-n signal holds (float64 [n//2 + 1])."""
    return torch.bincount(real_fourier_basis(n)[1]).to(_f64)


def power_law_spectrum(n: int, exponent: float = 2.0, scale: float = 1.0) -> torch.Tensor:
    """lam[k] = scale (1 + k)^-exponent on the n//2 + 1 real-FFT bins."""
    return scale * (1.0 + torch.arange(n // 2 + 1, dtype=_f64)) ** -exponent


def gaussian_blur_gains(n: int, width: float) -> torch.Tensor:
    """h[k] of a circular Gaussian blur of standard deviation `width` samples: exp(-(2 pi k / n)^2 width^2 / 2)."""
    k = torch.arange(n // 2 + 1, dtype=_f64)
    return torch.exp(-0.5 * (2 * math.pi * k / n * width) ** 2)


def grid_alpha_bar(process: VPProcess, grid: torch.Tensor) -> torch.Tensor:
    """alpha_bar at each time of an engine grid (float64 [S + 1]; the terminal time -1 is clean data, 1)."""
    a, _, _ = process.coefficients(torch.as_tensor(grid))
    return a.double() ** 2


def denoiser_gain(lam: torch.Tensor, alpha_bar) -> torch.Tensor:
    """kappa with E[x0 | x_t] = kappa x_t for x0 ~ N(0, lam), x_t = sqrt(ab) x0 + sqrt(1 - ab) eps (the Wiener
    filter of engine/gaussian.py, per frequency)."""
    ab = torch.as_tensor(alpha_bar, dtype=_f64)
    return ab.sqrt() * lam / (ab * lam + 1 - ab)


def gaussian_mmse(lam, counts, alpha_bar) -> torch.Tensor:
    """E||E[x0 | x_t] - x0||^2 of x0 ~ N(0, diag lam) (`counts` coordinates per bin) at each `alpha_bar`:
    sum counts lam (1 - ab) / (ab lam + 1 - ab), float64 with alpha_bar's shape."""
    lam, counts = torch.as_tensor(lam, dtype=_f64), torch.as_tensor(counts, dtype=_f64)
    ab = torch.as_tensor(alpha_bar, dtype=_f64)[..., None]
    return (counts * lam * (1 - ab) / (ab * lam + 1 - ab)).sum(-1)


def _pinv(h: torch.Tensor, rcond: float) -> torch.Tensor:
    keep = h.abs() > rcond * h.abs().max().clamp(min=1e-300)
    return torch.where(keep, 1 / torch.where(keep, h, torch.ones_like(h)), torch.zeros_like(h))


def _step_coefficients(sampler: str, eta: float, ab_t, ab_n):
    """(A, B, gamma) of one engine step x_next = A x + B x0_hat + gamma z (samplers.ddim_step / ddpm_step)."""
    if sampler == "ddim":
        std = eta * ((1 - ab_n) / (1 - ab_t) * (1 - ab_t / ab_n)).clamp(min=0).sqrt()
        c = (1 - ab_n - std * std).clamp(min=0).sqrt()
        s_t = (1 - ab_t).sqrt()
        return c / s_t, ab_n.sqrt() - c * ab_t.sqrt() / s_t, std
    if sampler == "ddpm":
        alpha = ab_t / ab_n
        beta = 1 - alpha
        A = alpha.sqrt() * (1 - ab_n) / (1 - ab_t)
        B = ab_n.sqrt() * beta / (1 - ab_t)
        gamma = ((1 - ab_n) / (1 - ab_t) * beta).clamp(min=0).sqrt() if float(ab_n) < 1 else torch.zeros_like(ab_n)
        return A, B, gamma
    raise CoupledError(f"unknown sampler {sampler!r}; the closed form covers 'ddim' and 'ddpm'")


def residual_rms(lam, h, s2, gain, var, kappa, counts) -> torch.Tensor:
    """sqrt(E ||d - A x0_hat||^2) over d and the sampler's noise, with x0_hat = kappa x and x | d ~ N(gain d, var):
    r = (1 - h kappa gain) d - h kappa sqrt(var) z, summed over the coordinates (`counts` per bin)."""
    r2 = (1 - h * kappa * gain) ** 2 * (h * h * lam + s2) + (h * kappa) ** 2 * var
    return (counts * r2).sum().sqrt()


def sampler_transfer(
    lam: torch.Tensor,
    alpha_bar: torch.Tensor,
    *,
    sampler: str = "ddim",
    eta: float = 0.0,
    h: torch.Tensor | None = None,
    s2: float = 0.0,
    dps_weights=None,
    dps_normalised: bool = True,
    counts: torch.Tensor | None = None,
    projection_weights=None,
    rcond: float = 1e-3,
    pigdm_weights=None,
    prior_variance: float = 1.0,
    ddnm_plus: bool = False,
) -> Transfer:
    """Output mean gain and variance per frequency of the engine's sampler on the grid `alpha_bar`.

    Args:
        lam: prior variance per bin [K]. alpha_bar: the grid's alpha_bar, noisiest first, [S + 1] (the
            terminal 1 last; `grid_alpha_bar` reads an engine grid). sampler, eta: 'ddim' (eta in [0, 1]) or
            'ddpm', the engine's step formulas with the ideal denoiser x0_hat = kappa x_t.
        h, s2: the degradation's gains [K] and noise variance; needed by the guided samplers only.
        dps_weights: [S] weights of a DPS-like step added after each sampler step (Chung et al. 2023,
            Algorithm 1): x_next += w_i J^T A^T (d - A x0_hat(x_i)), J = kappa_i the denoiser's Jacobian,
            i.e. -w_i/2 times the gradient of ||d - A x0_hat||^2 in x_i. With `dps_normalised` (DPS's own
            step, zeta_i times the gradient of the residual's *norm*) w_i = zeta_i / ||r_i||, and ||r_i|| is
            replaced by its root mean square `residual_rms` (which ||r|| concentrates to for large N), so
            the recursion stays affine; `counts` (coordinates per bin, `bin_counts(N)`) is then needed.
        projection_weights: [S] weights p_i of a DDNM-like range/null-space step (Wang et al. 2023) on the
            denoised estimate before the sampler step: x0_hat <- x0_hat + p_i A^+ (d - A x0_hat), A^+ the
            pseudo-inverse (gains below rcond * max|h| count as 0); p_i = 1 is DDNM's projection
            A^+ d + (I - A^+ A) x0_hat.
        ddnm_plus: with `projection_weights` and s2 > 0, the engine's DDNM+ (`samplers.ddnm_step`, sampler
            'ddpm'): the correction is scaled per bin by lambda_t(|h|) (1 where gamma_t |h| >= c_0 sigma_y, else
            |h| gamma_t / (c_0 sigma_y)) and the step's fresh noise shrunk to Phi_t = sqrt(gamma_t^2 - (p_i c_0
            lambda_t sigma_y / |h|)^2) (`zeroshot.ddnm_scalings`).
        pigdm_weights: [S] weights w_i of the engine's PiGDM (`samplers.pigdm_step`, Song et al. 2023, eq. 7-8):
            x0_hat <- x0_hat + w_i s_t^2 / a_t kappa h / (r_t^2 h^2 + s2) (d - h x0_hat), r_t^2 = v s_t^2 /
            (a_t^2 v + s_t^2) with v = `prior_variance`, then the sampler's step (the engine's: 'ddim', eta 1).
    Returns the `Transfer` (gain, var); every operation is differentiable in torch (the designs use it). An
    unconditional sampler's also carries `mean_gain` [K]: for a prior N(m, C) (C circulant, any mean m) the ideal
    denoiser is m + kappa (x_t - a_t m), the output variance is the same and its mean is mean_gain * m per bin
    (`w2_to_data`'s `mean_power`).
    """
    lam = torch.as_tensor(lam, dtype=_f64)
    ab = torch.as_tensor(alpha_bar, dtype=_f64)
    steps = ab.numel() - 1
    if steps < 1:
        raise CoupledError("a grid needs at least two times (one step)")
    guided = dps_weights is not None or projection_weights is not None or pigdm_weights is not None
    if guided and h is None:
        raise CoupledError("a guided sampler needs the degradation's gains h and noise variance s2")
    h = torch.zeros_like(lam) if h is None else torch.as_tensor(h, dtype=_f64)
    dps = None if dps_weights is None else torch.as_tensor(dps_weights, dtype=_f64).expand(steps)
    proj = None if projection_weights is None else torch.as_tensor(projection_weights, dtype=_f64).expand(steps)
    pig = None if pigdm_weights is None else torch.as_tensor(pigdm_weights, dtype=_f64).expand(steps)
    sy = math.sqrt(float(s2))
    if dps is not None and dps_normalised and counts is None:
        raise CoupledError("a normalised DPS step needs `counts` (coordinates per bin, bin_counts(N))")
    hp = _pinv(h, rcond)
    gain, var, mgain = torch.zeros_like(lam), torch.ones_like(lam), torch.zeros_like(lam)
    for i in range(steps):
        kappa = denoiser_gain(lam, ab[i])
        A, B, gamma = _step_coefficients(sampler, eta, ab[i], ab[i + 1])
        x_coef, d_coef = kappa, torch.zeros_like(lam)  # x0_hat = x_coef x + d_coef d
        if proj is not None:
            p = proj[i]
            if ddnm_plus and sy > 0:
                ha = h.abs() * (hp != 0)
                if float(B) == 0.0:
                    lam_t = torch.ones_like(lam)
                else:
                    lam_t = torch.where(gamma * ha >= B * sy, torch.ones_like(lam), ha * gamma / (B * sy))
                p = p * lam_t
                carried = torch.where(ha > 0, proj[i] * B * lam_t * sy / torch.where(ha > 0, ha, torch.ones_like(ha)),
                                      torch.zeros_like(ha))
                gamma = (gamma * gamma - carried * carried).clamp(min=1e-30).sqrt()
            x_coef, d_coef = (1 - p * hp * h) * kappa, p * hp
        if pig is not None:
            a2 = ab[i]
            r2 = prior_variance * (1 - a2) / (a2 * prior_variance + 1 - a2)
            c = pig[i] * (1 - a2) / a2.sqrt() * kappa * (h * h / (r2 * h * h + s2)) * hp
            x_coef, d_coef = kappa * (1 - c * h), c
        alpha, beta = A + B * x_coef, B * d_coef
        if dps is not None:
            w = dps[i]
            if dps_normalised:
                w = w / residual_rms(lam, h, s2, gain, var, kappa, counts).clamp(min=1e-30)
            alpha, beta = alpha - w * (kappa * h) ** 2, beta + w * kappa * h
        mgain = alpha * mgain + B * (1 - ab[i].sqrt() * kappa)
        gain, var = alpha * gain + beta, alpha * alpha * var + gamma * gamma
    return Transfer(gain, var, None if guided else mgain)


def posterior(lam, h, s2) -> Transfer:
    """The ideal posterior p(x | d) per frequency: gain h lam / (h^2 lam + s2), variance lam s2 / (h^2 lam + s2)
    (paper 2's ideal posterior sampler; s2 = 0 is allowed: a bin with h = 0 keeps its prior)."""
    lam, h = torch.as_tensor(lam, dtype=_f64), torch.as_tensor(h, dtype=_f64)
    den = h * h * lam + s2
    if bool((s2 < 0) or (lam < 0).any()):
        raise CoupledError("the posterior needs s2 >= 0 and lam >= 0")
    seen = den > 0  # a bin with h = 0 and s2 = 0 is unobserved: its posterior is its prior
    safe = torch.where(seen, den, torch.ones_like(den))
    return Transfer(torch.where(seen, h * lam / safe, 0.0 * lam), torch.where(seen, lam * s2 / safe, lam))


def w2_diagonal(mean1, var1, mean2, var2, counts=None) -> torch.Tensor:
    """W2 between N(mean1, diag var1) and N(mean2, diag var2): sqrt(sum (m1 - m2)^2 + (sqrt v1 - sqrt v2)^2)
    (Dowson and Landau; diagonal covariances commute). Per-bin inputs with `counts` weight each bin by its
    number of real coordinates (means then given as the root mean square over those coordinates)."""
    m1, v1, m2, v2 = (torch.as_tensor(t, dtype=_f64) for t in (mean1, var1, mean2, var2))
    terms = (m1 - m2) ** 2 + (v1.clamp(min=0).sqrt() - v2.clamp(min=0).sqrt()) ** 2
    if counts is not None:
        terms = torch.as_tensor(counts, dtype=_f64) * terms
    return terms.sum().sqrt()


def w2_to_data(lam, transfer: Transfer, counts, mean_power=None) -> torch.Tensor:
    """W2 between the generated distribution N(0, var) and the data N(0, lam) over R^N (paper 1's objective).
    With `mean_power` [K] (|m_k|^2 per bin of a prior N(m, C), lam then C's spectrum) the generated mean is
    transfer.mean_gain * m, and the distance adds sum mean_power (mean_gain - 1)^2."""
    if mean_power is None:
        return w2_diagonal(0.0 * lam, transfer.var, 0.0 * lam, lam, counts)
    if transfer.mean_gain is None:
        raise CoupledError("a prior with a mean needs an unconditional sampler's transfer (its mean_gain)")
    root = torch.as_tensor(mean_power, dtype=_f64).clamp(min=0).sqrt()
    return w2_diagonal(root * transfer.mean_gain, transfer.var, root, lam, counts)


def w2_to_posterior(lam, h, s2, transfer: Transfer, counts) -> torch.Tensor:
    """The root of E_d W2^2 between the sampler's output given d and p(x | d) (paper 2's averaged W2):
    sum over coordinates of (gain - gain*)^2 E[d^2] + (sqrt var - sqrt var*)^2, with E[d^2] = h^2 lam + s2."""
    lam, h = torch.as_tensor(lam, dtype=_f64), torch.as_tensor(h, dtype=_f64)
    post = posterior(lam, h, s2)
    mean_rms = (transfer.gain - post.gain).abs() * (h * h * lam + s2).sqrt()
    return w2_diagonal(mean_rms, transfer.var, 0.0 * lam, post.var, counts)


def mse_to_truth(lam, h, s2, transfer: Transfer, counts) -> torch.Tensor:
    """E ||x_hat - x||^2 over the prior x ~ N(0, lam), the observation noise and the sampler's noise (what PSNR
    measures): with x_hat = gain d + sqrt(var) z and d = h x + n, the error (gain h - 1) x + gain n + sqrt(var) z
    has variance (1 - gain h)^2 lam + gain^2 s2 + var per coordinate, summed over the coordinates (`counts` per
    bin). The posterior mean (`posterior`'s gain, var 0) reaches the minimum, sum counts lam s2 / (h^2 lam + s2);
    a posterior sample has twice that."""
    lam, h = torch.as_tensor(lam, dtype=_f64), torch.as_tensor(h, dtype=_f64)
    per_bin = (1 - transfer.gain * h) ** 2 * lam + transfer.gain ** 2 * s2 + transfer.var
    return (torch.as_tensor(counts, dtype=_f64) * per_bin).sum()
