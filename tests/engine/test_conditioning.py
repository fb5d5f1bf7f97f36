"""`engine.plan` against the strategies themselves: call by call, what each network is shown.

The spies of the harness record every denoiser call; a callback records where each trajectory ends. From
those records the test rebuilds, for each call, the step, the time and where its conditioning came from,
and compares that with the plan. Joint training draws from the same plans (tests/image/test_joint_parity.py).
"""

import pytest
import torch

from coupled.engine import COUPLED, CentredProcess, Chain, Coupling, FrozenClassifier, VPProcess, plan, run_method
from coupled.engine import item_generators
from coupled.errors import CoupledError

from .harness import K, LinearClassifier, SpyLogit, SpySignal, degraded

CASES = [
    ("parallel", {"signal_steps": 1, "logit_steps": 5, "switch_fraction": 0.5}),
    ("parallel", {"signal_steps": 2, "logit_steps": 5, "switch_fraction": 0.5}),
    ("parallel", {"signal_steps": 5, "logit_steps": 5, "switch_fraction": 0.5}),
    ("parallel", {"signal_steps": 2, "logit_steps": 10, "switch_fraction": 0.5}),
    ("parallel", {"signal_steps": 7, "logit_steps": 3, "switch_fraction": 0.25}),
    ("parallel", {"signal_steps": 3, "logit_steps": 4, "switch_fraction": 0.0}),
    ("parallel", {"signal_steps": 3, "logit_steps": 4, "switch_fraction": 1.0}),
    ("alternating", {"rounds": 1, "signal_steps": 1, "logit_steps": 5}),
    ("alternating", {"rounds": 2, "signal_steps": 2, "logit_steps": 5}),
    ("alternating", {"rounds": 3, "signal_steps": 1, "logit_steps": 4, "logit_samples": 3}),
    ("nested", {"signal_steps": 2, "logit_steps": 5, "refresh_every": 2, "refresh_window": (0.5, 1.0)}),
    ("nested", {"signal_steps": 1, "logit_steps": 10, "refresh_every": 1, "refresh_window": (0.0, 1.0)}),
    ("nested", {"signal_steps": 2, "logit_steps": 6, "refresh_from": 0.3, "refresh_signal_steps": 1}),
    ("nested", {"signal_steps": 3, "logit_steps": 4, "refresh_every": 0}),
]


def _coupling(log):
    """A VP ddim signal chain and a centred pc logit chain (one call per step), so the logit chain has a center."""
    vp, centred = VPProcess(1000), CentredProcess()
    return Coupling(FrozenClassifier(LinearClassifier(), num_classes=K), SpySignal(log), _CenterSpy(log),
                    Chain(vp, 5, "ddim", eta=1.0), Chain(centred, 5, "pc", corrector_steps=0))


class _CenterSpy(SpyLogit):
    def __call__(self, y, t, center=None, evidence=None, signal=None):
        out = super().__call__(y, t, center, evidence, signal)
        self.log[-1]["center"] = center
        return out


def _same(a, b):
    return a is not None and b is not None and a.shape == b.shape and torch.equal(a, b)


def _sources(value, outputs, ends):
    """What `value` may be: the estimate of a step (the latest one it equals) and/or a trajectory's end (a
    trajectory's last x0_hat is also its end, so both can hold); an average of ends counts as an end."""
    match = [i for i, x0 in outputs if _same(value, x0)]
    found = {("estimate", match[-1])} if match else set()
    if any(_same(value, x) for x in ends) or not match:
        found.add(("final", None))
    return found


def observed_visits(method, options, d):
    """Run `method` with spies; per call, its (chain, index, t, center) and the sources its conditioning may have."""
    log = []
    coupling = _coupling(log)
    run_method(method, coupling, d, item_generators(range(len(d))), callback=lambda e: log.append({"kind": "event", "e": e}),
               **options)
    calls, outputs, ends, first_z = [], {"signal": [], "logits": []}, {"signal": [], "logits": []}, None
    for k, rec in enumerate(log):
        if rec["kind"] == "event":
            e = rec["e"]
            outputs[e.chain].append((e.index, e.x0_hat))
            ends[e.chain].append(e.x)
            continue
        index = next(r["e"].index for r in log[k:] if r["kind"] == "event")
        if rec["kind"] == "signal":
            cond = rec["logits"]
            found = {("null", None)} if cond is None else _sources(cond, outputs["logits"], ends["logits"])
            calls.append((("signal", index, None), rec["t"], found))
        else:
            z = rec["signal"]
            first_z = z if index == 0 else first_z
            found = {("observation", None)} if _same(z, d) else _sources(z, outputs["signal"], ends["signal"])
            center = ("observation" if _same(rec["center"], coupling.classifier(d)) else
                      "evidence" if _same(rec["center"], coupling.classifier(first_z)) else "other")
            calls.append((("logits", index, center), rec["t"], found))
    return calls, coupling


@pytest.mark.parametrize("method,options", CASES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(CASES)])
def test_each_strategy_shows_the_networks_what_its_plan_says(method, options):
    d = degraded(batch=3)
    seen, coupling = observed_visits(method, options, d)
    planned = plan(method, coupling.signal_chain, coupling.logit_chain, **options)
    assert len(seen) == len(planned)
    for k, ((where, t, found), v) in enumerate(zip(seen, planned)):
        assert where == (v.chain, v.index, v.center), (k, where, v)
        assert t == pytest.approx(v.t, abs=1e-6), (k, t, v)
        assert (v.sees, v.source) in found, (k, found, v)


def test_plan_covers_the_coupled_methods_only():
    vp = VPProcess(1000)
    for method in COUPLED:
        assert plan(method, Chain(vp, 3), Chain(vp, 3))
    with pytest.raises(CoupledError, match="no conditioning plan"):
        plan("sequential", Chain(vp, 3), Chain(vp, 3))
