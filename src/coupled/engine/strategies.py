"""The spec's methods, as functions over two chains and a frozen classifier.

Baselines: `noisy`, `sequential`, `logits_only` (CARD-style; `card` is the same function, run with a logit
net trained for it), the equal-cost baselines `sequential_ensemble`, `one_step` and `purification`, and
`predictive` (one call at the prior's mean, no noise: StoRM's predictive stage, run with a net trained for it).
Coupled strategies: `parallel`, `alternating`, `nested`.

Every method takes a `Coupling` (classifier, denoisers, chain recipes), the degraded batch `d`, a generator
(one `torch.Generator`, or one per item for batch-size independence) and keyword options, and returns a
`StrategyResult` with `y_hat` (final logit estimate, where a logit chain runs), `x_hat` (final signal
estimate, where a signal chain runs), `classifier_logits` = norm(f(x_hat)) (norm(f(d)) for `noisy`; the log
of the averaged probabilities for `sequential_ensemble`) and the exact numbers of calls to the signal
denoiser, the logit denoiser and the classifier, with `signal_passes` / `logits_passes` counting network
passes (a guided call runs two).

Denoiser call conventions (conditioning by keyword):
    signal_denoiser(x_t, t, center=..., observation=d, logits=l)     # l None: the null token
    logit_denoiser(y_t, t, center=..., evidence=c, signal=z)         # c = norm(f(z))
`center` is the chain's center for centred processes (d for the signal chain; for the logit chain the
classifier's opinion c at the trajectory's start, used by both its prior and its drift) and None for VP.

Every method also takes `callback`, called as `callback(event)` with a `StepEvent` after each signal and
logit step (as k-diffusion's samplers call theirs); None changes nothing. `signal_trajectory` and
`logit_trajectory` run one trajectory of either chain on its own, as the methods do.

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
from .processes import MaskedNoise, check_lengths, length_mask

__all__ = [
    "Coupling", "StrategyResult", "METHODS", "COUPLED", "BASELINES", "PAPER_METHODS", "run_method", "noisy", "sequential",
    "logits_only", "sequential_ensemble", "one_step", "purification", "parallel", "alternating", "nested",
    "switch_step", "refresh_steps", "parallel_schedule", "expected_calls", "method_options", "readouts",
    "StepEvent", "signal_trajectory", "logit_trajectory", "length_conditioning", "predictive", "predictive_input",
    "NOISELESS",
]


@dataclass(frozen=True)
class Coupling:
    """What the strategies run: the frozen classifier, the two denoisers and the two chain recipes."""

    classifier: FrozenClassifier
    signal_denoiser: Callable | None = None
    logit_denoiser: Callable | None = None
    signal_chain: Chain | None = None
    logit_chain: Chain | None = None
    # observation adding: the classifier readout of a signal estimate hears x_hat + a (d - x_hat) (0: x_hat alone)
    observation_weight: float = 0.0


@dataclass
class StrategyResult:
    """The output of one method on one batch."""

    method: str
    y_hat: torch.Tensor | None
    x_hat: torch.Tensor | None
    classifier_logits: torch.Tensor
    calls: dict = field(default_factory=dict)
    lengths: torch.Tensor | None = None  # a padded batch's valid extent per item along the signal's last axis
    frame_lengths: torch.Tensor | None = None  # and along the frames of [B, T, K] logits

    def prediction(self, readout: str = "classifier") -> torch.Tensor:
        """argmax over classes of `y_hat` (readout 'logits') or of f(x_hat) (readout 'classifier')."""
        if readout == "logits":
            if self.y_hat is None:
                raise CoupledError(f"method {self.method!r} has no logit chain; use readout='classifier'")
            return self.y_hat.argmax(dim=-1)
        if readout == "classifier":
            return self.classifier_logits.argmax(dim=-1)
        raise CoupledError(f"unknown readout {readout!r}; choose 'logits' or 'classifier'")


@dataclass(frozen=True)
class StepEvent:
    """What a `callback` sees after one chain step.

    `method` is the running method, `chain` 'signal' or 'logits', `index` the step's position on that
    chain's grid (it restarts with each new trajectory), `t` the time stepped from, `x` the new state,
    `x0_hat` the step's estimate, and `calls` the calls counted so far (as `StrategyResult.calls`).
    """

    method: str
    chain: str
    index: int
    t: float
    x: torch.Tensor
    x0_hat: torch.Tensor
    calls: dict


def switch_step(steps: int, switch_fraction: float) -> int:
    """The first grid step whose classifier input is the signal estimate rather than d."""
    return math.floor(switch_fraction * steps)


def refresh_steps(steps: int, refresh_every: int, refresh_window=(0.5, 1.0)) -> list[int]:
    """Logit steps i before which Nested refreshes x_hat: i in [floor(lo N), floor(hi N)), i >= 1, every `refresh_every`."""
    if not refresh_every:
        return []
    lo, hi = math.floor(refresh_window[0] * steps), math.floor(refresh_window[1] * steps)
    return [i for i in range(max(lo, 1), hi) if (i - lo) % refresh_every == 0]


def length_conditioning(role: str, lengths, frame_lengths=None) -> dict:
    """The length keywords a denoiser of `role` ('signal' or 'logits') is called with on a padded batch: the
    signal denoiser `lengths=` (the signals'), the logit denoiser `lengths=` (the frame lengths of [B, T, K]
    logits, None for [B, K]) and `signal_lengths=`; nothing without `lengths`, so networks of fixed-shape
    signals take no length keywords. Sampling (`_Run`) and training both call it."""
    if lengths is None:
        return {}
    if role == "signal":
        return {"lengths": lengths}
    return {"lengths": frame_lengths, "signal_lengths": lengths}


class _Run:
    """One strategy call: counts calls and binds conditioning, so each method reads like the spec.

    With `lengths` [B] (valid extent of each item along the signal's last axis; a padded batch of signals of
    different lengths), every network is told its items' lengths (`lengths=` to the signal denoiser and the
    classifier; the logit denoiser gets the frame lengths of the classifier's [B, T, K] logits and the signal's
    as `signal_lengths=`), estimates are zeroed past each item's end, and the chains draw each item's noise
    for its valid elements only (`MaskedNoise`), so a padded item gets what it gets alone.
    """

    def __init__(self, coupling: Coupling, degraded: torch.Tensor, generator, needs: str, method: str,
                 callback: Callable | None, lengths=None):
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
        self.lengths, self.frame_lengths, self.signal_mask, self.frame_mask = None, None, None, None
        self.sgen = self.ygen = generator
        if lengths is not None:
            self.lengths = check_lengths(lengths, batch, degraded.shape[-1], degraded.device)
            if not isinstance(generator, (list, tuple)):
                raise CoupledError("a padded batch (lengths given) needs one generator per item "
                                   "(engine.item_generators), so that each item's noise does not depend on its batch")
            self.signal_mask = length_mask(self.lengths, degraded.shape[-1]).view(batch, *[1] * (degraded.dim() - 2), -1)
            self.sgen = MaskedNoise(generator, self.signal_mask)
            degraded = degraded * self.signal_mask
        self.c, self.d, self.gen = coupling, degraded, generator
        self.method, self.callback = method, callback
        self.calls = {"signal": 0, "logits": 0, "classifier": 0, "signal_passes": 0, "logits_passes": 0}

    def _frames(self, logits: torch.Tensor) -> torch.Tensor:
        """Frame logits [B, T, K] of a padded batch with the frames past each item's end set to 0 (the
        classifier's own frame lengths: `FrozenClassifier.frame_lengths`)."""
        if self.lengths is None or logits.dim() != 3:
            return logits
        if self.frame_lengths is None:
            self.frame_lengths = self.c.classifier.frame_lengths(self.lengths, logits.shape[1])
            self.frame_mask = length_mask(self.frame_lengths, logits.shape[1])[..., None]
            self.ygen = MaskedNoise(self.gen, self.frame_mask)
        return logits * self.frame_mask

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        self.calls["classifier"] += 1
        c = self._frames(self.c.classifier(z, lengths=self.lengths))
        width = getattr(self.c.logit_denoiser, "num_classes", None)
        if self.c.logit_denoiser is not None and width is not None and c.shape[-1] != width:
            raise CoupledError(
                f"the classifier gives {c.shape[-1]} classes but the logit denoiser expects {width}; "
                "use a logit denoiser trained for this classifier"
            )
        return c

    def heard(self, x_hat: torch.Tensor) -> torch.Tensor:
        """What the classifier readout hears of a final signal estimate: with observation adding (`Coupling.
        observation_weight` a > 0), x_hat + a (d - x_hat), mixed by the classifier module's own
        `observation_mix(x_hat, d, a)` when it has one (a representation that is not linear in the signal, e.g.
        a compressed spectrogram, mixes as the waveforms would), else linearly; x_hat itself when a = 0."""
        a = float(self.c.observation_weight)
        if a == 0.0:
            return x_hat
        mix = getattr(self.c.classifier.module, "observation_mix", None)
        out = x_hat + a * (self.d - x_hat) if mix is None else mix(x_hat, self.d, a)
        return out if self.signal_mask is None else out * self.signal_mask

    def readout(self, x_hat: torch.Tensor) -> torch.Tensor:
        """The classifier readout of a final signal estimate: f of `heard(x_hat)`."""
        return self.classify(self.heard(x_hat))

    def classify_probabilities(self, z: torch.Tensor) -> torch.Tensor:
        """softmax of the classifier's own logits f(z) (not standardised): what an ensemble averages."""
        self.calls["classifier"] += 1
        return self.c.classifier.raw(z, lengths=self.lengths).softmax(dim=-1)

    def _counted(self, fn, key, **conditioning):
        passes = fn.passes(**conditioning) if hasattr(fn, "passes") else 1
        mask = self.signal_mask if key == "signal" else self.frame_mask
        conditioning.update(length_conditioning(key, self.lengths, self.frame_lengths))

        def call(x, t, center=None):
            self.calls[key] += 1
            self.calls[f"{key}_passes"] += passes
            x0 = fn(x, t, center=center, **conditioning)
            return x0 if mask is None else x0 * mask

        return call

    def _report(self, chain_name, chain, state):
        if self.callback is not None:
            i = state.index - 1
            self.callback(StepEvent(self.method, chain_name, i, float(chain.grid[i]), state.x, state.x0_hat,
                                    dict(self.calls)))
        return state

    def signal_step(self, state, logits):
        chain = self.c.signal_chain
        state = chain.step(
            state, self._counted(self.c.signal_denoiser, "signal", observation=self.d, logits=logits), self.sgen
        )
        return self._report("signal", chain, state)

    def logit_step(self, state, evidence, z):
        chain = self.c.logit_chain
        state = chain.step(state, self._counted(self.c.logit_denoiser, "logits", evidence=evidence, signal=z), self.ygen)
        return self._report("logits", chain, state)

    def start_signal(self, steps=None, start_fraction=1.0, start_from=None):
        """A signal trajectory from the prior, or (start_fraction < 1) from `start_from` noised part-way."""
        self.c = _replace_chain(self.c, "signal_chain", steps)
        chain = self.c.signal_chain.with_start(start_fraction)
        self.c = replace(self.c, signal_chain=chain)
        if start_fraction == 1.0:
            return chain.start(self.d.shape, self.sgen, center=self.d, device=self.d.device)
        return chain.start_from(start_from, self.sgen, center=self.d)

    def start_logits(self, center, steps=None):
        self.c = _replace_chain(self.c, "logit_chain", steps)
        return self.c.logit_chain.start(center.shape, self.ygen, center=center, device=self.d.device)

    def signal_trajectory(self, logits, steps=None, start_fraction=1.0, start_from=None) -> torch.Tensor:
        state = self.start_signal(steps, start_fraction, start_from)
        while not self.c.signal_chain.done(state):
            state = self.signal_step(state, logits)
        return state.x

    def logit_trajectory(self, evidence, z, steps=None, samples: int = 1) -> torch.Tensor:
        """A full logit trajectory; with `samples` > 1, that many independent ones, their y_hat averaged."""
        total = 0
        for _ in range(samples):
            state = self.start_logits(evidence, steps)
            while not self.c.logit_chain.done(state):
                state = self.logit_step(state, evidence, z)
            total = total + state.x
        return total / samples

    def result(self, method, y_hat, x_hat, classifier_logits):
        return StrategyResult(method, y_hat, x_hat, classifier_logits, dict(self.calls), self.lengths,
                              self.frame_lengths)


