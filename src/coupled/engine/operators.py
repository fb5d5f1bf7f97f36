"""Linear degradations d = A x + n (n Gaussian, std `noise_std`) for the zero-shot posterior samplers.

An operator acts on batches [B, ...] and knows four things, the ones DDRM, DDNM, PiGDM and DPS ask of one:
`A(x)` (`forward`, or calling it), `A^T y` (`adjoint`), `A^+ y` (`pinv`, the Moore-Penrose pseudo-inverse, with
singular values below `rcond` times the largest treated as 0), and `spectral(x, fn)` = V diag(fn(s)) V^T x,
where A = U diag(s) V^T is a singular value decomposition and s is 0 on A's null space: a function of A^T A
applied in its eigenbasis (DDRM, Kawar et al. 2022, works in that basis; DDNM+'s per-singular-value scalings
Sigma_t and Phi_t and PiGDM's (r^2 A A^T + sigma_y^2 I)^-1 are such functions). The same `fn` is used on the
same s everywhere, so A A^+ A = A holds to `rcond` and A^+ is consistent with `spectral`.

Built-ins: `Identity` (denoising), `Mask` (inpainting; per item or shared), `CirculantBlur` (a Gaussian kernel
applied by FFT with periodic boundaries, so it is exactly circulant and diagonal in the Fourier basis),
`AreaDownsample` (average over k x k blocks: the "2x downsampling" of DDNM's and DPS's super-resolution with
k = 2), `Separable` (x -> R x C^T for any matrices R, C: reflect-padded blurs, adaptive area pooling to any
size, or pooling followed by upsampling back to the signal's grid), and `Zero` (A = 0: no information, the
unconditional limit). `Measurement(operator, y, noise_std)` is one batch's observation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import CoupledError

__all__ = ["LinearOperator", "Identity", "Zero", "Mask", "CirculantBlur", "AreaDownsample", "Separable",
           "Measurement", "gaussian_kernel_1d"]


class LinearOperator:
    """Base class: subclasses define `forward`, `adjoint`, `pinv` and `spectral` on batches [B, ...]."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def pinv(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def spectral(self, x: torch.Tensor, fn) -> torch.Tensor:  # pragma: no cover - interface
        """V diag(fn(s)) V^T x: `fn` maps a tensor of singular values (0 on the null space) to multipliers."""
        raise NotImplementedError

    def batch(self, start: int, stop: int) -> "LinearOperator":
        """The operator of items [start, stop) of a per-item operator (itself when it is shared)."""
        return self


class Identity(LinearOperator):
    """A = I (denoising): every singular value is 1."""

    def forward(self, x):
        return x

    adjoint = pinv = forward

    def spectral(self, x, fn):
        return fn(torch.ones((), dtype=x.dtype, device=x.device)) * x


class Zero(LinearOperator):
    """A = 0: the observation says nothing; every zero-shot sampler is then its unconditional sampler."""

    def forward(self, x):
        return torch.zeros_like(x)

    adjoint = pinv = forward

    def spectral(self, x, fn):
        return fn(torch.zeros((), dtype=x.dtype, device=x.device)) * x


class Mask(LinearOperator):
    """Inpainting: A = diag(mask) with a 0/1 `mask` broadcastable to the signal ([B, 1, H, W] per item, or
    [1, C, H, W] shared). The measurement keeps the signal's shape (0 where nothing is seen), so A = A^T = A^+."""

    def __init__(self, mask: torch.Tensor):
        mask = torch.as_tensor(mask)
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise CoupledError("an inpainting mask must hold 0 (missing) and 1 (seen) only")
        self.mask = mask.float()

    def forward(self, x):
        return x * self.mask.to(x.device, x.dtype)

    adjoint = pinv = forward

    def spectral(self, x, fn):
        s = self.mask.to(x.device, x.dtype)
        return fn(s) * x

    def batch(self, start, stop):
        return self if self.mask.shape[0] == 1 else Mask(self.mask[start:stop])


def gaussian_kernel_1d(sigma: float, radius: int | None = None) -> torch.Tensor:
    """A normalised 1-D Gaussian of std `sigma` over [-radius, radius] (default ceil(3 sigma)), float64."""
    r = math.ceil(3 * sigma) if radius is None else radius
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


class CirculantBlur(LinearOperator):
    """A Gaussian blur of std `sigma` pixels with periodic boundaries on `size` (H, W), applied by FFT: A is
    circulant, diagonal in the 2-D Fourier basis with gains h = FFT(kernel) (real and positive: the kernel is
    symmetric), so A^T = A, the singular values are |h|, and A^+ divides by h where |h| > rcond max|h|."""

    def __init__(self, sigma: float, size: tuple[int, int], rcond: float = 1e-4):
        if not sigma > 0:
            raise CoupledError(f"a blur's sigma must be > 0, got {sigma!r}")
        h, w = size
        kernel = torch.zeros(h, w, dtype=torch.float64)
        k = gaussian_kernel_1d(sigma)
        r = (len(k) - 1) // 2
        for i, ki in enumerate(k):  # the kernel wrapped around the torus (periodic boundaries)
            for j, kj in enumerate(k):
                kernel[(i - r) % h, (j - r) % w] += ki * kj
        gains = torch.fft.fft2(kernel).real
        self.sigma, self.size, self.rcond = float(sigma), (h, w), rcond
        self.gains = gains
        self.s = torch.where(gains.abs() > rcond * gains.abs().max(), gains.abs(), torch.zeros_like(gains))

    def _apply(self, x, mult):
        X = torch.fft.fft2(x.double())
        return torch.fft.ifft2(X * mult.to(x.device)).real.to(x.dtype)

    def forward(self, x):
        return self._apply(x, self.gains)

    adjoint = forward

    def pinv(self, y):
        inv = torch.where(self.s > 0, 1 / torch.where(self.s > 0, self.gains, torch.ones_like(self.gains)),
                          torch.zeros_like(self.gains))
        return self._apply(y, inv)

    def spectral(self, x, fn):
        return self._apply(x, fn(self.s))


