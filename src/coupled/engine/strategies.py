"""The six methods of the spec, as functions over two chains and a frozen classifier.

Every method takes a `Coupling` (classifier, denoisers, chain recipes), the degraded batch `d`, a generator
(one `torch.Generator`, or one per item for batch-size independence) and keyword options, and returns a
`StrategyResult` with `y_hat` (final logit estimate, where a logit chain runs), `x_hat` (final signal
estimate, where a signal chain runs), `classifier_logits` = norm(f(x_hat)) (norm(f(d)) for `noisy`) and
the exact numbers of calls to the signal denoiser, the logit denoiser and the classifier.

Denoiser call conventions (conditioning by keyword):
    signal_denoiser(x_t, t, center=..., observation=d, logits=l)     # l None: the null token
    logit_denoiser(y_t, t, center=..., evidence=c, signal=z)         # c = norm(f(z))
`center` is the chain's center for centred processes (d for the signal chain; for the logit chain the
classifier's opinion c at the trajectory's start, used by both its prior and its drift) and None for VP.

The classifier input z is d before the switch and the latest signal estimate after it; the switch step is
floor(switch_fraction * N) in steps of the grid actually run (step 0 always uses d: no estimate exists yet).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from ..errors import CoupledError
from .chains import Chain
from .classifier import FrozenClassifier, check_finite

__all__ = [
    "Coupling", "StrategyResult", "METHODS", "run_method", "noisy", "sequential", "logits_only",
    "parallel", "alternating", "nested", "switch_step", "refresh_steps", "expected_calls", "method_options",
]


@dataclass(frozen=True)
class Coupling:
    """What the strategies run: the frozen classifier, the two denoisers and the two chain recipes."""

    classifier: FrozenClassifier
    signal_denoiser: Callable | None = None
    logit_denoiser: Callable | None = None
    signal_chain: Chain | None = None
    logit_chain: Chain | None = None


@dataclass
class StrategyResult:
    """The output of one method on one batch."""

    method: str
    y_hat: torch.Tensor | None
    x_hat: torch.Tensor | None
    classifier_logits: torch.Tensor
    calls: dict = field(default_factory=dict)

    def prediction(self, readout: str = "classifier") -> torch.Tensor:
        """argmax over classes of `y_hat` (readout 'logits') or of f(x_hat) (readout 'classifier')."""
        if readout == "logits":
            if self.y_hat is None:
                raise CoupledError(f"method {self.method!r} has no logit chain; use readout='classifier'")
            return self.y_hat.argmax(dim=-1)
        if readout == "classifier":
            return self.classifier_logits.argmax(dim=-1)
        raise CoupledError(f"unknown readout {readout!r}; choose 'logits' or 'classifier'")


def switch_step(steps: int, switch_fraction: float) -> int:
    """The first grid step whose classifier input is the signal estimate rather than d."""
    return math.floor(switch_fraction * steps)


def refresh_steps(steps: int, refresh_every: int, refresh_window=(0.5, 1.0)) -> list[int]:
    """Logit steps i before which Nested refreshes x_hat: i in [floor(lo N), floor(hi N)), i >= 1, every `refresh_every`."""
    if not refresh_every:
        return []
    lo, hi = math.floor(refresh_window[0] * steps), math.floor(refresh_window[1] * steps)
    return [i for i in range(max(lo, 1), hi) if (i - lo) % refresh_every == 0]


class _Run:
    """One strategy call: counts calls and binds conditioning, so each method reads like the spec."""

    def __init__(self, coupling: Coupling, degraded: torch.Tensor, generator, needs: str):
        if not isinstance(coupling, Coupling):
            raise CoupledError(f"expected a Coupling, got {type(coupling).__name__}")
        check_finite(degraded, "degraded input")
        if degraded.dim() < 2:
            raise CoupledError(f"degraded input must be a batch [B, ...], got shape {tuple(degraded.shape)}")
        batch = degraded.shape[0]
        if isinstance(generator, (list, tuple)) and len(generator) != batch:
            raise CoupledError(
                f"got {len(generator)} per-item generators for a batch of {batch}; pass one generator per item"
            )
        for part in needs:
            name = {"x": "signal", "y": "logit"}[part]
            if getattr(coupling, f"{name}_denoiser") is None or getattr(coupling, f"{name}_chain") is None:
                raise CoupledError(f"this method needs a {name} denoiser and a {name} chain in the Coupling")
        self.c, self.d, self.gen = coupling, degraded, generator
        self.calls = {"signal": 0, "logits": 0, "classifier": 0}

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        self.calls["classifier"] += 1
        c = self.c.classifier(z)
        width = getattr(self.c.logit_denoiser, "num_classes", None)
        if self.c.logit_denoiser is not None and width is not None and c.shape[-1] != width:
            raise CoupledError(
                f"the classifier gives {c.shape[-1]} classes but the logit denoiser expects {width}; "
                "use a logit denoiser trained for this classifier"
            )
        return c

    def _counted(self, fn, key, **conditioning):
        def call(x, t, center=None):
            self.calls[key] += 1
            return fn(x, t, center=center, **conditioning)

        return call

    def signal_step(self, state, logits):
        return self.c.signal_chain.step(
            state, self._counted(self.c.signal_denoiser, "signal", observation=self.d, logits=logits), self.gen
        )

    def logit_step(self, state, evidence, z):
        return self.c.logit_chain.step(
            state, self._counted(self.c.logit_denoiser, "logits", evidence=evidence, signal=z), self.gen
        )

    def start_signal(self, steps=None):
        self.c = _replace_chain(self.c, "signal_chain", steps)
        return self.c.signal_chain.start(self.d.shape, self.gen, center=self.d, device=self.d.device)

    def start_logits(self, center, steps=None):
        self.c = _replace_chain(self.c, "logit_chain", steps)
        return self.c.logit_chain.start(center.shape, self.gen, center=center, device=self.d.device)

    def signal_trajectory(self, logits, steps=None) -> torch.Tensor:
        state = self.start_signal(steps)
        while not self.c.signal_chain.done(state):
            state = self.signal_step(state, logits)
        return state.x

    def logit_trajectory(self, evidence, z, steps=None) -> torch.Tensor:
        state = self.start_logits(evidence, steps)
        while not self.c.logit_chain.done(state):
            state = self.logit_step(state, evidence, z)
        return state.x

    def result(self, method, y_hat, x_hat, classifier_logits):
        return StrategyResult(method, y_hat, x_hat, classifier_logits, dict(self.calls))


def _replace_chain(coupling: Coupling, name: str, steps):
    return replace(coupling, **{name: getattr(coupling, name).with_steps(steps)})


def _check_fraction(name, value):
    if not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise CoupledError(f"{name} must lie in [0, 1], got {value!r}")


def _check_count(name, value, minimum=1):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise CoupledError(f"{name} must be an integer >= {minimum}, got {value!r}")


@torch.no_grad()
def noisy(coupling: Coupling, degraded: torch.Tensor, generator=None) -> StrategyResult:
    """Baseline: the classifier on the degraded input, argmax f(d)."""
    run = _Run(coupling, degraded, generator, "")
    return run.result("noisy", None, None, run.classify(degraded))


@torch.no_grad()
def sequential(coupling: Coupling, degraded: torch.Tensor, generator=None, *, signal_steps: int | None = None):
    """Baseline "enhance then classify": one signal trajectory with the null logit token, then f(x_hat)."""
    run = _Run(coupling, degraded, generator, "x")
    x_hat = run.signal_trajectory(None, signal_steps)
    return run.result("sequential", None, x_hat, run.classify(x_hat))


@torch.no_grad()
def logits_only(coupling: Coupling, degraded: torch.Tensor, generator=None, *, logit_steps: int | None = None):
    """Baseline, CARD-like: one logit trajectory with z = d throughout."""
    run = _Run(coupling, degraded, generator, "y")
    c = run.classify(degraded)
    y_hat = run.logit_trajectory(c, degraded, logit_steps)
    return run.result("logits_only", y_hat, None, c)


@torch.no_grad()
def parallel(
    coupling: Coupling, degraded: torch.Tensor, generator=None, *, steps: int | None = None,
    switch_fraction: float = 0.5,
):
    """Interleaved scheduler: per grid step, one logit step (evidence from z) then one signal step on its y0_hat.

    Both chains run the same `steps` (default: the signal chain's). Calls: N D_x, N D_y, and
    1 (f(d)) + (steps from max(switch, 1) to N) + 1 (f(x_hat)) classifier calls.
    """
    _check_fraction("switch_fraction", switch_fraction)
    run = _Run(coupling, degraded, generator, "xy")
    steps = steps if steps is not None else coupling.signal_chain.steps
    c_d = run.classify(degraded)
    x_state = run.start_signal(steps)
    y_state = run.start_logits(c_d, steps)
    switch = switch_step(steps, switch_fraction)
    for i in range(steps):
        if i >= switch and x_state.x0_hat is not None:
            z = x_state.x0_hat
            c = run.classify(z)
        else:
            z, c = degraded, c_d
        y_state = run.logit_step(y_state, c, z)
        x_state = run.signal_step(x_state, y_state.x0_hat)
    return run.result("parallel", y_state.x, x_state.x, run.classify(x_state.x))


@torch.no_grad()
def alternating(
    coupling: Coupling, degraded: torch.Tensor, generator=None, *, rounds: int = 2,
    signal_steps: int | None = None, logit_steps: int | None = None,
):
    """Block scheduler: R rounds of a full signal trajectory (conditioned on l) then a full logit trajectory.

    l starts as the null token and becomes each round's y_hat. Calls: R N_x D_x, R N_y D_y, R f.
    """
    _check_count("rounds", rounds)
    run = _Run(coupling, degraded, generator, "xy")
    logits = None
    for _ in range(rounds):
        x_hat = run.signal_trajectory(logits, signal_steps)
        c = run.classify(x_hat)
        logits = run.logit_trajectory(c, x_hat, logit_steps)
    return run.result("alternating", logits, x_hat, c)


@torch.no_grad()
def nested(
    coupling: Coupling, degraded: torch.Tensor, generator=None, *, signal_steps: int | None = None,
    logit_steps: int | None = None, refresh_every: int = 2, refresh_window: tuple[float, float] = (0.5, 1.0),
):
    """Hierarchical scheduler: one logit trajectory; a full signal trajectory before it and at each refresh step.

    A refresh is conditioned on the current y0_hat; each logit step uses z = the latest x_hat.
    Calls: (1 + refreshes) N_x D_x, N_y D_y, (1 + refreshes) f.
    """
    _check_count("refresh_every", refresh_every, minimum=0)
    if len(refresh_window) != 2:
        raise CoupledError(f"refresh_window must be (start, end) fractions, got {refresh_window!r}")
    for v in refresh_window:
        _check_fraction("refresh_window", v)
    if refresh_window[0] > refresh_window[1]:
        raise CoupledError(f"refresh_window start must not exceed its end, got {tuple(refresh_window)}")
    run = _Run(coupling, degraded, generator, "xy")
    x_hat = run.signal_trajectory(None, signal_steps)
    c = run.classify(x_hat)
    y_state = run.start_logits(c, logit_steps)
    refresh = set(refresh_steps(run.c.logit_chain.steps, refresh_every, refresh_window))
    for i in range(run.c.logit_chain.steps):
        if i in refresh:
            x_hat = run.signal_trajectory(y_state.x0_hat, signal_steps)
            c = run.classify(x_hat)
        y_state = run.logit_step(y_state, c, x_hat)
    return run.result("nested", y_state.x, x_hat, c)


METHODS = {
    "noisy": noisy, "sequential": sequential, "logits_only": logits_only,
    "parallel": parallel, "alternating": alternating, "nested": nested,
}


def method_options(method: str) -> list[str]:
    """The keyword options a method takes."""
    params = inspect.signature(METHODS[method]).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def run_method(method: str, coupling: Coupling, degraded: torch.Tensor, generator=None, **options) -> StrategyResult:
    """Run a method by name; unknown methods and options are errors that list the valid ones."""
    if method not in METHODS:
        raise CoupledError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    valid = method_options(method)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise CoupledError(
            f"unknown option(s) {unknown} for method {method!r}; valid: {', '.join(valid) or 'none'}"
        )
    for name in ("steps", "signal_steps", "logit_steps"):
        if options.get(name) is not None:
            _check_count(name, options[name])
    return METHODS[method](coupling, degraded, generator, **options)


def expected_calls(method: str, coupling: Coupling, **options) -> dict:
    """The exact call counts the spec's formulas give for `method` with these options (per batch)."""
    sx = coupling.signal_chain.with_steps(options.get("signal_steps")) if coupling.signal_chain else None
    sy = coupling.logit_chain.with_steps(options.get("logit_steps")) if coupling.logit_chain else None
    nx = sx.steps * sx.calls_per_step if sx else 0
    ny = sy.steps * sy.calls_per_step if sy else 0
    if method == "noisy":
        return {"signal": 0, "logits": 0, "classifier": 1}
    if method == "sequential":
        return {"signal": nx, "logits": 0, "classifier": 1}
    if method == "logits_only":
        return {"signal": 0, "logits": ny, "classifier": 1}
    if method == "parallel":
        n = options.get("steps") or coupling.signal_chain.steps
        s = switch_step(n, options.get("switch_fraction", 0.5))
        return {
            "signal": n * coupling.signal_chain.calls_per_step, "logits": n * coupling.logit_chain.calls_per_step,
            "classifier": 2 + max(0, n - max(s, 1)),
        }
    if method == "alternating":
        r = options.get("rounds", 2)
        return {"signal": r * nx, "logits": r * ny, "classifier": r}
    if method == "nested":
        k = len(refresh_steps(sy.steps, options.get("refresh_every", 2), options.get("refresh_window", (0.5, 1.0))))
        return {"signal": (1 + k) * nx, "logits": ny, "classifier": 1 + k}
    raise CoupledError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