def _replace_chain(coupling: Coupling, name: str, steps):
    return replace(coupling, **{name: getattr(coupling, name).with_steps(steps)})


def _check_fraction(name, value, low_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value if low_open else 0 <= value) or value > 1:
        raise CoupledError(f"{name} must lie in {'(0' if low_open else '[0'}, 1], got {value!r}")


def _check_count(name, value, minimum=1):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise CoupledError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_optional_count(name, value):
    if value is not None:
        _check_count(name, value)


def _check_window(name, value):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise CoupledError(f"{name} must be (start, end) fractions, got {value!r}")
    for v in value:
        _check_fraction(name, v)
    if value[0] > value[1]:
        raise CoupledError(f"{name} start must not exceed its end, got {tuple(value)}")


# the values of every strategy option (a method's options are its keyword-only parameters), one check per name:
# the strategies check their arguments with it, and configs and pipeline.json before anything runs
OPTION_CHECKS: dict[str, Callable] = {
    "signal_steps": _check_optional_count, "logit_steps": _check_optional_count,
    "refresh_signal_steps": _check_optional_count, "rounds": _check_count, "logit_samples": _check_count,
    "k": _check_count, "refresh_every": lambda name, v: _check_count(name, v, minimum=0),
    "switch_fraction": _check_fraction, "refresh_from": lambda name, v: _check_fraction(name, v, low_open=True),
    "noise_fraction": lambda name, v: _check_fraction(name, v, low_open=True), "refresh_window": _check_window,
}


