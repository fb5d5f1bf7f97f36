"""Diffusion processes: the forward marginal x_t = a(t) x_0 + b(t) center + sigma(t) noise, and its prior.

Two families, both written as values (frozen dataclasses) with no hidden step counter:

- `VPProcess`: discrete-time DDPM (variance preserving, center = 0) with cosine or linear betas. Time is a
  training-step index t in {0, ..., T-1}; the terminal time -1 means "clean data" (alpha_bar = 1).
- `CentredProcess`: the OU-VE SDE of SGMSE+, dx = theta (center - x) dt + g(t) dw, whose mean drifts from
  x_0 towards an observation `center` and whose prior is centred on it. Continuous time t in [t_eps, 1];
  the terminal time 0 means "clean data".

A time grid is a descending 1-D float tensor of S + 1 times; its S steps are what a sampler runs, and its
last entry is the terminal time. Respacing (S of T steps) lives in the grid, never in a network.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..errors import CoupledError

__all__ = ["VPProcess", "CentredProcess", "Process", "process_from_dict", "randn", "MaskedNoise", "check_lengths", "length_mask"]


def check_lengths(lengths, batch: int, longest: int, device=None) -> torch.Tensor:
    """`lengths` as int64 [batch] on `device`, each in [1, longest]; a one-line error otherwise."""
    try:
        n = torch.as_tensor(lengths, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise CoupledError(f"lengths must be a sequence of {batch} integers, got {type(lengths).__name__}") from None
    if n.is_floating_point() or n.is_complex() or n.dtype == torch.bool or tuple(n.shape) != (batch,):
        raise CoupledError(f"lengths must be {batch} integers (one per item), got {n.dtype} of shape {tuple(n.shape)}")
    if batch and (int(n.min()) < 1 or int(n.max()) > longest):
        raise CoupledError(f"lengths must lie in [1, {longest}] (the padded batch's last axis), got "
                           f"[{int(n.min())}, {int(n.max())}]; pass each item's own length")
    return n.long()


def length_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """Bool [B, size]: True at the first lengths[i] positions of item i."""
    return torch.arange(size, device=lengths.device)[None] < lengths[:, None]


class MaskedNoise:
    """Per-item generators of a zero-padded batch, with the valid elements of each item (`mask`, bool
    [B, ...], broadcastable to the state's shape): `randn` draws for item i exactly as many numbers as it has
    valid elements, in their row-major order, and leaves the padding at 0. An item whose valid region is the
    leading box of its padded shape (padding at the end of one axis) gets the very draws it gets alone."""

    def __init__(self, generators, mask: torch.Tensor):
        self.generators, self.mask = list(generators), mask.bool()

    def __len__(self) -> int:
        return len(self.generators)


def randn(shape, generator, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal draws of `shape` = [B, ...] from `generator`.

    `generator` is either one `torch.Generator` (one draw for the whole batch), a list of B generators,
    one per item, so that an item's noise does not depend on the batch it was processed in (as EDM's
    per-seed generators), or a `MaskedNoise` (per-item generators of a padded batch: noise on the valid
    elements only, zero on the padding).
    """
    if isinstance(generator, MaskedNoise):
        if len(generator) != shape[0]:
            raise CoupledError(f"got {len(generator)} per-item generators for a batch of {shape[0]}; pass one generator per item")
        mask = generator.mask.to(device if device is not None else generator.mask.device).expand(tuple(shape))
        out = torch.zeros(tuple(shape), device=mask.device, dtype=dtype)
        for i, g in enumerate(generator.generators):
            out[i][mask[i]] = torch.randn(int(mask[i].sum()), generator=g, device=g.device, dtype=dtype).to(out.device)
        return out
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise CoupledError(
                f"got {len(generator)} per-item generators for a batch of {shape[0]}; pass one generator per item"
            )
        return torch.stack(
            [torch.randn(tuple(shape[1:]), generator=g, device=g.device, dtype=dtype) for g in generator]
        ).to(device)
    dev = device if generator is None else generator.device
    return torch.randn(tuple(shape), generator=generator, device=dev, dtype=dtype).to(device)


def _bcast(v: torch.Tensor, like: torch.Tensor, dtype=None) -> torch.Tensor:
    """Reshape a per-item [B] coefficient to broadcast against `like` [B, ...] (in `like`'s dtype by default)."""
    return v.reshape(v.shape + (1,) * (like.dim() - v.dim())).to(dtype or like.dtype)


def _check_start(start) -> float:
    if isinstance(start, bool) or not isinstance(start, (int, float)) or not 0 < start <= 1:
        raise CoupledError(f"a grid's start fraction must lie in (0, 1], got {start!r}")
    return float(start)


class _ProcessBase:
    kind: str

    def add_noise(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, center=None) -> torch.Tensor:
        """Forward marginal: x_t = a(t) x0 + b(t) center + sigma(t) noise, with `t` of shape [B]."""
        a, b, s = (_bcast(c, x0) for c in self.coefficients(t.to(x0.device)))
        out = a * x0 + s * noise
        return out if center is None else out + b * center

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    def _check_steps(self, steps: int, limit: int | None = None) -> int:
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise CoupledError(f"steps must be a positive integer, got {steps!r}")
        if limit is not None and steps > limit:
            raise CoupledError(f"steps={steps} exceeds the process's {limit} training steps; use at most {limit}")
        return steps

    def check_grid(self, times) -> torch.Tensor:
        """An explicit grid (as `grid` returns it: strictly descending times inside the process's range, then the
        terminal time) as a float tensor; CoupledError otherwise."""
        lo, hi, terminal = self._grid_range
        try:
            values = [float(t) for t in times]
        except (TypeError, ValueError):
            raise CoupledError(f"a grid must be a sequence of times, got {times!r}") from None
        if len(values) < 2 or values[-1] != terminal:
            raise CoupledError(f"a grid needs at least one time and must end with the terminal time {terminal:g}, got {times!r}")
        inner = values[:-1]
        if not all(lo - 1e-6 <= t <= hi + 1e-6 for t in inner):  # float32 grids round t_eps down; NaN fails
            raise CoupledError(f"a grid's times must lie in [{lo:g}, {hi:g}] for this process, got {inner}")
        if any(b >= a for a, b in zip(inner, inner[1:])):
            raise CoupledError(f"a grid's times must strictly descend (noisiest first), got {inner}")
        return torch.tensor(values)


@dataclass(frozen=True)
class VPProcess(_ProcessBase):
    """DDPM variance-preserving process over T discrete steps (betas as in diffusers, for parity)."""

    num_train_steps: int = 1000
    schedule: str = "cosine"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    kind = "vp"

    def __post_init__(self):
        if self.schedule not in ("cosine", "linear"):
            raise CoupledError(f"unknown VP schedule {self.schedule!r}; choose 'cosine' or 'linear'")
        self._check_steps(self.num_train_steps)
        object.__setattr__(self, "_alpha_bar", self._make_alpha_bar())

    def _make_alpha_bar(self) -> torch.Tensor:
        T = self.num_train_steps
        if self.schedule == "linear":
            betas = torch.linspace(self.beta_start, self.beta_end, T, dtype=torch.float32)
        else:  # squaredcos_cap_v2 (Nichol & Dhariwal), betas capped at 0.999
            f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
            betas = torch.tensor([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)], dtype=torch.float32)
        return torch.cumprod(1.0 - betas, dim=0)

    @property
    def alpha_bar(self) -> torch.Tensor:
        """alpha_bar[t] for t = 0..T-1 (float32, as diffusers' `alphas_cumprod`)."""
        return self._alpha_bar

    def coefficients(self, t: torch.Tensor):
        """(a, b, sigma) at integer times `t` [B], in float64; t < 0 is clean data (a = 1, sigma = 0)."""
        t = torch.as_tensor(t)
        idx = t.round().long()
        ab = self._alpha_bar.to(t.device).double()[idx.clamp(min=0)]
        ab = torch.where(idx < 0, torch.ones_like(ab), ab)
        return ab.sqrt(), torch.zeros_like(ab), (1 - ab).sqrt()

    def network_time(self, t: torch.Tensor) -> torch.Tensor:
        """The time a network sees, in [0, 1]."""
        return t.float() / self.num_train_steps

    def grid(self, steps: int, spacing: str = "trailing", start: float = 1.0) -> torch.Tensor:
        """S = `steps` steps of the T training steps, descending, with the terminal time -1 appended.

        'leading' is diffusers' default ((0..S-1) * T // S, reversed); 'trailing' starts at T - 1, the
        noisiest step, which the prior actually matches. `start` < 1 spaces the same way over the first
        round(start * T) training steps only: a trajectory that starts part-way, from a noised estimate.
        """
        T = max(1, round(_check_start(start) * self.num_train_steps))
        steps = self._check_steps(steps, T)
        if spacing == "leading":
            ts = (torch.arange(steps) * (T // steps)).flip(0).float()
        elif spacing == "trailing":
            ts = torch.round(torch.arange(T, 0, -T / steps)).float()[:steps] - 1
        else:
            raise CoupledError(f"unknown grid spacing {spacing!r}; choose 'leading' or 'trailing'")
        return torch.cat([ts, torch.tensor([-1.0])])

    @property
    def _grid_range(self):
        """(lowest, highest, terminal) grid times: training steps 0 .. T - 1, then -1."""
        return 0.0, float(self.num_train_steps - 1), -1.0

    def check_grid(self, times) -> torch.Tensor:
        grid = super().check_grid(times)
        if not torch.equal(grid, grid.round()):
            raise CoupledError(f"a VP grid's times are training steps (integers), got {grid[:-1].tolist()}")
        return grid

    def prior(self, shape, generator, *, center=None, device=None, dtype=torch.float32) -> torch.Tensor:
        """A draw from N(0, I), the VP prior (the center is ignored)."""
        return randn(shape, generator, device=device, dtype=dtype)

    @property
    def top(self) -> float:
        """The noisiest training time, T - 1 (where the prior sits)."""
        return float(self.num_train_steps - 1)

    def prior_mean(self, like: torch.Tensor, center=None) -> torch.Tensor:
        """The prior's mean, zeros shaped as `like` (the center is ignored)."""
        return torch.zeros_like(like)

    def sample_time(self, batch: int, generator=None, device=None) -> torch.Tensor:
        """Training times, uniform over the T steps."""
        return torch.randint(0, self.num_train_steps, (batch,), generator=generator).float().to(device)


@dataclass(frozen=True)
class CentredProcess(_ProcessBase):
    """OU-VE SDE of SGMSE+: drift theta (center - x), diffusion g(t) = sigma_min (sigma_max/sigma_min)^t sqrt(2 log(sigma_max/sigma_min))."""

    theta: float = 2.0
    sigma_min: float = 0.1
    sigma_max: float = 1.0
    t_eps: float = 0.03
    kind = "centred"

    def __post_init__(self):
        if not (self.sigma_max > self.sigma_min > 0 and self.theta > 0 and 0 < self.t_eps < 1):
            raise CoupledError(
                "centred process needs sigma_max > sigma_min > 0, theta > 0 and 0 < t_eps < 1; "
                f"got theta={self.theta}, sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, t_eps={self.t_eps}"
            )

    @property
    def _log_ratio(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    def coefficients(self, t: torch.Tensor):
        """(a, b, sigma) of the OU-VE marginal in float64: a = e^{-theta t}, b = 1 - a, sigma^2 as in SGMSE+ `_std`."""
        t = torch.as_tensor(t).double().clamp(min=0)
        a = torch.exp(-self.theta * t)
        L = self._log_ratio
        var = (
            self.sigma_min**2 * torch.exp(-2 * self.theta * t) * (torch.exp(2 * (self.theta + L) * t) - 1) * L
            / (self.theta + L)
        )
        return a, 1 - a, var.sqrt()

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        """g(t) of the SDE."""
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t * math.sqrt(2 * self._log_ratio)

    def drift(self, x: torch.Tensor, t: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        """f(x, t) = theta (center - x)."""
        return self.theta * (center - x)

    def network_time(self, t: torch.Tensor) -> torch.Tensor:
        """The time a network sees, in [0, 1]."""
        return t.float()

    def grid(self, steps: int, spacing: str = "linear", start: float = 1.0) -> torch.Tensor:
        """`steps` times from 1 down to t_eps, then the terminal 0 (as SGMSE+'s last step of size t_eps);
        `start` < 1 begins at t_eps + start (1 - t_eps) instead of 1."""
        steps = self._check_steps(steps)
        if spacing != "linear":
            raise CoupledError(f"unknown grid spacing {spacing!r} for a centred process; use 'linear'")
        top = self.t_eps + _check_start(start) * (1 - self.t_eps)
        return torch.cat([torch.linspace(top, self.t_eps, steps), torch.zeros(1)])

    @property
    def _grid_range(self):
        """(lowest, highest, terminal) grid times: t_eps .. 1, then 0."""
        return self.t_eps, 1.0, 0.0

    def prior(self, shape, generator, *, center=None, device=None, dtype=torch.float32) -> torch.Tensor:
        """center + sigma(1) noise, SGMSE+'s prior (the mean's residual e^{-theta} (x0 - center) is ignored)."""
        if center is None:
            raise CoupledError("a centred process needs a center (the observation) to draw its prior")
        _, _, s = self.coefficients(torch.ones(1))
        return center + s.item() * randn(shape, generator, device=center.device, dtype=center.dtype)

    @property
    def top(self) -> float:
        """The noisiest time, 1 (where the prior sits)."""
        return 1.0

    def prior_mean(self, like: torch.Tensor, center=None) -> torch.Tensor:
        """The prior's mean: the center itself (the observation)."""
        if center is None:
            raise CoupledError("a centred process needs a center (the observation) for its prior mean")
        return center.to(like.dtype).expand_as(like).clone()

    def sample_time(self, batch: int, generator=None, device=None) -> torch.Tensor:
        """Training times, uniform in [t_eps, 1]."""
        u = torch.rand((batch,), generator=generator)
        return (self.t_eps + (1 - self.t_eps) * u).to(device)


Process = VPProcess | CentredProcess
_KINDS = {"vp": VPProcess, "centred": CentredProcess}


def process_from_dict(d: dict) -> Process:
    """Rebuild a process from `to_dict()` output (as saved in a JSON config)."""
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in _KINDS:
        raise CoupledError(f"unknown process kind {kind!r}; choose one of: {', '.join(_KINDS)}")
    cls = _KINDS[kind]
    valid = set(cls.__dataclass_fields__)
    unknown = set(d) - valid
    if unknown:
        raise CoupledError(f"unknown {kind} process option(s) {sorted(unknown)}; valid: {', '.join(sorted(valid))}")
    return cls(**d)
