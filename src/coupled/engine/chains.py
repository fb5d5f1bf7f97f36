"""A chain is one diffusion trajectory whose state is a value.

`Chain` is the frozen recipe (process, number of steps, sampler and its options); `ChainState` is where a
trajectory is (its x_t, how many grid steps it has taken, its latest x0_hat and its center). `step` takes a
state and returns a new one, so a strategy can start, step, keep and restart chains freely; nothing is
reset, nothing is shared (unlike a scheduler with a hidden step index).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from ..errors import CoupledError
from .operators import Measurement
from .processes import Process, process_from_dict
from .samplers import SAMPLER_OPTIONS, ZERO_SHOT, calls_per_step, check_sampler, sampler_options, step

__all__ = ["Chain", "ChainState"]

_OPTION_FIELDS = ("eta", "corrector_steps", "snr", "denoise_final", "weight", "prior_variance", "clip")  # every sampler option; SAMPLER_OPTIONS says whose


@dataclass(frozen=True)
class ChainState:
    """Where one trajectory is: state `x` after `index` grid steps, its latest `x0_hat`, its `center`."""

    x: torch.Tensor
    index: int = 0
    x0_hat: torch.Tensor | None = None
    center: torch.Tensor | None = None


@dataclass(frozen=True)
class Chain:
    """How to run one trajectory: `steps` steps of `sampler` over `process`'s grid.

    Sampler options: `eta` (ddim, default 0), `corrector_steps` (default 1), `snr` (default 0.5) and
    `denoise_final` (default false: the last step ends on its x0_hat, not on the predictor's noisy state) for pc;
    ddpm takes none. The zero-shot posterior samplers (`dps`, `pigdm`, `ddnm`; samplers.py) take `weight` (a
    number, or one per step) and, dps and pigdm, `eta` (default 1), pigdm `prior_variance` and `clip`; their observation,
    an `operators.Measurement`, is bound per batch with `with_measurement` (it is data, not recipe: not saved
    by `to_dict`). An option the sampler does not take is an error, so leave it unset (None); the ones
    it takes are filled with their defaults, so `Chain(vp, 5).eta == 0.0`. `spacing` picks the grid
    ('trailing' or 'leading' for VP, 'linear' for centred); None takes the process's default.
    `timesteps` gives the grid explicitly instead (a designed one, `coupled.analysis.design_grid`): `steps` + 1 times
    in `process.grid`'s format, strictly descending, the terminal time last (-1 for VP, whose times are training
    steps); it replaces `spacing` and needs `start_fraction` 1 (the grid's first time is where it starts).
    `start_fraction` < 1 runs only the last part of the process's time range (purification, warm-started
    refreshes): such a chain starts from a noised estimate (`start_from`) rather than from the prior.
    """

    process: Process
    steps: int
    sampler: str = "ddim"
    eta: float | None = None
    corrector_steps: int | None = None
    snr: float | None = None
    denoise_final: bool | None = None
    weight: float | tuple | None = None
    prior_variance: float | None = None
    clip: tuple | None = None
    spacing: str | None = None
    start_fraction: float = 1.0
    timesteps: tuple | None = None
    measurement: Measurement | None = field(default=None, repr=False, compare=False)
    _grid: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        given = {k: getattr(self, k) for k in _OPTION_FIELDS if getattr(self, k) is not None}
        check_sampler(self.sampler, self.process, given)
        for name, value in {**sampler_options(self.sampler), **given}.items():
            object.__setattr__(self, name, value)
        for name in ("weight", "clip"):  # JSON gives lists; the recipe holds tuples (hashable, comparable)
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if isinstance(self.weight, tuple) and len(self.weight) != self.steps:
            raise CoupledError(f"a per-step weight needs one value per step ({self.steps}), got {len(self.weight)}")
        if self.measurement is not None and self.sampler not in ZERO_SHOT:
            raise CoupledError(f"sampler {self.sampler!r} takes no measurement; the zero-shot ones do: {', '.join(ZERO_SHOT)}")
        if self.timesteps is not None:
            grid = self._explicit_grid()
        else:
            spacing = {} if self.spacing is None else {"spacing": self.spacing}
            grid = self.process.grid(self.steps, start=self.start_fraction, **spacing)
        object.__setattr__(self, "_grid", grid)

    def _explicit_grid(self) -> torch.Tensor:
        if isinstance(self.timesteps, torch.Tensor):
            object.__setattr__(self, "timesteps", tuple(self.timesteps.tolist()))
        grid = self.process.check_grid(self.timesteps)
        if grid.numel() != self.steps + 1:
            raise CoupledError(f"an explicit grid of {self.steps} steps needs {self.steps + 1} times (the terminal last), "
                               f"got {grid.numel()}; set steps to {grid.numel() - 1} or give another grid")
        if self.spacing is not None:
            raise CoupledError(f"an explicit grid (timesteps) replaces spacing={self.spacing!r}; set only one")
        if self.start_fraction != 1.0:
            raise CoupledError(f"an explicit grid (timesteps) sets its own start; it cannot run with "
                               f"start_fraction={self.start_fraction}")
        # JSON gives lists and a VP grid is integral: the recipe holds a tuple of the values as given back by to_dict
        as_int = self.process.kind == "vp"
        object.__setattr__(self, "timesteps", tuple(int(t) if as_int else float(t) for t in grid.tolist()))
        return grid

    @property
    def options(self) -> dict:
        """The options the sampler takes, with their values."""
        return {name: getattr(self, name) for name in SAMPLER_OPTIONS[self.sampler]}

    @property
    def grid(self) -> torch.Tensor:
        """The time grid actually run: `steps` + 1 descending times ending at the terminal time."""
        return self._grid

    @property
    def calls_per_step(self) -> int:
        """Denoiser calls per step (1, or 1 + corrector_steps for the pc sampler)."""
        return calls_per_step(self.sampler, self.options)

    def with_steps(self, steps: int | None) -> "Chain":
        """The same chain with another number of steps (None keeps it). An explicit grid is designed for its own
        count: at another count (one_step's single step, a tuned candidate's count) the returned chain runs the
        process's default grid; asked for its own count, the chain is returned as it is, grid and all."""
        if steps is None or steps == self.steps:
            return self
        return replace(self, steps=steps, timesteps=None)

    def with_measurement(self, measurement: Measurement | None) -> "Chain":
        """The same recipe bound to one batch's observation (a zero-shot sampler's y = A x + n)."""
        return replace(self, measurement=measurement)

    @property
    def zero_shot(self) -> bool:
        """Whether the sampler is a zero-shot posterior sampler (it needs a measurement)."""
        return self.sampler in ZERO_SHOT

    def with_start(self, start_fraction: float) -> "Chain":
        """The same chain over the last `start_fraction` of the time range (1 keeps it whole). An explicit grid sets
        its own start: part-way (purification, Nested's refreshes) the chain runs the process's default grid."""
        if start_fraction == self.start_fraction:
            return self
        return replace(self, start_fraction=start_fraction, timesteps=None)

    def start(self, shape, generator, *, center: torch.Tensor | None = None, device=None) -> ChainState:
        """A fresh trajectory at the prior; `center` is kept only for centred processes."""
        if self.start_fraction != 1.0:
            raise CoupledError(f"a chain with start_fraction={self.start_fraction} starts from an estimate; use start_from")
        if self.process.kind == "vp":
            center = None
        x = self.process.prior(tuple(shape), generator, center=center, device=device)
        return ChainState(x=x, index=0, x0_hat=None, center=center)

    def start_from(self, x0: torch.Tensor, generator, *, center: torch.Tensor | None = None) -> ChainState:
        """A trajectory that starts at the grid's first time from `x0` noised by the forward marginal
        (x_t = a x0 + b center + sigma noise): SDEdit / DiffPure-style purification of an estimate."""
        from .processes import randn

        if self.process.kind == "vp":
            center = None
        t = self._grid[0].expand(x0.shape[0]).to(x0.device)
        noise = randn(tuple(x0.shape), generator, device=x0.device, dtype=x0.dtype)
        x = self.process.add_noise(x0, t, noise, center)
        return ChainState(x=x, index=0, x0_hat=None, center=center)

    def done(self, state: ChainState) -> bool:
        return state.index >= self.steps

    def step(self, state: ChainState, denoiser, generator) -> ChainState:
        """One step of the grid. `denoiser(x_t, t, center=...)` returns x0_hat (conditioning bound by the caller)."""
        if self.done(state):
            raise CoupledError(f"the chain already took all its {self.steps} steps; start a new one")
        i = state.index
        fn = lambda x, t: denoiser(x, t, center=state.center)  # noqa: E731
        options = self.options
        if isinstance(options.get("weight"), tuple):
            options["weight"] = options["weight"][i]
        x, x0 = step(
            self.sampler, fn, self.process, state.x, self._grid[i], self._grid[i + 1],
            generator=generator, center=state.center, measurement=self.measurement, **options,
        )
        if options.get("denoise_final") and i + 1 == self.steps:  # pc: end on the last step's x0_hat
            x = x0
        return ChainState(x=x, index=i + 1, x0_hat=x0, center=state.center)

    def run(self, state: ChainState, denoiser, generator) -> ChainState:
        """Step until the grid's end."""
        while not self.done(state):
            state = self.step(state, denoiser, generator)
        return state

    def to_dict(self) -> dict:
        """The recipe as JSON-able values: the sampler's own options only."""
        return {
            "process": self.process.to_dict(), "steps": self.steps, "sampler": self.sampler, **self.options,
            "spacing": self.spacing, "start_fraction": self.start_fraction,
            **({} if self.timesteps is None else {"timesteps": list(self.timesteps)}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Chain":
        d = dict(d)
        valid = {"process", "steps", "sampler", *_OPTION_FIELDS, "spacing", "start_fraction", "timesteps"}
        unknown = set(d) - valid
        if unknown:
            raise CoupledError(f"unknown chain option(s) {sorted(unknown)}; valid: {', '.join(sorted(valid))}")
        if "process" not in d or "steps" not in d:
            raise CoupledError("a chain config needs 'process' and 'steps'")
        d["process"] = process_from_dict(d["process"])
        return cls(**d)