def _check_option(name, value):
    OPTION_CHECKS[name](name, value)


@torch.no_grad()
def signal_trajectory(coupling: Coupling, degraded: torch.Tensor, generator=None, *, logits=None,
                      steps: int | None = None, start_fraction: float = 1.0, start_from=None,
                      callback: Callable | None = None, lengths=None) -> torch.Tensor:
    """One signal trajectory, run as the methods run it; returns its final state x_hat.

    Args:
        coupling: needs `signal_denoiser` and `signal_chain`.
        degraded: the observation d [B, ...] the denoiser is conditioned on (and the centred chain's center).
        generator: one `torch.Generator`, or one per item.
        logits: the logit conditioning l (None: the null token).
        steps: grid steps (None: the chain's own).
        start_fraction: < 1 starts from `start_from` (default: `degraded`) noised to that fraction of the
            time range, as `purification` and warm refreshes do; 1 starts from the prior.
        callback: called with a `StepEvent` (method 'signal_trajectory') after each step.
        lengths: [B] valid extent of each item of a zero-padded batch (see `run_method`).
    """
    _check_fraction("start_fraction", start_fraction, low_open=True)
    if steps is not None:
        _check_count("steps", steps)
    run = _Run(coupling, degraded, generator, "x", "signal_trajectory", callback, lengths)
    return run.signal_trajectory(logits, steps, start_fraction, degraded if start_from is None else start_from)


