"""Designs from the closed form: time grids (Benita, Elad, Keshet, arXiv 2502.00180, section 5: the schedule
minimising W2 between the generated and the data distribution) and per-step guidance weights of zero-shot
samplers (arXiv 2602.07715: the weights minimising the averaged W2 to the true posterior, or, for PSNR, the
expected squared error to the clean signal). Both minimise the differentiable closed form of `spectral` with
torch's L-BFGS and keep the best point seen.
"""

from __future__ import annotations

import math

import torch

from ..engine.processes import VPProcess
from ..errors import CoupledError
from .spectral import gaussian_mmse, grid_alpha_bar, mse_to_truth, sampler_transfer, w2_to_data, w2_to_posterior

__all__ = ["design_guidance", "design_alpha_bar", "design_grid", "grid_w2", "effective_spectrum"]

_f64 = torch.float64


def _minimise(loss_fn, params: torch.Tensor, iters: int) -> torch.Tensor:
    """L-BFGS (strong Wolfe) on `loss_fn(params)`; returns the best parameters evaluated (never worse than the start)."""
    params = params.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([params], lr=1, max_iter=iters, line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                            tolerance_change=1e-14, history_size=20)
    best = [float("inf"), params.detach().clone()]

    def closure():
        opt.zero_grad()
        loss = loss_fn(params)
        value = float(loss.detach())
        if value == value and value < best[0]:  # not NaN
            best[0], best[1] = value, params.detach().clone()
        loss.backward()
        return loss

    try:
        opt.step(closure)
    except RuntimeError:  # a line search that ran into a non-finite loss: keep the best point found
        pass
    return best[1]


_METHODS = {"dps": ("dps_weights", 1.0), "projection": ("projection_weights", 0.0), "pigdm": ("pigdm_weights", 1.0),
            "ddnm": ("projection_weights", 1.0)}
# what a guidance design minimises: the averaged W2 to the posterior, or E||x_hat - x||^2 (PSNR's closed form)
_OBJECTIVES = {"w2": w2_to_posterior, "mse": mse_to_truth}


def design_guidance(lam, h, s2, alpha_bar, counts, *, method: str = "dps", sampler: str = "ddim", eta: float = 0.0,
                    init=None, iters: int = 200, rcond: float = 1e-3, prior_variance: float = 1.0,
                    nonnegative: bool = False, objective: str = "w2") -> torch.Tensor:
    """Per-step guidance weights [S] minimising `objective` of the zero-shot sampler: 'w2' the averaged W2 to the
    posterior (`w2_to_posterior`), 'mse' the expected squared error to the clean signal (`mse_to_truth`, the
    closed form of what PSNR measures; its optimum is the posterior mean, not a posterior sample).

    `method` 'dps' designs DPS's normalised step sizes zeta_i (its default is zeta = 1), 'projection' the
    DDNM-like weights p_i (DDNM's is 1), 'ddnm' the same weights of DDNM+ (`ddnm_plus`: the engine's ddnm with
    a noisy observation; use sampler 'ddpm'), 'pigdm' PiGDM's weights w_i (`prior_variance` v; its default is 1);
    `init` (a number or [S]) is where the search starts: by default each method's default weight, except 0 for
    the projection (the unconditional sampler: DDNM's exact projection of a noisy observation amplifies the
    noise by 1/h and starts the search on a cliff). `nonnegative` searches weights >= 0 only (w = softplus(u)),
    what the engine's samplers accept: unconstrained, the closed form can prefer a step *away* from the data."""
    if method not in _METHODS:
        raise CoupledError(f"unknown zero-shot method {method!r}; choose one of: {', '.join(_METHODS)}")
    if objective not in _OBJECTIVES:
        raise CoupledError(f"unknown design objective {objective!r}; choose one of: {', '.join(_OBJECTIVES)}")
    steps = torch.as_tensor(alpha_bar).numel() - 1
    key, default = _METHODS[method]
    extra = {"ddnm_plus": True} if method == "ddnm" else {"prior_variance": prior_variance} if method == "pigdm" else {}

    to_w = torch.nn.functional.softplus if nonnegative else (lambda u: u)

    def loss(u):
        t = sampler_transfer(lam, alpha_bar, sampler=sampler, eta=eta, h=h, s2=s2, counts=counts, rcond=rcond,
                             **{key: to_w(u)}, **extra)
        return _OBJECTIVES[objective](lam, h, s2, t, counts)

    init = default if init is None else init
    start = torch.as_tensor(init, dtype=_f64).expand(steps).clone()
    if nonnegative:
        start = torch.log(torch.expm1(start.clamp(min=1e-6)))
    return to_w(_minimise(loss, start, iters))


