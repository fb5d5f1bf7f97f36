"""The image corruptions that are linear-Gaussian measurements, as the engine's operators (issue 18, item 1).

Each degraded image d of these corruptions is y = A x + n in the image's own shape once projected on A's
range (y = A A^+ d: an occlusion box's -1 or noise is not A x, A zeroes it; the evaluation measures that): `occlusion` (and `occlusion_noise`, whose box noise A zeroes) is an inpainting
`Mask` per item, the box recovered by corrupting an all-ones split with the same per-item seeds; `downsample`
at factor f is `Separable(U D, U D)` with D the area pooling to round(28 / f) pixels and U the nearest-exact
upsampling back (the corruption's own two steps, so pseudo-inverse and SVD are exact); `gaussian_blur` is the
reflect-padded separable Gaussian the corruption applies (not the circulant one: the boundaries differ);
`gaussian_noise` is the identity with noise std sigma. `pixel_noise` (replacement by noise) is not linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...engine.operators import Identity, Mask, Separable
from ...errors import CoupledError
from .corruptions import _pixels, gaussian_blur

LINEAR = ("occlusion", "occlusion_noise", "downsample", "gaussian_blur", "gaussian_noise")


def _down_up(n: int, factor: float) -> torch.Tensor:
    """[n, n]: area pooling of n samples to round(n / factor), then nearest-exact back to n (one axis)."""
    small = _pixels(n / factor)
    eye = torch.eye(n, dtype=torch.float64)[None]
    down = F.adaptive_avg_pool1d(eye, small)[0].T  # [small, n]: output j averages its window of inputs
    up = F.interpolate(torch.eye(small, dtype=torch.float64)[None], size=n, mode="nearest-exact")[0].T  # [n, small]
    return up @ down


def _blur_matrix(n: int, sigma: float) -> torch.Tensor:
    """[n, n]: the corruption's 1-D reflect-padded Gaussian, read off by blurring rows of ones (its
    normalised kernel keeps a constant row constant, so column i is B e_i)."""
    probe = torch.zeros(n, 1, n, n)
    probe[torch.arange(n), 0, torch.arange(n), :] = 1.0
    return gaussian_blur(probe, sigma)[:, 0, :, 0].T.double()


def linear_measurement(domain, name: str, severity, seed: int, data):
    """(operator over the split's items, noise std) of corruption `name` at `severity` (see the module)."""
    signals = data.signals
    h, w = signals.shape[-2:]
    if name in ("occlusion", "occlusion_noise"):
        probe = domain.corrupt_set(torch.ones_like(signals), "occlusion", severity, seed, lengths=data.lengths,
                                   indices=data.ids)
        return Mask((probe[:, :1] == 1.0).float()), 0.0
    if name == "downsample":
        return Separable(_down_up(h, float(severity)), _down_up(w, float(severity))), 0.0
    if name == "gaussian_blur":
        if float(severity) == 0:
            return Identity(), 0.0
        return Separable(_blur_matrix(h, float(severity)), _blur_matrix(w, float(severity))), 0.0
    if name == "gaussian_noise":
        return Identity(), float(severity)
    raise CoupledError(f"corruption {name!r} is not a linear-Gaussian measurement; the zero-shot samplers run on: "
                       f"{', '.join(LINEAR)}")