@torch.no_grad()
def logit_trajectory(coupling: Coupling, signal: torch.Tensor, generator=None, *, evidence=None,
                     steps: int | None = None, samples: int = 1, callback: Callable | None = None, lengths=None) -> torch.Tensor:
    """One logit trajectory, run as the methods run it; returns its final state y_hat.

    Args:
        coupling: needs `classifier`, `logit_denoiser` and `logit_chain`.
        signal: the classifier input z [B, ...]: the degraded input, or a signal estimate x_hat.
        generator: one `torch.Generator`, or one per item.
        evidence: c = norm(f(z)), the denoiser's evidence and the centred chain's center (None: computed
            from `signal`, one classifier call).
        steps: grid steps (None: the chain's own).
        samples: > 1 runs that many independent trajectories and returns the mean of their y_hat.
        callback: called with a `StepEvent` (method 'logit_trajectory') after each step.
        lengths: [B] valid extent of each item of a zero-padded batch of signals (see `run_method`).
    """
    _check_count("samples", samples)
    if steps is not None:
        _check_count("steps", steps)
    run = _Run(coupling, signal, generator, "y", "logit_trajectory", callback, lengths)
    c = run.classify(signal) if evidence is None else run._frames(evidence)
    return run.logit_trajectory(c, signal, steps, samples)


@torch.no_grad()
def noisy(coupling: Coupling, degraded: torch.Tensor, generator=None, *,
          callback: Callable | None = None, lengths=None) -> StrategyResult:
    """Baseline: the classifier on the degraded input, argmax f(d) (no chain runs: `callback` is never called)."""
    run = _Run(coupling, degraded, generator, "", "noisy", callback, lengths)
    return run.result("noisy", None, None, run.classify(degraded))


