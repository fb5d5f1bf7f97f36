"""A data set's 2-D power spectrum as the Gaussian laboratory's circulant prior, and how circulant the data are.

Images x [B, (C,) H, W] are read in their own units (MNIST in [-1, 1]); nothing is centred unless asked, since
the VP process diffuses the raw pixels towards N(0, I): the prior the laboratory models is N(0, M) with M the
second-moment matrix E[x x^T], replaced by its circulant part. In the unitary 2-D DFT basis (X = fft2(x, 'ortho'))
a circulant M is diagonal with eigenvalues lam_k = E|X_k|^2, the power spectrum; the coordinates of the
laboratory are then the H W complex bins, each with `counts` 1 (the real and imaginary parts of bins k and -k
carry the same energy as two real coordinates of variance lam_k), so `power_spectrum_2d(x)` and
`torch.ones(H W)` go straight into `spectral.sampler_transfer`, `w2_to_data` and `design.design_grid`, and a
circulant blur's gains `fft2(kernel).real` (flattened) are its `h`.
"""

from __future__ import annotations

import torch

from ..errors import CoupledError

__all__ = ["power_spectrum_2d", "fourier_moment", "circulant_report", "denoising_error"]

_f64 = torch.float64


def _images(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dim() == 4:
        if x.shape[1] != 1:
            raise CoupledError(f"images [B, C, H, W] need one channel here, got C = {x.shape[1]}; pass one channel")
        x = x[:, 0]
    if x.dim() != 3 or x.shape[0] < 2:
        raise CoupledError(f"images must be [B, H, W] or [B, 1, H, W] with B >= 2, got {tuple(x.shape)}")
    return x.to(_f64)


def power_spectrum_2d(images, *, centred: bool = False) -> torch.Tensor:
    """lam [H W] (float64, row-major bins of fft2): E|fft2(x, 'ortho')_k|^2 over the images (the second moment, or
    with `centred` the covariance's Fourier diagonal). Its sum is E||x||^2 (Parseval)."""
    x = _images(images)
    if centred:
        x = x - x.mean(0)
    return (torch.fft.fft2(x, norm="ortho").abs() ** 2).mean(0).flatten()


def fourier_moment(images, *, centred: bool = False) -> torch.Tensor:
    """The second-moment (or covariance) matrix in the unitary 2-D DFT basis, complex [H W, H W]: F M F^H, whose
    diagonal is `power_spectrum_2d`; it is diagonal exactly when M is circulant (the data are stationary on the torus)."""
    x = _images(images)
    if centred:
        x = x - x.mean(0)
    X = torch.fft.fft2(x, norm="ortho").flatten(1)  # [B, H W]
    return X.T @ X.conj() / X.shape[0]


def circulant_report(images, *, centred: bool = False) -> dict:
    """How far the images' second moment M is from its circulant part C (same diagonal in the DFT basis):

    - `offdiagonal_energy`: ||F M F^H - diag||_F^2 / ||M||_F^2, the fraction of M's energy off the Fourier diagonal
      (0 for stationary data);
    - `w2_gaussian`: W2 between N(0, M) and N(0, C), in the images' units (what replacing the data's Gaussian by
      the circulant one moves), and `rms_norm` = sqrt(tr M) for scale: W2^2 = 2 tr C - 2 tr (C^1/2 M C^1/2)^1/2;
    - `w2_eigen`: the W2 between N(0, M) and N(0, M's own spectrum in M's eigenbasis) is 0, so also the W2 between
      N(0, C) and the Gaussian with M's eigenvalues in C's basis, sqrt(sum (sqrt(sort lam) - sqrt(sort eig M))^2):
      the part of the mismatch that is a wrong spectrum rather than a wrong basis.
    """
    Mf = fourier_moment(images, centred=centred)
    lam = Mf.diagonal().real.clamp(min=0)
    total = float((Mf.abs() ** 2).sum())
    off = total - float((Mf.diagonal().abs() ** 2).sum())
    d = lam.sqrt()
    B = d[:, None] * Mf * d[None, :]
    root = torch.linalg.eigvalsh(B).clamp(min=0).sqrt().sum()
    w2 = float((2 * lam.sum() - 2 * root).clamp(min=0).sqrt())
    eig = torch.linalg.eigvalsh(Mf).clamp(min=0)
    w2_eigen = float(((lam.sort().values.sqrt() - eig.sort().values.sqrt()) ** 2).sum().sqrt())
    return {"offdiagonal_energy": off / total, "w2_gaussian": w2, "w2_eigen": w2_eigen,
            "rms_norm": float(lam.sum().sqrt()), "centred": centred}


def denoising_error(denoiser, process, signals, times, *, generator: torch.Generator | None = None,
                    batch: int = 250, **conditioning) -> torch.Tensor:
    """E||denoiser(x_t, t) - x0||^2 per item (summed over its coordinates) at each training time of `times`
    (float64 [len(times)]): every signal noised once per time with noise drawn from `generator` for the whole set
    at once (so `batch` changes the memory, not the numbers), under
    `torch.no_grad`. With the exact denoiser of a Gaussian this is `spectral.gaussian_mmse`; with a trained one
    it is that network's error per noise level, what `design.effective_spectrum` fits. `conditioning`: per-item
    tensors [B, ...] passed to the denoiser batch by batch (e.g. `observation=d, logits=None` for an
    observation-conditioned signal net: its error given the observation); anything else is passed as is."""
    x0 = torch.as_tensor(signals)
    if x0.dim() < 2 or x0.shape[0] < 1:
        raise CoupledError(f"signals must be [B, ...] with B >= 1, got {tuple(x0.shape)}")
    for name, value in conditioning.items():
        if torch.is_tensor(value) and value.shape[:1] != x0.shape[:1]:
            raise CoupledError(f"conditioning {name!r} has {value.shape[0]} items for {x0.shape[0]} signals; "
                               "pass one per signal")
    out = []
    with torch.no_grad():
        for t in times:
            total = 0.0
            noise_all = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
            for b in range(0, x0.shape[0], batch):
                x, noise = x0[b:b + batch], noise_all[b:b + batch]
                tt = torch.full((x.shape[0],), int(t), dtype=torch.long)
                cond = {k: v[b:b + batch] if torch.is_tensor(v) else v for k, v in conditioning.items()}
                x0_hat = denoiser(process.add_noise(x, tt, noise), tt, **cond)
                total += float(((x0_hat.double() - x.double()) ** 2).flatten(1).sum(1).sum())
            out.append(total / x0.shape[0])
    return torch.tensor(out, dtype=_f64)
