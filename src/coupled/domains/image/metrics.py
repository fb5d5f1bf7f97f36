"""Per-item image quality: PSNR and SSIM of image batches [N, C, H, W] in [-1, 1] against references."""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

from ...errors import CoupledError

__all__ = ["psnr", "ssim"]


def _pair(x, ref) -> tuple[torch.Tensor, torch.Tensor]:
    for name, t in (("x", x), ("ref", ref)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise CoupledError(f"{name} must be a float torch.Tensor [N, C, H, W], got {type(t).__name__}; convert with torch.as_tensor(...).float()")
    if x.dim() != 4 or x.shape != ref.shape:
        raise CoupledError(f"x and ref must have the same 4-D shape [N, C, H, W], got {tuple(x.shape)} and {tuple(ref.shape)}; add a batch dimension with [None]")
    # float64: SSIM's E[x^2] - E[x]^2 loses most of its digits to cancellation in float32.
    return x.detach().double(), ref.detach().to(x.device, torch.float64)


def _check_range(data_range) -> float:
    if not isinstance(data_range, numbers.Real) or isinstance(data_range, bool) or not data_range > 0:
        raise CoupledError(f"data_range must be a positive number, got {data_range!r}; use 2.0 for images in [-1, 1]")
    return float(data_range)


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per item, `10 log10(data_range^2 / MSE)`, MSE over channels and pixels.

    `x`, `ref`: [N, C, H, W] (estimate and clean reference); `data_range`: max - min of the value range (2 for
    [-1, 1]). Returns a float64 Tensor [N]; +inf where `x` equals `ref`.
    """
    x, ref = _pair(x, ref)
    mse = (x - ref).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(_check_range(data_range) ** 2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per item: 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
    K2 = 0.03, valid convolution (no padding), averaged over channels and window positions.

    `x`, `ref`: [N, C, H, W], H and W at least 11; `data_range`: max - min of the value range (2 for [-1, 1]).
    Returns a float64 Tensor [N]; exactly 1 where `x` equals `ref`.
    """
    x, ref = _pair(x, ref)
    n, c, h, w = x.shape
    if min(h, w) < 11:
        raise CoupledError(f"ssim needs images of at least 11x11 pixels (its window), got {h}x{w}; upsample them or compare with psnr")
    L = _check_range(data_range)
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    win = _gaussian_window().to(x.device).expand(c, 1, 11, 11)
    # One depthwise convolution for all five local moments: [x, y, x^2, y^2, xy] stacked on the channel axis.
    stats = F.conv2d(torch.cat([x, ref, x * x, ref * ref, x * ref]), win, groups=c).view(5, n, c, h - 10, w - 10)
    mx, my, xx, yy, xy = stats
    vx, vy, cov = xx - mx * mx, yy - my * my, xy - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(dim=1)