@torch.no_grad()
def sequential(coupling: Coupling, degraded: torch.Tensor, generator=None, *, signal_steps: int | None = None,
               callback: Callable | None = None, lengths=None):
    """Baseline "enhance then classify": one signal trajectory with the null logit token, then f(x_hat)."""
    run = _Run(coupling, degraded, generator, "x", "sequential", callback, lengths)
    x_hat = run.signal_trajectory(None, signal_steps)
    return run.result("sequential", None, x_hat, run.readout(x_hat))


@torch.no_grad()
def logits_only(coupling: Coupling, degraded: torch.Tensor, generator=None, *, logit_steps: int | None = None,
                logit_samples: int = 1, callback: Callable | None = None, lengths=None):
    """Baseline, CARD-like: one logit trajectory with z = d throughout (`logit_samples` of them, averaged).

    Its `classifier_logits` are norm(f(d)), the `noisy` baseline's: only its `logits` readout is its own.
    """
    return _logit_baseline("logits_only", coupling, degraded, generator, logit_steps, logit_samples, callback, lengths)


@torch.no_grad()
def card(coupling: Coupling, degraded: torch.Tensor, generator=None, *, logit_steps: int | None = None,
         logit_samples: int = 1, callback: Callable | None = None, lengths=None):
    """CARD for a frozen classifier: `logits_only` run with a logit net trained only on the degraded input
    (its features and f(d)); the caller puts that net in the Coupling."""
    return _logit_baseline("card", coupling, degraded, generator, logit_steps, logit_samples, callback, lengths)


def _logit_baseline(method, coupling, degraded, generator, logit_steps, logit_samples, callback, lengths):
    _check_option("logit_samples", logit_samples)
    run = _Run(coupling, degraded, generator, "y", method, callback, lengths)
    c = run.classify(degraded)
    y_hat = run.logit_trajectory(c, degraded, logit_steps, logit_samples)
    return run.result(method, y_hat, None, c)


@torch.no_grad()
def sequential_ensemble(coupling: Coupling, degraded: torch.Tensor, generator=None, *, k: int = 3,
                        signal_steps: int | None = None, callback: Callable | None = None, lengths=None):
    """Equal-cost baseline: K independent sequential trajectories; the classifier's probabilities averaged.

    `classifier_logits` are log(mean_k softmax f(x_hat_k)) (frame logits of a padded batch: zero past each
    item's end, with the frame lengths, as every method's); `x_hat` is the last trajectory's.
    Calls: K N_x D_x, K f.
    """
    _check_option("k", k)
    run = _Run(coupling, degraded, generator, "x", "sequential_ensemble", callback, lengths)
    probs = 0
    for _ in range(k):
        x_hat = run.signal_trajectory(None, signal_steps)
        probs = probs + run.classify_probabilities(run.heard(x_hat))
    return run.result("sequential_ensemble", None, x_hat, run._frames((probs / k).log()))


@torch.no_grad()
def one_step(coupling: Coupling, degraded: torch.Tensor, generator=None, *, callback: Callable | None = None, lengths=None):
    """Cheapest diffusion baseline: one x0_hat of the signal denoiser at the prior (close to an MMSE
    estimate of s given d), then f. Equals `sequential` with one step. Calls: 1 D_x, 1 f."""
    run = _Run(coupling, degraded, generator, "x", "one_step", callback, lengths)
    state = run.signal_step(run.start_signal(1), None)
    return run.result("one_step", None, state.x0_hat, run.readout(state.x0_hat))


