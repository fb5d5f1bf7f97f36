"""What each network sees at each step of a strategy: one definition, read by sampling's tests and by training.

`plan(method, signal_chain, logit_chain, **options)` lists a strategy's denoiser calls in the order it makes
them, each as a `Visit`: which chain steps, at which grid step and time, and what its conditioning is.

Logit visits (`chain == "logits"`); `sees` names the classifier input z:
    "observation"  z = d (Parallel before its switch, or before any signal step)
    "estimate"     z = the x0_hat of signal step `source` (Parallel after the switch)
    "final"        z = x_hat, the end of a whole signal trajectory (Alternating, Nested)
  and `center` names the logit chain's center: "observation" (norm f(d): Parallel) or "evidence" (norm f of
  the z the trajectory started with: Alternating, Nested).
Signal visits (`chain == "signal"`); `sees` names the logit conditioning l:
    "null"         the null token (the first trajectory of Alternating and of Nested)
    "estimate"     the y0_hat of logit step `source` (Parallel; Nested's refreshes)
    "final"        y_hat, the end of whole logit trajectories (Alternating's later rounds)

The rules are the strategies' own (`switch_step`, `parallel_schedule`, `refresh_steps`, the chains' grids),
and tests/engine/test_conditioning.py checks, call by call, that each strategy does what its plan says.
Joint training (`coupled.training.stages.joint_loss`) draws its conditioning from these plans, on the
sampling grids it is configured with, so training shows the networks what sampling will.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import CoupledError
from .chains import Chain
from .strategies import COUPLED, parallel_schedule, refresh_steps, switch_step

__all__ = ["Visit", "plan", "conditioning_record", "check_sampling"]



@dataclass(frozen=True)
class Visit:
    """One denoiser call of a strategy (see the module docstring for `sees` and `center`)."""

    chain: str
    index: int
    t: float
    sees: str
    source: int | None = None
    center: str | None = None


def _grid(chain: Chain, steps: int | None, start_fraction: float = 1.0) -> list[float]:
    return [float(t) for t in chain.with_steps(steps).with_start(start_fraction).grid[:-1]]


def plan(method: str, signal_chain: Chain, logit_chain: Chain, *, signal_steps: int | None = None,
         logit_steps: int | None = None, **options) -> list[Visit]:
    """The denoiser calls `method` makes with these chains and options, in order (one per chain step; a
    pc corrector's extra calls share their step's visit)."""
    if method not in COUPLED:
        raise CoupledError(f"no conditioning plan for {method!r}; plans exist for: {', '.join(COUPLED)}")
    gx, gy = _grid(signal_chain, signal_steps), _grid(logit_chain, logit_steps)
    return {"parallel": _parallel, "alternating": _alternating, "nested": _nested}[method](
        gx, gy, signal_chain, signal_steps, **options)


def _parallel(gx, gy, signal_chain, signal_steps, *, switch_fraction=0.5, **_):
    schedule, switch = parallel_schedule(len(gx), len(gy)), switch_step(len(gy), switch_fraction)
    visits, done = [], 0
    for i, t in enumerate(gy):
        latest = done - 1 if i >= switch and done else None
        visits.append(Visit("logits", i, t, "observation" if latest is None else "estimate", latest, "observation"))
        for _ in range(schedule[i]):
            visits.append(Visit("signal", done, gx[done], "estimate", i))
            done += 1
    return visits


def _alternating(gx, gy, signal_chain, signal_steps, *, rounds=2, logit_samples=1, **_):
    visits = []
    for r in range(rounds):
        visits += [Visit("signal", j, t, "null" if r == 0 else "final") for j, t in enumerate(gx)]
        visits += [Visit("logits", i, t, "final", None, "evidence") for _ in range(logit_samples) for i, t in enumerate(gy)]
    return visits


def _nested(gx, gy, signal_chain, signal_steps, *, refresh_every=2, refresh_window=(0.5, 1.0), refresh_from=1.0,
            refresh_signal_steps=None, **_):
    visits = [Visit("signal", j, t, "null") for j, t in enumerate(gx)]
    warm = refresh_signal_steps if refresh_from < 1 and refresh_signal_steps else signal_steps
    refresh_grid = _grid(signal_chain, warm, refresh_from)
    for i, t in enumerate(gy):
        if i in refresh_steps(len(gy), refresh_every, refresh_window):
            visits += [Visit("signal", j, tx, "estimate", i - 1) for j, tx in enumerate(refresh_grid)]
        visits.append(Visit("logits", i, t, "final", None, "evidence"))
    return visits


def conditioning_record(methods: dict, grids, null_dropout: float) -> dict:
    """What the joint stage trained the networks with, saved in their JSON (`check_sampling` reads it)."""
    return {"rule": "engine.plan", "methods": methods, "grids": [list(map(int, p)) for p in grids],
            "null_dropout": null_dropout}


def check_sampling(record: dict | None, method: str, options: dict, source: str) -> None:
    """One-line error when sampling `method` with `options` contradicts how the networks were trained: another
    Parallel switch point, or classifier-free guidance from nets trained without the null token."""
    if not record or record.get("rule") != "engine.plan":
        return  # trained before the conditioning was recorded: nothing to compare
    trained = record["methods"].get(method)
    if method == "parallel" and trained is not None:
        want, got = trained.get("switch_fraction", 0.5), options.get("switch_fraction", 0.5)
        if got != want:
            raise CoupledError(f"{source}: parallel switch_fraction {got} contradicts the {want} the networks were "
                               f"trained with; use {want}, or retrain with joint.methods.parallel.switch_fraction: {got}")
    w = options.get("signal_guidance")
    if w is not None and w != 1.0 and not record.get("null_dropout"):
        raise CoupledError(f"{source}: signal_guidance {w} needs the null token, but the networks were trained with "
                           "joint.null_dropout 0; use signal_guidance 1, or retrain with null_dropout > 0")