def _alpha_bar_from(u: torch.Tensor) -> torch.Tensor:
    """Increasing log-SNR: lsnr_0 = u_0, lsnr_i = lsnr_{i-1} + softplus(u_i); alpha_bar = sigmoid(lsnr), then 1."""
    lsnr = u[0] + torch.cat([u.new_zeros(1), torch.nn.functional.softplus(u[1:]).cumsum(0)])
    return torch.cat([torch.sigmoid(lsnr), u.new_ones(1)])


def _params_from(alpha_bar: torch.Tensor) -> torch.Tensor:
    ab = alpha_bar[:-1].clamp(1e-12, 1 - 1e-12)
    lsnr = torch.log(ab / (1 - ab))
    inc = (lsnr[1:] - lsnr[:-1]).clamp(min=1e-6)
    return torch.cat([lsnr[:1], torch.log(torch.expm1(inc))])


def design_alpha_bar(lam, counts, init_alpha_bar, *, sampler: str = "ddim", eta: float = 0.0,
                     iters: int = 300, mean_power=None, fix_first: bool = False) -> torch.Tensor:
    """The grid's alpha_bar [S + 1] (terminal 1 last) minimising `w2_to_data` (with the prior's `mean_power`, if
    given), continuous, from `init_alpha_bar`; `fix_first` keeps its first alpha_bar where the start has it."""
    start = _params_from(torch.as_tensor(init_alpha_bar, dtype=_f64))
    full = (lambda u: torch.cat([start[:1], u])) if fix_first else (lambda u: u)  # noqa: E731
    loss = lambda u: w2_to_data(lam, sampler_transfer(lam, _alpha_bar_from(full(u)), sampler=sampler, eta=eta),  # noqa: E731
                                counts, mean_power)
    u = _minimise(loss, start[1:] if fix_first else start, iters)
    return _alpha_bar_from(full(u)).detach()


def grid_w2(lam, counts, process: VPProcess, grid, *, sampler: str = "ddim", eta: float = 0.0, mean_power=None) -> float:
    """W2 to the data of the sampler on an engine grid of `process` (`mean_power`: see `w2_to_data`)."""
    return float(w2_to_data(lam, sampler_transfer(lam, grid_alpha_bar(process, grid), sampler=sampler, eta=eta), counts,
                            mean_power))