def predictive_input(process, degraded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """What a predictive (regression) signal net is shown, in training and in `predictive` alike: the state
    x_t = the prior's mean for `degraded` (d itself for a centred process, zeros for VP), the time t [B] = the top of
    the process's range, and the center (d for a centred process, None for VP)."""
    center = degraded if process.kind == "centred" else None
    t = torch.full((degraded.shape[0],), process.top, device=degraded.device)
    return process.prior_mean(degraded, center), t, center


@torch.no_grad()
def predictive(coupling: Coupling, degraded: torch.Tensor, generator=None, *, callback: Callable | None = None,
               lengths=None):
    """StoRM's predictive stage as a baseline: one x0_hat of the signal denoiser from the degraded input alone
    (`predictive_input`: the prior's mean at the top time, null logit token, no noise drawn), then f. Run with
    a net trained by regression for it (stage `predictive`, file signal_predictive; the bundle swaps it in);
    deterministic: the generator is never read. Calls: 1 D_x, 1 f."""
    run = _Run(coupling, degraded, generator, "x", "predictive", callback, lengths)
    x_t, t, center = predictive_input(run.c.signal_chain.process, run.d)
    x0_hat = run._counted(run.c.signal_denoiser, "signal", observation=run.d, logits=None)(x_t, t, center=center)
    if callback is not None:
        callback(StepEvent("predictive", "signal", 0, float(t[0]), x0_hat, x0_hat, dict(run.calls)))
    return run.result("predictive", None, x0_hat, run.readout(x0_hat))


@torch.no_grad()
def purification(coupling: Coupling, degraded: torch.Tensor, generator=None, *, noise_fraction: float = 0.5,
                 signal_steps: int | None = None, callback: Callable | None = None, lengths=None):
    """DiffPure-style baseline: noise d to the time at `noise_fraction` of the signal process's range, then
    `signal_steps` denoising steps from there (null logit token), then f. Calls: N_x D_x, 1 f."""
    _check_option("noise_fraction", noise_fraction)
    run = _Run(coupling, degraded, generator, "x", "purification", callback, lengths)
    x_hat = run.signal_trajectory(None, signal_steps, start_fraction=noise_fraction, start_from=degraded)
    return run.result("purification", None, x_hat, run.readout(x_hat))


def parallel_schedule(signal_steps: int, logit_steps: int) -> list[int]:
    """Parallel's interleaving: how many signal steps follow each logit step (N_y entries summing to N_x).

    Signal step j follows logit step floor(j N_y / N_x): equal counts alternate one for one; fewer signal
    steps are spread over the logit grid starting at its first step; more come in runs."""
    counts = [0] * logit_steps
    for j in range(signal_steps):
        counts[(j * logit_steps) // signal_steps] += 1
    return counts


@torch.no_grad()
def parallel(
    coupling: Coupling, degraded: torch.Tensor, generator=None, *, signal_steps: int | None = None,
    logit_steps: int | None = None, switch_fraction: float = 0.5, callback: Callable | None = None,
    lengths=None,
):
    """Interleaved scheduler: per logit step, the logit step (evidence from z), then the signal steps that
    `parallel_schedule` puts after it, each conditioned on that y0_hat.

    z is d before the switch (floor(switch_fraction * N_y) on the logit grid) and the latest x0_hat after
    it; f is called again only when x0_hat changed. Calls: N_x D_x, N_y D_y, 1 (f(d)) + the evidence
    refreshes + 1 (f(x_hat)) classifier calls (`expected_calls` counts them).
    """
    _check_option("switch_fraction", switch_fraction)
    run = _Run(coupling, degraded, generator, "xy", "parallel", callback, lengths)
    c_d = run.classify(degraded)
    x_state = run.start_signal(signal_steps)
    y_state = run.start_logits(c_d, logit_steps)
    ny = run.c.logit_chain.steps
    schedule = parallel_schedule(run.c.signal_chain.steps, ny)
    switch = switch_step(ny, switch_fraction)
    z, c, seen = degraded, c_d, None
    for i in range(ny):
        if i >= switch and x_state.x0_hat is not None and x_state.x0_hat is not seen:
            z = seen = x_state.x0_hat
            c = run.classify(z)
        y_state = run.logit_step(y_state, c, z)
        for _ in range(schedule[i]):
            x_state = run.signal_step(x_state, y_state.x0_hat)
    return run.result("parallel", y_state.x, x_state.x, run.readout(x_state.x))


@torch.no_grad()
def alternating(
    coupling: Coupling, degraded: torch.Tensor, generator=None, *, rounds: int = 2,
    signal_steps: int | None = None, logit_steps: int | None = None, logit_samples: int = 1, callback: Callable | None = None,
    lengths=None,
):
    """Block scheduler: R rounds of a full signal trajectory (conditioned on l) then a full logit trajectory.

    l starts as the null token and becomes each round's y_hat (with `logit_samples` > 1, the mean of that
    many logit trajectories). Calls: R N_x D_x, R M N_y D_y, R f.
    """
    _check_option("rounds", rounds)
    _check_option("logit_samples", logit_samples)
    run = _Run(coupling, degraded, generator, "xy", "alternating", callback, lengths)
    logits = None
    for _ in range(rounds):
        x_hat = run.signal_trajectory(logits, signal_steps)
        c = run.classify(x_hat)
        logits = run.logit_trajectory(c, x_hat, logit_steps, logit_samples)
    if coupling.observation_weight:  # the readout hears x_hat with the observation added; the logit chain did not
        c = run.readout(x_hat)
    return run.result("alternating", logits, x_hat, c)


@torch.no_grad()
def nested(
    coupling: Coupling, degraded: torch.Tensor, generator=None, *, signal_steps: int | None = None,
    logit_steps: int | None = None, refresh_every: int = 2, refresh_window: tuple[float, float] = (0.5, 1.0),
    refresh_from: float = 1.0, refresh_signal_steps: int | None = None, callback: Callable | None = None,
    lengths=None,
):
    """Hierarchical scheduler: one logit trajectory; a full signal trajectory before it and at each refresh step.

    A refresh is conditioned on the current y0_hat; each logit step uses z = the latest x_hat. With
    `refresh_from` < 1 a refresh is warm-started: it noises the previous x_hat to that fraction of the
    time range and runs `refresh_signal_steps` (default: signal_steps) steps from there.
    Calls: N_x + refreshes x N_r D_x, N_y D_y, (1 + refreshes) f.
    """
    _check_option("refresh_every", refresh_every)
    _check_option("refresh_from", refresh_from)
    _check_option("refresh_window", refresh_window)
    run = _Run(coupling, degraded, generator, "xy", "nested", callback, lengths)
    x_hat = run.signal_trajectory(None, signal_steps)
    c = run.classify(x_hat)
    y_state = run.start_logits(c, logit_steps)
    refresh = set(refresh_steps(run.c.logit_chain.steps, refresh_every, refresh_window))
    for i in range(run.c.logit_chain.steps):
        if i in refresh:
            steps = refresh_signal_steps if refresh_from < 1 and refresh_signal_steps else signal_steps
            x_hat = run.signal_trajectory(y_state.x0_hat, steps, refresh_from, x_hat)
            c = run.classify(x_hat)
        y_state = run.logit_step(y_state, c, x_hat)
    if coupling.observation_weight:  # the readout hears x_hat with the observation added; the logit chain did not
        c = run.readout(x_hat)
    return run.result("nested", y_state.x, x_hat, c)


# the registry's lists, in the order reports show them: the classifier alone, signal-side baselines, logit-side
# ones, then the coupled strategies; PAPER_METHODS are the paper's six (what `coupled evaluate` runs by default)
BASELINES = ("noisy", "sequential", "one_step", "predictive", "purification", "sequential_ensemble", "logits_only",
             "card")
COUPLED = ("parallel", "alternating", "nested")
PAPER_METHODS = ("noisy", "sequential", "logits_only", *COUPLED)
METHODS = {
    "noisy": noisy, "sequential": sequential, "logits_only": logits_only, "card": card,
    "sequential_ensemble": sequential_ensemble, "one_step": one_step, "predictive": predictive,
    "purification": purification,
    "parallel": parallel, "alternating": alternating, "nested": nested,
}
# the methods that draw no random number: one sampling seed gives all there is
NOISELESS = ("noisy", "predictive")
# the methods that run a signal chain: their classifier readout hears a signal estimate (observation adding acts there)
SIGNAL_METHODS = tuple(m for m in METHODS if m not in ("noisy", "logits_only", "card"))
# `classifier` is argmax f(x_hat) (f(d) for noisy), `logits` argmax y_hat; the logit-only baselines' f(d)
# is noisy's row again, so they have the logits readout alone
_READOUTS = {"noisy": ("classifier",), "logits_only": ("logits",), "card": ("logits",)}


def readouts(method: str) -> tuple[str, ...]:
    """The readouts a method has rows for: 'logits' (argmax y_hat) and/or 'classifier' (argmax f(x_hat))."""
    if method in _READOUTS:
        return _READOUTS[method]
    return ("logits", "classifier") if method in COUPLED else ("classifier",)


def method_options(method: str) -> list[str]:
    """The keyword options a method takes (its settings; `callback` is not one)."""
    if method not in METHODS:
        raise CoupledError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    params = inspect.signature(METHODS[method]).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in ("callback", "lengths")]


def check_method_options(method: str, options: dict, prefix: str = "") -> None:
    """`options` of `method` checked without running it: an unknown option or a value out of range is one
    CoupledError (an option's name in it is preceded by `prefix`, e.g. 'config key sampling.methods.nested.')."""
    valid = method_options(method)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise CoupledError(
            f"unknown option(s) {unknown} for method {method!r}; valid: {', '.join(valid) or 'none'}"
        )
    for name, value in options.items():
        OPTION_CHECKS[name](prefix + name, value)


def run_method(method: str, coupling: Coupling, degraded: torch.Tensor, generator=None, *,
               callback: Callable | None = None, lengths=None, measurement=None, **options) -> StrategyResult:
    """Run a method by name; unknown methods and options are errors that list the valid ones.

    `callback(event)` is called with a `StepEvent` after every signal and logit step (None: not at all).
    `lengths` [B]: each item's valid extent along the signal's last axis in a zero-padded batch (None: every
    item is whole); with it every item's result is the one it gets alone (see `_Run`).
    `measurement`: the batch's `operators.Measurement` (y = A x + n), bound to a zero-shot signal chain
    (sampler dps, pigdm or ddnm) for this call; the signal denoiser is then a prior (it is still called with
    `observation=degraded` and `logits=`, which an unconditional net may ignore).
    """
    check_method_options(method, options)
    if measurement is not None:
        if coupling.signal_chain is None or not coupling.signal_chain.zero_shot:
            raise CoupledError("a measurement is for a zero-shot signal chain (sampler dps, pigdm or ddnm); "
                               "this coupling's signal chain is not one")
        coupling = replace(coupling, signal_chain=coupling.signal_chain.with_measurement(measurement))
    return METHODS[method](coupling, degraded, generator, callback=callback, lengths=lengths, **options)


def expected_calls(method: str, coupling: Coupling, **options) -> dict:
    """The exact call counts (and passes of unguided nets) the spec's formulas give for `method` (per batch)."""
    sx = coupling.signal_chain.with_steps(options.get("signal_steps")) if coupling.signal_chain else None
    sy = coupling.logit_chain.with_steps(options.get("logit_steps")) if coupling.logit_chain else None
    nx = sx.steps * sx.calls_per_step if sx else 0
    ny = sy.steps * sy.calls_per_step if sy else 0
    m = options.get("logit_samples", 1)
    if method == "noisy":
        out = (0, 0, 1)
    elif method in ("sequential", "purification"):
        out = (nx, 0, 1)
    elif method == "one_step":
        out = (sx.calls_per_step, 0, 1)
    elif method == "predictive":
        out = (1, 0, 1)
    elif method == "sequential_ensemble":
        k = options.get("k", 3)
        out = (k * nx, 0, k)
    elif method in ("logits_only", "card"):
        out = (0, m * ny, 1)
    elif method == "parallel":
        schedule = parallel_schedule(sx.steps, sy.steps)
        switch = switch_step(sy.steps, options.get("switch_fraction", 0.5))
        done = [sum(schedule[:i]) for i in range(sy.steps)]  # signal steps taken before logit step i
        refreshes = len({done[i] for i in range(max(switch, 0), sy.steps) if done[i] > 0})
        out = (nx, ny, 2 + refreshes)
    elif method == "alternating":
        r = options.get("rounds", 2)
        out = (r * nx, r * m * ny, r + (coupling.observation_weight > 0))
    elif method == "nested":
        k = len(refresh_steps(sy.steps, options.get("refresh_every", 2), options.get("refresh_window", (0.5, 1.0))))
        warm = options.get("refresh_from", 1.0) < 1 and options.get("refresh_signal_steps")
        nr = options["refresh_signal_steps"] * sx.calls_per_step if warm else nx
        out = (nx + k * nr, ny, 1 + k + (coupling.observation_weight > 0))
    else:
        raise CoupledError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    return {"signal": out[0], "logits": out[1], "classifier": out[2], "signal_passes": out[0], "logits_passes": out[1]}