class AreaDownsample(LinearOperator):
    """Average over `factor` x `factor` blocks ([.., H, W] -> [.., H/k, W/k]; k divides H and W). A A^T = I / k^2,
    so every singular value is 1/k; A^T spreads a coarse value over its block divided by k^2; A^+ = k^2 A^T
    repeats it (nearest-neighbour upsampling); the range of A^+ is the block-constant images."""

    def __init__(self, factor: int = 2):
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise CoupledError(f"the downsampling factor must be an integer >= 1, got {factor!r}")
        self.factor = factor

    def forward(self, x):
        k = self.factor
        if x.shape[-1] % k or x.shape[-2] % k:
            raise CoupledError(f"AreaDownsample({k}) needs H and W divisible by {k}, got {tuple(x.shape[-2:])}")
        return x.unflatten(-1, (-1, k)).unflatten(-3, (-1, k)).mean(dim=(-1, -3))

    def pinv(self, y):
        k = self.factor
        return y.repeat_interleave(k, dim=-1).repeat_interleave(k, dim=-2)

    def adjoint(self, y):
        return self.pinv(y) / self.factor ** 2

    def spectral(self, x, fn):
        block_mean = self.pinv(self.forward(x))  # the projection A^+ A onto the row space
        s = torch.full((), 1.0 / self.factor, dtype=x.dtype, device=x.device)
        return fn(s) * block_mean + fn(torch.zeros_like(s)) * (x - block_mean)


class Separable(LinearOperator):
    """x [.., H, W] -> R x C^T with R [H', H], C [W', W]: any operator separable over rows and columns. Its SVD is
    the Kronecker product of the factors' (singular values s_R[i] s_C[j]), computed once in float64."""

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, rcond: float = 1e-6):
        R, C = torch.as_tensor(rows, dtype=torch.float64), torch.as_tensor(cols, dtype=torch.float64)
        if R.dim() != 2 or C.dim() != 2:
            raise CoupledError("Separable needs two matrices: rows [H', H] and cols [W', W]")
        self.R, self.C, self.rcond = R, C, rcond
        Ur, sr, Vrh = torch.linalg.svd(R, full_matrices=True)
        Uc, sc, Vch = torch.linalg.svd(C, full_matrices=True)
        s_r = torch.zeros(R.shape[1], dtype=torch.float64)
        s_r[: len(sr)] = sr
        s_c = torch.zeros(C.shape[1], dtype=torch.float64)
        s_c[: len(sc)] = sc
        s = s_r[:, None] * s_c[None, :]
        self.s = torch.where(s > rcond * s.max(), s, torch.zeros_like(s))  # [H, W], on the V_R x V_C basis
        self.Vr, self.Vc = Vrh.T, Vch.T  # [H, H], [W, W]
        self.Ur, self.Uc = Ur, Uc
        inv = torch.where(self.s > 0, 1 / torch.where(self.s > 0, s, torch.ones_like(s)), torch.zeros_like(s))
        self._inv = inv  # [H, W]; A^+ = V diag(inv) U^T on the leading (H', W') block of U

    @staticmethod
    def _mm(M, x, N):
        """M x N^T over the last two axes, in float64."""
        return (M.to(x.device) @ x.double() @ N.to(x.device).T)

    def forward(self, x):
        return self._mm(self.R, x, self.C).to(x.dtype)

    def adjoint(self, y):
        return self._mm(self.R.T, y, self.C.T).to(y.dtype)

    def pinv(self, y):
        m, n = min(self.R.shape), min(self.C.shape)  # the diagonal block of Sigma^+ that can be non-zero
        z = self._mm(self.Ur.T, y, self.Uc.T)  # U^T y: [.., H', W']
        core = torch.zeros(*y.shape[:-2], self.R.shape[1], self.C.shape[1], dtype=torch.float64, device=y.device)
        core[..., :m, :n] = z[..., :m, :n] * self._inv[:m, :n].to(y.device)
        return self._mm(self.Vr, core, self.Vc).to(y.dtype)

    def spectral(self, x, fn):
        z = self._mm(self.Vr.T, x, self.Vc.T)
        return self._mm(self.Vr, z * fn(self.s).to(x.device), self.Vc).to(x.dtype)


@dataclass(frozen=True)
class Measurement:
    """One batch's observation for a zero-shot chain: `y` = A x + n with A `operator` and n ~ N(0, noise_std^2)."""

    operator: LinearOperator
    y: torch.Tensor
    noise_std: float = 0.0

    def __post_init__(self):
        if not isinstance(self.operator, LinearOperator):
            raise CoupledError(f"a Measurement needs a LinearOperator, got {type(self.operator).__name__}")
        if not (isinstance(self.noise_std, (int, float)) and self.noise_std >= 0):
            raise CoupledError(f"noise_std must be a number >= 0, got {self.noise_std!r}")

    def batch(self, start: int, stop: int) -> "Measurement":
        """The measurement of items [start, stop)."""
        return Measurement(self.operator.batch(start, stop), self.y[start:stop], self.noise_std)
