"""Samplers: plain functions over a denoiser callable, a process, a time grid, a state and a generator.

A denoiser is any callable `denoiser(x_t, t) -> x0_hat` with `t` a float tensor [B]; conditioning is bound
by the caller (a closure). Each step function moves one state from time `t` to `t_next` and returns
`(x_next, x0_hat)`; none keeps state between calls, so chains can be started, stepped and restarted freely.

- `ddim_step` (VP; eta in [0, 1], eta = 1 is DDPM-like noise on the DDIM grid) and `ddpm_step` (VP,
  ancestral, "fixed_small" variance) follow diffusers' DDIMScheduler / DDPMScheduler step formulas.
  `ddim_step` on a centred process is the same construction for the OU-VE marginal x_t = a x0 + b c + sigma eps:
  eps is read off x0_hat and x_next = a' x0_hat + b' c + sqrt(sigma'^2 - s^2) eps + s z, with s = eta times the
  posterior std of q(x_next | x_t, x0) (DDIM, Song et al. 2021, eq. 12, carried to the OU transition). At eta = 0
  it is deterministic and its terminal step (sigma' = 0) returns x0_hat, so one step is the one-step estimate and
  a few steps never end on injected noise (the pc sampler's reverse-SDE Euler step does at 1-2 steps).
- `dps_step`, `pigdm_step`, `ddnm_step` (VP): the zero-shot posterior samplers for a linear measurement
  (`operators.Measurement`, passed as `measurement=`): DDIM / DDPM steps around the measurement terms of
  `zeroshot` (DPS, PiGDM, DDNM+; the anchors and what is taken from each are in that module's docstring).
- `pc_step` (centred process): one annealed-Langevin corrector step per `corrector_steps`, then a
  reverse-diffusion (Euler-Maruyama) predictor step, as SGMSE+'s PC sampler; its x_next at the terminal
  step is the predictor's mean (SGMSE+'s `denoise=True`).
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import CoupledError
from .processes import CentredProcess, VPProcess, _bcast, randn
from .zeroshot import ddnm_projection, ddnm_scalings, dps_guidance, pigdm_guided_x0

__all__ = [
    "SAMPLERS", "SAMPLER_OPTIONS", "ZERO_SHOT", "ddim_step", "ddpm_step", "pc_step", "dps_step", "pigdm_step",
    "ddnm_step", "sample", "step", "calls_per_step", "sampler_options",
]

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _batch_t(t, x):
    return torch.as_tensor(t, dtype=torch.float32, device=x.device).reshape(-1).expand(x.shape[0])


def _coefficients(process, t, x):
    """(a, b, sigma) broadcast against x, in float64 (steps divide by small numbers near the prior)."""
    return tuple(_bcast(c, x, torch.float64) for c in process.coefficients(t))


@torch.no_grad()
def ddim_step(denoiser: Denoise, process, x, t, t_next, *, generator=None, eta: float = 0.0, center=None):
    """One DDIM step (Song et al. eq. 12) from `t` to `t_next`; x0_hat is re-expressed as eps for the direction.
    On a centred process: `_centred_ddim_step`."""
    if isinstance(process, CentredProcess):
        return _centred_ddim_step(denoiser, process, x, t, t_next, generator=generator, eta=eta, center=center)
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


def _centred_ddim_step(denoiser: Denoise, process: CentredProcess, x, t, t_next, *, generator=None, eta=0.0,
                       center=None):
    """DDIM on the OU-VE marginal x_t = a x0 + (1 - a) center + sigma eps (module docstring)."""
    if center is None:
        raise CoupledError("the centred sampler needs the chain's center (its observation)")
    tb, nb = _batch_t(t, x), _batch_t(t_next, x)
    x0 = denoiser(x, tb)
    a_t, b_t, s_t = _coefficients(process, tb, x)
    a_n, b_n, s_n = _coefficients(process, nb, x)
    c = center.double()
    eps = (x.double() - a_t * x0.double() - b_t * c) / s_t
    r = a_t / a_n  # the OU transition x_t = r x_n + (1 - r) c + noise of variance s_t^2 - r^2 s_n^2
    post_var = (s_n * s_n * (s_t * s_t - r * r * s_n * s_n) / (s_t * s_t)).clamp(min=0)
    std = eta * post_var.sqrt()
    x_next = a_n * x0.double() + b_n * c + (s_n * s_n - std * std).clamp(min=0).sqrt() * eps
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
    denoise_final: bool = False,
):
    """Annealed-Langevin corrector(s) then a reverse-diffusion predictor step of the OU-VE SDE (SGMSE+).

    `denoise_final` is read by the caller (`Chain.step`, `sample`): on the grid's last step the trajectory ends on
    that step's x0_hat instead of the predictor's state, which at few steps is one long Euler step plus the noise
    it injects (Song et al. 2021's `denoise` option, with the denoiser's estimate as the mean)."""
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


def _scalar_coefficients(process, t, x):
    """(a, sigma) at time t as Python floats (one time per batch: the grid's)."""
    a, _, s = process.coefficients(_batch_t(t, x)[:1])
    return float(a[0]), float(s[0])


def _need(measurement, sampler):
    if measurement is None:
        raise CoupledError(f"the zero-shot sampler {sampler!r} needs a measurement (operators.Measurement): bind it "
                           "with Chain.with_measurement, or pass measurement= to run_method")
    return measurement


@torch.no_grad()
def dps_step(denoiser: Denoise, process: VPProcess, x, t, t_next, *, generator=None, center=None, measurement=None,
             eta: float = 1.0, weight: float = 0.5):
    """One DPS step (Chung et al. 2023, Algorithm 1): the DDIM step (eta 1: ancestral, as the paper's DDPM) from
    x0_hat, then x_next -= weight * grad_{x_t} ||y - A x0_hat(x_t)|| (per item; `weight` is zeta')."""
    m = _need(measurement, "dps")
    tb = _batch_t(t, x)
    x0, grad = dps_guidance(denoiser, x, tb, m)
    x_next, _ = ddim_step(lambda *_: x0, process, x, t, t_next, generator=generator, eta=eta)
    return x_next - weight * grad.to(x_next.dtype), x0


@torch.no_grad()
def pigdm_step(denoiser: Denoise, process: VPProcess, x, t, t_next, *, generator=None, center=None, measurement=None,
               eta: float = 1.0, weight: float = 1.0, prior_variance: float = 1.0, clip=None):
    """One PiGDM step (Song et al. 2023, eq. 7-8): the DDIM step from x0_hat + weight s_t^2 / a_t g, g the
    pseudo-inverse-guided likelihood score (`zeroshot.pigdm_guided_x0`); its eps is re-derived from that x0_hat.
    `clip` (lo, hi) clamps the guided x0_hat to the data range (diffusers' clip_sample): a trained network's
    Jacobian is not the ideal one, and at high noise s_t^2 / a_t magnifies its error (on MNIST inpainting,
    20 steps, 100 digits: accuracy 0.55 unclipped, 0.86 clipped)."""
    m = _need(measurement, "pigdm")
    a, s = _scalar_coefficients(process, t, x)
    x0, _ = pigdm_guided_x0(denoiser, x, _batch_t(t, x), a, s, m, weight, prior_variance)
    if clip is not None:
        x0 = x0.clamp(*clip)
    return ddim_step(lambda *_: x0, process, x, t, t_next, generator=generator, eta=eta)


@torch.no_grad()
def ddnm_step(denoiser: Denoise, process: VPProcess, x, t, t_next, *, generator=None, center=None, measurement=None,
              weight: float = 1.0):
    """One DDNM (noise-free) / DDNM+ (sigma_y > 0) step (Wang et al. 2023, Algorithm 1, eq. 17-19): the
    range-space correction of x0_hat, then the DDPM step with DDNM+'s shrunk fresh noise."""
    m = _need(measurement, "ddnm")
    x0 = denoiser(x, _batch_t(t, x))
    a_t, _ = _scalar_coefficients(process, t, x)
    a_n, _ = _scalar_coefficients(process, t_next, x)
    ab_t, ab_n = a_t * a_t, a_n * a_n
    beta = 1 - ab_t / ab_n
    c_x = (ab_t / ab_n) ** 0.5 * (1 - ab_n) / (1 - ab_t)
    c_0 = ab_n ** 0.5 * beta / (1 - ab_t)
    gamma = max((1 - ab_n) / (1 - ab_t) * beta, 0.0) ** 0.5 if float(t_next) >= 0 else 0.0
    lam, phi = ddnm_scalings(c_0, gamma, m.noise_std, weight)
    x0_hat = ddnm_projection(x0, m, lam, weight)
    x_next = c_x * x.double() + c_0 * x0_hat.double()
    if float(t_next) >= 0:
        z = randn(x.shape, generator, device=x.device, dtype=x.dtype)
        x_next = x_next + (gamma * z.double() if m.noise_std == 0 else m.operator.spectral(z.double(), phi))
    return x_next.to(x.dtype), x0_hat


SAMPLERS = {"ddim": (ddim_step, (VPProcess, CentredProcess)), "ddpm": (ddpm_step, VPProcess), "pc": (pc_step, CentredProcess),
            "dps": (dps_step, VPProcess), "pigdm": (pigdm_step, VPProcess), "ddnm": (ddnm_step, VPProcess)}
# the options each sampler takes, with their defaults; any other option is an error
SAMPLER_OPTIONS = {"ddim": {"eta": 0.0}, "ddpm": {}, "pc": {"corrector_steps": 1, "snr": 0.5, "denoise_final": False},
                   "dps": {"eta": 1.0, "weight": 0.5}, "pigdm": {"eta": 1.0, "weight": 1.0, "prior_variance": 1.0, "clip": None},
                   "ddnm": {"weight": 1.0}}
# the zero-shot posterior samplers: they take a `measurement` (bound to their Chain per batch)
ZERO_SHOT = ("dps", "pigdm", "ddnm")


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
        hint = "ddim or ddpm" if isinstance(process, VPProcess) else "pc or ddim"
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
    weight, prior_variance = options.get("weight"), options.get("prior_variance")
    if weight is not None:
        values = list(weight) if isinstance(weight, (list, tuple)) else [weight]
        if not values or not all(_is_number(w) and 0 <= w < float("inf") for w in values):
            raise CoupledError(f"weight (the zero-shot guidance weight) must be a finite number >= 0, or one per step, "
                               f"got {weight!r}")
    if prior_variance is not None and not (_is_number(prior_variance) and 0 < prior_variance < float("inf")):
        raise CoupledError(f"prior_variance must be a finite number > 0, got {prior_variance!r}")
    final = options.get("denoise_final")
    if final is not None and not isinstance(final, bool):
        raise CoupledError(f"denoise_final must be true or false, got {final!r}")
    clip = options.get("clip")
    if clip is not None and not (isinstance(clip, (list, tuple)) and len(clip) == 2 and all(map(_is_number, clip))
                                 and clip[0] < clip[1]):
        raise CoupledError(f"clip must be (lo, hi) with lo < hi, or None, got {clip!r}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def calls_per_step(sampler: str, options: dict) -> int:
    """Denoiser calls one step of `sampler` makes."""
    return 1 + options.get("corrector_steps", 1) if sampler == "pc" else 1


def step(sampler: str, denoiser: Denoise, process, x, t, t_next, *, generator=None, center=None, measurement=None,
         **options):
    """Dispatch one step of the named sampler (`measurement` goes to the zero-shot ones)."""
    if sampler in ZERO_SHOT:
        options["measurement"] = measurement
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
    measurement=None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    **options,
) -> torch.Tensor:
    """Run `sampler` from state `x` at grid[0] down to the grid's terminal time; returns the final state.

    `callback(i, x_next, x0_hat)` is called after each step i. `measurement`: the zero-shot samplers' observation;
    a zero-shot `weight` may be one number per step.
    """
    check_sampler(sampler, process, options)
    weight = options.get("weight")
    for i in range(len(grid) - 1):
        if isinstance(weight, (list, tuple)):
            options["weight"] = weight[i]
        x, x0 = step(sampler, denoiser, process, x, grid[i], grid[i + 1], generator=generator, center=center,
                     measurement=measurement, **options)
        if options.get("denoise_final") and i == len(grid) - 2:
            x = x0
        if callback is not None:
            callback(i, x, x0)
    return x
