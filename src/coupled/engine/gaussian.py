"""Closed-form Gaussian oracles: exact denoisers for Gaussian data, for tests and the engine's demo.

If x0 ~ N(m, P) (for example the posterior of a Gaussian signal given a linear-Gaussian observation d)
and x_t = a x0 + b center + sigma eps, then E[x0 | x_t] = m + a P (a^2 P + sigma^2 I)^-1 (x_t - a m - b center)
exactly, so a sampler driven by it must reproduce N(m, P).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["GaussianPrior", "linear_gaussian_posterior"]


@dataclass(frozen=True)
class GaussianPrior:
    """x0 ~ N(mean, cov): `mean` [B, D] (per item) or [D], `cov` [D, D] shared by all items."""

    mean: torch.Tensor
    cov: torch.Tensor

    def denoiser(self, process):
        """The ideal denoiser `(x_t, t, center=None, **ignored) -> E[x0 | x_t]` under `process`."""
        lam, U = torch.linalg.eigh(self.cov.double())
        lam = lam.clamp(min=0)

        def denoise(x_t, t, center=None, **conditioning):
            a, b, s = (c.double().reshape(-1)[:1] for c in process.coefficients(t))  # one time per batch
            gain = U @ torch.diag(a * lam / (a * a * lam + s * s)) @ U.T
            m = self.mean.double().expand_as(x_t)
            r = x_t.double() - a * m - (0 if center is None else b * center.double())
            return (m + r @ gain.T).to(x_t.dtype)

        return denoise


def linear_gaussian_posterior(prior_mean, prior_cov, H, noise_cov, d) -> GaussianPrior:
    """p(s | d) for s ~ N(prior_mean, prior_cov) and d = H s + n, n ~ N(0, noise_cov); `d` is [B, M]."""
    Si = torch.linalg.inv(prior_cov.double())
    Ri = torch.linalg.inv(noise_cov.double())
    P = torch.linalg.inv(Si + H.double().T @ Ri @ H.double())
    P = (P + P.T) / 2
    m = (prior_mean.double() @ Si.T + d.double() @ (Ri @ H.double())) @ P.T
    return GaussianPrior(m.float(), P.float())
