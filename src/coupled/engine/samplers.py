"""Samplers: plain functions over a denoiser callable, a process, a time grid, a state and a generator.

A denoiser is any callable `denoiser(x_t, t) -> x0_hat` with `t` a float tensor [B]; conditioning is bound
by the caller (a closure). Each step function moves one state from time `t` to `t_next` and returns
`(x_next, x0_hat)`; none keeps state between calls, so chains can be started, stepped and restarted freely.

- `ddim_step` (VP; eta in [0, 1], eta = 1 is DDPM-like noise on the DDIM grid) and `ddpm_step` (VP,
  ancestral, "fixed_small" variance) follow diffusers' DDIMScheduler / DDPMScheduler step formulas.
- `pc_step` (centred process): one annealed-Langevin corrector step per `corrector_steps`, then a
  reverse-diffusion (Euler-Maruyama) predictor step, as SGMSE+'s PC sampler; its x_next at the terminal
  step is the predictor's mean (SGMSE+'s `denoise=True`).
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import CoupledError
from .processes import CentredProcess, VPProcess, _bcast, randn

__all__ = [
    "SAMPLERS", "SAMPLER_OPTIONS", "ddim_step", "ddpm_step", "pc_step", "sample", "step", "calls_per_step",
    "sampler_options",
]

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _batch_t(t, x):
    return torch.as_tensor(t, dtype=torch.float32, device=x.device).reshape(-1).expand(x.shape[0])


def _coefficients(process, t, x):
    """(a, b, sigma) broadcast against x, in float64 (steps divide by small numbers near the prior)."""
    return tuple(_bcast(c, x, torch.float64) for c in process.coefficients(t))


@torch.no_grad()
def ddim_step(denoiser: Denoise, process: VPProcess, x, t, t_next, *, generator=None, eta: float = 0.0, center=None):
    """One DDIM step (Song et al. eq. 12) from `t` to `t_next`; x0_hat is re-expressed as eps for the direction."""
    tb, nb = _batch_t(t, x), _batch_t(t_next, x)
    x0 = denoiser(x, tb)
    a_t, _, s_t = _coefficients(process, tb, x)
    a_n, _, _ = _coefficients(process, nb, x)
    ab_t, ab_n = a_t * a_t, a_n * a_n
    eps = (x.double() - a_t * x0.double()) / s_t
    std = eta * ((1 - ab_n) / (1 - ab_t) * (1 - ab_t / ab_n)).clamp(min=0).sqrt()
    x_next = a_n * x0.double() + (1 - ab_n - std * std).clamp(min=0).sqrt() * eps
    if eta > 0:
        x_next = x_next + std * randn(x.shape, generator, device=x.device, dtype=x.dtype).double()
    return x_next.to(x.dtype), x0


@torch.no_grad()
def ddpm_step(denoiser: Denoise, process: VPProcess, x, t, t_next, *, generator=None, center=None):
    """One ancestral DDPM step: the Gaussian q(x_{t_next} | x_t, x0_hat), noise-free into clean data."""
    tb, nb = _batch_t(t, x), _batch_t(t_next, x)
    x0 = denoiser(x, tb)
    a_t, _, _ = _coefficients(process, tb, x)
    a_n, _, _ = _coefficients(process, nb, x)
    ab_t, ab_n = a_t * a_t, a_n * a_n
    alpha = ab_t / ab_n
    beta = 1 - alpha
    mean = (ab_n.sqrt() * beta / (1 - ab_t)) * x0.double() + (alpha.sqrt() * (1 - ab_n) / (1 - ab_t)) * x.double()
    if float(t_next) >= 0:
        var = ((1 - ab_n) / (1 - ab_t) * beta).clamp(min=1e-20)
        mean = mean + var.sqrt() * randn(x.shape, generator, device=x.device, dtype=x.dtype).double()
    return mean.to(x.dtype), x0


def _score(process: CentredProcess, x, x0, tb, center):
    a, b, s = (_bcast(c, x) for c in process.coefficients(tb))
    return -(x - a * x0 - b * center) / (s * s)


@torch.no_grad()
def pc_step(
    denoiser: Denoise,
    process: CentredProcess,
    x,
    t,
    t_next,
    *,
    generator=None,
    center=None,
    corrector_steps: int = 1,
    snr: float = 0.5,
):
    """Annealed-Langevin corrector(s) then a reverse-diffusion predictor step of the OU-VE SDE (SGMSE+)."""
    if center is None:
        raise CoupledError("the centred sampler needs the chain's center (its observation)")
    tb = _batch_t(t, x)
    _, _, s = (_bcast(c, x) for c in process.coefficients(tb))
    for _ in range(corrector_steps):
        score = _score(process, x, denoiser(x, tb), tb, center)
        step_size = (snr * s) ** 2 * 2
        x = x + step_size * score + (2 * step_size).sqrt() * randn(x.shape, generator, device=x.device, dtype=x.dtype)
    x0 = denoiser(x, tb)
    score = _score(process, x, x0, tb, center)
    dt = float(t_next) - float(t)  # negative: the reverse SDE runs backwards in time
    g = _bcast(process.diffusion(tb), x)
    mean = x + (process.drift(x, tb, center) - g * g * score) * dt
    if float(t_next) > 0:
        mean = mean + g * (-dt) ** 0.5 * randn(x.shape, generator, device=x.device, dtype=x.dtype)
    return mean, x0


SAMPLERS = {"ddim": (ddim_step, VPProcess), "ddpm": (ddpm_step, VPProcess), "pc": (pc_step, CentredProcess)}
# the options each sampler takes, with their defaults; any other option is an error
SAMPLER_OPTIONS = {"ddim": {"eta": 0.0}, "ddpm": {}, "pc": {"corrector_steps": 1, "snr": 0.5}}


def sampler_options(sampler: str) -> dict:
    """The options `sampler` takes, with their defaults (a new dict)."""
    if sampler not in SAMPLERS:
        raise CoupledError(f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    return dict(SAMPLER_OPTIONS[sampler])


def check_sampler(sampler: str, process, options: dict) -> None:
    """Reject an unknown sampler, a sampler of the wrong process family, options it does not take, or
    option values it cannot run with."""
    valid = sampler_options(sampler)
    family = SAMPLERS[sampler][1]
    if not isinstance(process, family):
        hint = "ddim or ddpm" if isinstance(process, VPProcess) else "pc"
        raise CoupledError(f"sampler {sampler!r} does not run on a {process.kind} process; use {hint}")
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise CoupledError(f"sampler {sampler!r} does not take option(s) {', '.join(unknown)}; "
                           f"its options: {', '.join(valid) or 'none'}")
    eta, corrector_steps, snr = (options.get(k) for k in ("eta", "corrector_steps", "snr"))
    if eta is not None and not (_is_number(eta) and 0 <= eta <= 1):
        raise CoupledError(f"eta must lie in [0, 1], got {eta!r}")
    if corrector_steps is not None and (isinstance(corrector_steps, bool) or not isinstance(corrector_steps, int)
                                        or corrector_steps < 0):
        raise CoupledError(f"corrector_steps must be a non-negative integer, got {corrector_steps!r}")
    if snr is not None and not (_is_number(snr) and 0 < snr < float("inf")):
        raise CoupledError(f"snr (the corrector's signal-to-noise ratio) must be a finite number > 0, got {snr!r}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def calls_per_step(sampler: str, options: dict) -> int:
    """Denoiser calls one step of `sampler` makes."""
    return 1 + options.get("corrector_steps", 1) if sampler == "pc" else 1


def step(sampler: str, denoiser: Denoise, process, x, t, t_next, *, generator=None, center=None, **options):
    """Dispatch one step of the named sampler."""
    return SAMPLERS[sampler][0](denoiser, process, x, t, t_next, generator=generator, center=center, **options)


@torch.no_grad()
def sample(
    denoiser: Denoise,
    process,
    grid: torch.Tensor,
    x: torch.Tensor,
    *,
    sampler: str = "ddim",
    generator=None,
    center=None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    **options,
) -> torch.Tensor:
    """Run `sampler` from state `x` at grid[0] down to the grid's terminal time; returns the final state.

    `callback(i, x_next, x0_hat)` is called after each step i.
    """
    check_sampler(sampler, process, options)
    for i in range(len(grid) - 1):
        x, x0 = step(sampler, denoiser, process, x, grid[i], grid[i + 1], generator=generator, center=center, **options)
        if callback is not None:
            callback(i, x, x0)
    return x
