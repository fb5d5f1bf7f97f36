"""The conditioning-parity test of issue 8: a joint-training batch shows each network what the strategy whose
step it stands for shows it there (tests/engine/test_conditioning.py checks the strategies against the same
plans). It trains nothing: spies stand in for the networks and record every call, row by row."""

import torch

from coupled.engine import CentredProcess, Chain, Coupling, FrozenClassifier, VPProcess
from coupled.engine.conditioning import check_sampling, conditioning_record
from coupled.training.conditioning import joint_inputs, planned_runs
from coupled.errors import CoupledError

from .engine.harness import D, K, LinearClassifier

METHODS = {"parallel": {"switch_fraction": 0.5}, "alternating": {"rounds": 2},
           "nested": {"refresh_every": 2, "refresh_window": [0.5, 1.0]}}
GRIDS = [[1, 5], [2, 5], [5, 5], [2, 10], [3, 4]]


class Spy:
    """x0_hat = a fixed mix of its inputs; records t, conditioning and output of every call, per row."""

    def __init__(self, log, kind):
        self.log, self.kind = log, kind

    def __call__(self, x, t, center=None, **cond):
        t = torch.as_tensor(t).float().expand(x.shape[0])
        if self.kind == "signal":
            shift = 0 if cond["logits"] is None else 0.1 * cond["logits"].mean(1, keepdim=True)
            out = 0.5 * x + 0.5 * cond["observation"] + shift
        else:
            out = 0.5 * x + 0.5 * cond["evidence"]
        self.log.append({"kind": self.kind, "t": t, "out": out, **cond})
        return out


def _rows(log, kind, t, value, **match):
    """Calls of `kind` at time `t` whose output row equals `value` (and whose named inputs match)."""
    hits = []
    for rec in log:
        if rec["kind"] != kind:
            continue
        for r in range(rec["out"].shape[0]):
            if abs(float(rec["t"][r]) - t) < 1e-6 and torch.equal(rec["out"][r], value) and all(
                    (rec[k] is None) if v is None else torch.equal(rec[k][r], v) for k, v in match.items()):
                hits.append(rec)
    return hits


def test_a_joint_batch_shows_each_network_what_its_strategy_shows_it_at_that_step():
    log = []
    coupling = Coupling(FrozenClassifier(LinearClassifier(), num_classes=K), Spy(log, "signal"), Spy(log, "logits"),
                        Chain(VPProcess(1000), 5, "ddim", eta=1.0), Chain(CentredProcess(), 5, "pc", corrector_steps=0))
    runs = planned_runs(coupling, METHODS, GRIDS)
    g = torch.Generator().manual_seed(0)
    s = torch.randn(256, D, generator=g)
    d = s + 0.5 * torch.randn(256, D, generator=g)
    inp = joint_inputs(coupling, runs, s, d, g)
    c_d, c_z = coupling.classifier(d), coupling.classifier(inp.z)
    seen = set()
    for b in range(len(s)):
        run = runs[inp.runs[b]]
        sv, lv = inp.signal_visits[b], inp.logit_visits[b]
        seen.add((run.method, sv.sees, lv.sees))
        # both visits are steps of the item's planned run, trained at those steps' grid times
        assert sv in run.of("signal") and lv in run.of("logits")
        assert float(inp.t_x[b]) == sv.t and float(inp.t_y[b]) == lv.t
        # the signal net's logits: the y0_hat of the very logit step it follows (the logit branch's, same item)
        if sv.sees == "estimate":
            assert lv.index == sv.source
        if sv.sees == "final":  # a whole logit trajectory on this item's z: its last step ran on z's evidence
            last = run.of("logits")[len(run.of("logits")) // run.options.get("logit_samples", 1) - 1].t
            assert any(abs(float(rec["t"][r]) - last) < 1e-6 and torch.equal(rec["evidence"][r], c_z[b])
                       for rec in log if rec["kind"] == "logits" for r in range(rec["out"].shape[0]))
            assert inp.final_logits[b].abs().sum() > 0
        else:
            assert torch.equal(inp.final_logits[b], torch.zeros(K))
        # the logit net's z: d, the x0_hat of the signal step it comes from (at that step's time), or a finished x_hat
        if lv.sees == "observation":
            assert torch.equal(inp.z[b], d[b])
        elif lv.sees == "estimate":
            src = run.of("signal")[lv.source].t
            assert _rows(log, "signal", src, inp.z[b], observation=d[b], logits=None)
        else:  # the last step of a null-token signal trajectory on the run's grid
            assert _rows(log, "signal", run.of("signal")[run.signal_steps - 1].t, inp.z[b], observation=d[b], logits=None)
        # the logit chain's center: the observation's opinion (Parallel) or the evidence it started from
        assert torch.equal(inp.center[b], c_d[b] if lv.center == "observation" else c_z[b])
    # every kind of step of every strategy was drawn
    assert {("parallel", "estimate", "observation"), ("parallel", "estimate", "estimate"), ("alternating", "null", "final"),
            ("alternating", "final", "final"), ("nested", "null", "final"), ("nested", "estimate", "final")} <= seen


def test_sampling_that_contradicts_the_training_is_refused():
    record = conditioning_record(METHODS, GRIDS, 0.2)
    check_sampling(record, "parallel", {"switch_fraction": 0.5}, "x")
    check_sampling(None, "parallel", {"switch_fraction": 0.3}, "x")  # trained before it was recorded
    for method, options, match in [("parallel", {"switch_fraction": 0.3}, "switch_fraction 0.3 contradicts the 0.5"),
                                   ("parallel", {}, None)]:
        if match is None:
            check_sampling(record, method, options, "x")
            continue
        try:
            check_sampling(record, method, options, "x")
        except CoupledError as e:
            assert match in str(e) and "\n" not in str(e)
        else:
            raise AssertionError("not refused")
    no_null = conditioning_record(METHODS, GRIDS, 0.0)
    try:
        check_sampling(no_null, "nested", {"signal_guidance": 3.0}, "x")
    except CoupledError as e:
        assert "needs the null token" in str(e)
    else:
        raise AssertionError("not refused")