def design_grid(lam, counts, process: VPProcess, steps: int, *, sampler: str = "ddim", eta: float = 0.0,
                iters: int = 300, sweeps: int = 4, starts=(1.0, 0.8, 0.6, 0.4), mean_power=None,
                fix_first: bool = False) -> torch.Tensor:
    """An engine grid (S training steps of `process`, descending, then -1) minimising W2 to the data.

    The continuous design (`design_alpha_bar`, started from the trailing grids over the first fraction
    `starts` of the training steps, the best kept: the closed form has local minima) is rounded to the
    nearest training steps in log-SNR, then polished by coordinate descent over integer steps (moves of 1 to
    256); the result is never worse than the trailing grid. `mean_power`: a prior N(m, C), see `w2_to_data`.
    `fix_first`: the first time stays the last training step T - 1, where a chain started from the prior's pure
    noise is in distribution for a trained network (the closed form's Wiener filter takes any input; a network
    started at a lower time from pure noise sees what it never saw in training)."""
    if fix_first:
        starts = (1.0,)
    start = process.grid(steps)
    ab_train = process.alpha_bar.double()
    lsnr_train = torch.log(ab_train / (1 - ab_train))
    designs = [design_alpha_bar(lam, counts, grid_alpha_bar(process, process.grid(steps, start=f)), sampler=sampler,
                                eta=eta, iters=iters, mean_power=mean_power, fix_first=fix_first) for f in starts]
    ab = min(designs, key=lambda a: float(w2_to_data(lam, sampler_transfer(lam, a, sampler=sampler, eta=eta), counts,
                                                     mean_power)))[:-1]
    lsnr = torch.log(ab / (1 - ab))
    times = [int((lsnr_train - v).abs().argmin()) for v in lsnr]
    T = process.num_train_steps
    if fix_first:
        times[0] = T - 1
    for i in range(1, len(times)):  # keep the times strictly decreasing
        times[i] = min(times[i], times[i - 1] - 1)
    if times[-1] < 0:
        times = list(range(steps - 1, -1, -1)) if steps > T else times
        times = [max(t, steps - 1 - i) for i, t in enumerate(times)]

    def w2(ts):
        return grid_w2(lam, counts, process, torch.tensor([*ts, -1], dtype=torch.float32), sampler=sampler, eta=eta,
                       mean_power=mean_power)

    best = w2(times)
    for _ in range(sweeps):
        improved = False
        for i in range(1 if fix_first else 0, len(times)):
            for delta in (1, 2, 4, 8, 16, 32, 64, 128, 256):
                for sign in (-1, 1):
                    t = times[i] + sign * delta
                    hi = T - 1 if i == 0 else times[i - 1] - 1
                    lo = 0 if i == len(times) - 1 else times[i + 1] + 1
                    if lo <= t <= hi:
                        trial = times[:i] + [t] + times[i + 1:]
                        value = w2(trial)
                        if value < best:
                            best, times, improved = value, trial, True
        if not improved:
            break
    grid = torch.tensor([*times, -1], dtype=torch.float32)
    if w2(times) > grid_w2(lam, counts, process, start, sampler=sampler, eta=eta, mean_power=mean_power):
        return start
    return grid


def effective_spectrum(alpha_bar, error, dim: int, *, levels: int = 64, iters: int = 500):
    """(lam, counts): the Gaussian whose MMSE per noise level matches a measured denoising error curve.

    `error[i]` is E||x0_hat(x_t) - x0||^2 (summed over the `dim` coordinates) of a trained denoiser at
    `alpha_bar[i]` (`empirical.denoising_error`). The fit puts nonnegative weights `counts` (coordinates, their sum
    pulled towards `dim`) on `levels` variances spaced in log from 1e-6 of the largest error to the largest, so that
    `gaussian_mmse(lam, counts, alpha_bar)` matches `error` in log (a relative fit: the curve spans decades).
    Designing a grid for this Gaussian (`design_grid(lam, counts, ...)`) spends steps where the *trained*
    denoiser's error changes, not where a Wiener filter of the data's power spectrum would: the I-MMSE view, in
    which a distribution's MMSE curve is what sampling it step by step has to resolve."""
    ab = torch.as_tensor(alpha_bar, dtype=_f64).flatten()
    err = torch.as_tensor(error, dtype=_f64).flatten()
    if ab.numel() != err.numel() or ab.numel() < 2:
        raise CoupledError(f"alpha_bar and error need the same length >= 2, got {ab.numel()} and {err.numel()}")
    if not bool(torch.isfinite(err).all()) or float(err.min()) <= 0:
        raise CoupledError("the measured error must be finite and positive at every noise level; measure it again")
    if not bool(((ab > 0) & (ab < 1)).all()):
        raise CoupledError("alpha_bar must lie strictly between 0 and 1 (drop the clean and the pure-noise ends)")
    top = float(err.max())
    lam = torch.logspace(math.log10(top * 1e-6), math.log10(top), levels, dtype=_f64)
    target = err.log()

    def loss(u):
        counts = torch.nn.functional.softplus(u)
        fit = gaussian_mmse(lam, counts, ab).clamp(min=1e-300).log()
        return ((fit - target) ** 2).mean() + 1e-2 * (counts.sum().log() - math.log(dim)) ** 2

    start = torch.full((levels,), math.log(math.expm1(dim / levels)), dtype=_f64)
    return lam, torch.nn.functional.softplus(_minimise(loss, start, iters)).detach()
