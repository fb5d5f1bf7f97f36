"""The shared suite every strategy passes: shapes, determinism, batch independence, call counts, order."""

import pytest
import torch

from dataclasses import replace

from coupled.engine import (
    METHODS, NOISELESS, CentredProcess, Chain, VPProcess, expected_calls, item_generators, parallel_schedule,
    randn, refresh_steps, run_method, standardise,
)
from coupled.errors import CoupledError

from .harness import K, T_FRAMES, degraded, make_coupling

OPTIONS = {
    "noisy": [{}],
    "sequential": [{}, {"signal_steps": 3}],
    "logits_only": [{}, {"logit_steps": 2}, {"logit_samples": 3}],
    "card": [{}],
    "sequential_ensemble": [{}, {"k": 2, "signal_steps": 2}],
    "one_step": [{}],
    "predictive": [{}],
    "purification": [{}, {"noise_fraction": 0.3, "signal_steps": 2}, {"noise_fraction": 1.0}],
    "parallel": [{}, {"switch_fraction": 0.0}, {"switch_fraction": 1.0},
                 {"signal_steps": 5, "logit_steps": 5, "switch_fraction": 0.3},
                 {"signal_steps": 1, "logit_steps": 6}, {"signal_steps": 8, "logit_steps": 3}],
    "alternating": [{}, {"rounds": 1}, {"rounds": 3, "signal_steps": 2, "logit_steps": 3}, {"logit_samples": 2}],
    "nested": [{}, {"refresh_every": 1}, {"refresh_every": 0}, {"refresh_every": 1, "refresh_window": (0.0, 0.5)},
               {"refresh_every": 1, "refresh_from": 0.4, "refresh_signal_steps": 2}],
}
NO_LOGIT_CHAIN = {"noisy", "sequential", "sequential_ensemble", "one_step", "predictive", "purification"}
NO_SIGNAL_CHAIN = {"noisy", "logits_only", "card"}
CASES = [(m, o) for m, opts in OPTIONS.items() for o in opts]


@pytest.mark.parametrize("frames", [None, T_FRAMES], ids=["K", "TxK"])
@pytest.mark.parametrize("method,options", CASES)
def test_shapes_and_call_counts(method, options, frames):
    coupling, log = make_coupling(frames)
    d = degraded()
    res = run_method(method, coupling, d, item_generators(range(4)), **options)
    logit_shape = (4, K) if frames is None else (4, frames, K)
    assert res.classifier_logits.shape == logit_shape
    if method in NO_LOGIT_CHAIN:
        assert res.y_hat is None
    else:
        assert res.y_hat.shape == logit_shape
    if method in NO_SIGNAL_CHAIN:
        assert res.x_hat is None
    else:
        assert res.x_hat.shape == d.shape
    assert res.calls == expected_calls(method, coupling, **options)
    assert res.calls["signal"] == sum(e["kind"] == "signal" for e in log)
    assert res.calls["logits"] == sum(e["kind"] == "logits" for e in log)


def _calls(signal, logits, classifier):
    return {"signal": signal, "logits": logits, "classifier": classifier, "signal_passes": signal, "logits_passes": logits}


def test_call_count_formulas_by_hand():
    coupling, _ = make_coupling(signal_steps=6, logit_steps=4)
    assert expected_calls("parallel", coupling, logit_steps=6) == _calls(6, 6, 1 + 3 + 1)
    # 6 signal steps over 4 logit steps: [2, 1, 2, 1]; after the switch (step 2) x0_hat is new at steps 2 and 3
    assert expected_calls("parallel", coupling) == _calls(6, 4, 1 + 2 + 1)
    assert expected_calls("alternating", coupling, rounds=3) == _calls(18, 12, 3)
    assert expected_calls("alternating", coupling, rounds=2, logit_samples=3) == _calls(12, 24, 2)
    # refresh window (0.5, 1) of 4 logit steps, every 1: steps 2 and 3 -> 3 signal trajectories
    assert expected_calls("nested", coupling, refresh_every=1) == _calls(18, 4, 3)
    assert expected_calls("nested", coupling, refresh_every=1, refresh_from=0.3, refresh_signal_steps=2) == _calls(6 + 2 * 2, 4, 3)
    assert expected_calls("sequential_ensemble", coupling, k=4, signal_steps=2) == _calls(8, 0, 4)
    assert expected_calls("one_step", coupling) == _calls(1, 0, 1)
    assert expected_calls("predictive", coupling) == _calls(1, 0, 1)
    assert expected_calls("purification", coupling, signal_steps=3) == _calls(3, 0, 1)
    assert refresh_steps(10, 2, (0.5, 1.0)) == [5, 7, 9]
    assert refresh_steps(10, 3, (0.0, 1.0)) == [3, 6, 9]  # step 0 never refreshes: no y0_hat yet
    pc, _ = make_coupling(sampler="pc", process=CentredProcess())
    assert expected_calls("sequential", pc) == _calls(12, 0, 1)


def test_parallel_schedule_spreads_signal_steps():
    assert parallel_schedule(6, 6) == [1] * 6
    assert parallel_schedule(1, 6) == [1, 0, 0, 0, 0, 0]  # the single signal step comes first: z after the switch
    assert parallel_schedule(2, 5) == [1, 0, 1, 0, 0]
    assert parallel_schedule(6, 4) == [2, 1, 2, 1]
    coupling, log = make_coupling(signal_steps=2, logit_steps=5)
    run_method("parallel", coupling, degraded(), item_generators(range(4)))
    assert _kinds(log) == "ysyysyy"
    assert torch.equal(log[1]["logits"], log[0]["out"]) and torch.equal(log[4]["logits"], log[3]["out"])
    # after the switch (step 2) the logit steps see the newest x0_hat
    assert torch.equal(log[3]["signal"], log[1]["out"]) and torch.equal(log[5]["signal"], log[4]["out"])


def test_one_step_is_sequential_with_one_step_and_ensemble_of_one_is_sequential():
    coupling, _ = make_coupling()
    d = degraded()
    one = run_method("one_step", coupling, d, item_generators(range(4)))
    seq = run_method("sequential", coupling, d, item_generators(range(4)), signal_steps=1)
    assert torch.equal(one.x_hat, seq.x_hat) and torch.equal(one.prediction(), seq.prediction())
    ens = run_method("sequential_ensemble", coupling, d, item_generators(range(4)), k=1)
    seq = run_method("sequential", coupling, d, item_generators(range(4)))
    assert torch.equal(ens.x_hat, seq.x_hat) and torch.equal(ens.prediction(), seq.prediction())
    torch.testing.assert_close(ens.classifier_logits.exp().sum(-1), torch.ones(4))  # log of averaged probabilities


@pytest.mark.parametrize("process", [VPProcess(1000), CentredProcess()], ids=["vp", "centred"])
def test_predictive_is_one_noiseless_call_at_the_priors_mean(process):
    """StoRM's predictive stage: one call of the signal denoiser shown d alone (the prior's mean: zeros for VP, d
    for the centred process; the top time; the null logit token), x_hat its output, f of it the readout; what
    training regresses (`predictive_input`) is what sampling shows."""
    from coupled.engine import predictive_input

    coupling, log = make_coupling(process=process)
    d = degraded()
    res = run_method("predictive", coupling, d, item_generators(range(4)))
    assert len(log) == 1 and log[0]["logits"] is None and log[0]["t"] == process.top
    assert process.top == (999.0 if process.kind == "vp" else 1.0)
    assert torch.equal(log[0]["x"], torch.zeros_like(d) if process.kind == "vp" else d)
    x_t, t, center = predictive_input(process, d)
    assert torch.equal(x_t, log[0]["x"]) and torch.equal(t, torch.full((4,), process.top))
    assert center is (d if process.kind == "centred" else None)
    assert torch.equal(res.x_hat, log[0]["out"])
    torch.testing.assert_close(res.classifier_logits, run_method("noisy", coupling, res.x_hat).classifier_logits)
    assert torch.equal(run_method("predictive", coupling, d).x_hat, res.x_hat)  # no generator needed


def test_purification_starts_part_way_from_the_degraded_input():
    coupling, log = make_coupling()
    d = degraded()
    run_method("purification", coupling, d, item_generators(range(4)), noise_fraction=0.3, signal_steps=3)
    ts = [e["t"] for e in log]
    assert len(ts) == 3 and ts[0] == 299.0 and ts == sorted(ts, reverse=True)
    # its first state is d noised to that time by the forward marginal (the items' first noise draws), so the
    # trajectory starts from the degraded input, not from the prior nor from zeros
    noise = randn(tuple(d.shape), item_generators(range(4)))
    start = coupling.signal_chain.process.add_noise(d, torch.full((4,), 299.0), noise)
    torch.testing.assert_close(log[0]["x"], start, rtol=0, atol=1e-6, msg="purification does not start from d noised to t")
    # the whole range is plain sequential
    full = run_method("purification", coupling, degraded(), item_generators(range(4)), noise_fraction=1.0)
    seq = run_method("sequential", coupling, degraded(), item_generators(range(4)))
    assert torch.equal(full.x_hat, seq.x_hat)


def test_warm_refresh_runs_short_inner_chains():
    coupling, log = make_coupling(signal_steps=4, logit_steps=4)
    run_method("nested", coupling, degraded(), item_generators(range(4)), refresh_every=1, refresh_from=0.25,
               refresh_signal_steps=1)
    assert _kinds(log) == "ssss" + "yy" + "s" + "y" + "s" + "y"
    assert log[6]["t"] == 249.0 and torch.equal(log[6]["logits"], log[5]["out"])


def test_guided_calls_count_two_passes():
    from coupled.engine import Denoiser, GuidedLogits, VPProcess

    class Net(torch.nn.Module):
        def forward(self, x, t, observation=None, logits=None, logits_mask=None):
            return 0.5 * x + 0.5 * observation

    coupling, _ = make_coupling(signal_steps=3, logit_steps=2)
    guided = replace(coupling, signal_denoiser=Denoiser(GuidedLogits(Net(), 3.0), VPProcess(1000), "x0"))
    res = run_method("alternating", guided, degraded(), item_generators(range(4)), rounds=2)
    assert res.calls["signal"] == 6 and res.calls["signal_passes"] == 3 + 2 * 3  # round 1 has no logits to guide by


@pytest.mark.parametrize("method,options", CASES)
def test_determinism_and_batch_independence(method, options):
    coupling, _ = make_coupling(T_FRAMES)
    d = degraded(batch=4)
    a = run_method(method, coupling, d, item_generators([10, 11, 12, 13]), **options)
    b = run_method(method, coupling, d, item_generators([10, 11, 12, 13]), **options)
    one = run_method(method, coupling, d[2:3], item_generators([12]), **options)
    for name in ("y_hat", "x_hat", "classifier_logits"):
        ta, tb, t1 = getattr(a, name), getattr(b, name), getattr(one, name)
        if ta is None:
            continue
        assert torch.equal(ta, tb), f"{method}.{name} not deterministic"
        torch.testing.assert_close(ta[2:3], t1, rtol=1e-5, atol=1e-5)
    if method in NOISELESS:  # no random number drawn: other seeds give the same answer
        c = run_method(method, coupling, d, item_generators([20, 21, 22, 23]), **options)
        for name in ("x_hat", "classifier_logits"):
            assert getattr(a, name) is None or torch.equal(getattr(a, name), getattr(c, name)), f"{method}.{name} read a seed"
    else:
        c = run_method(method, coupling, d, item_generators([20, 21, 22, 23]), **options)
        out = a.y_hat if a.y_hat is not None else a.x_hat
        assert not torch.equal(out, c.y_hat if c.y_hat is not None else c.x_hat), "seed had no effect"


def _kinds(log):
    return "".join("s" if e["kind"] == "signal" else "y" for e in log)


def test_parallel_order_conditioning_and_switch_on_respaced_grid():
    # 6 steps respaced out of 1000: the switch sits at step 3 of the grid run, not at a timestep value
    coupling, log = make_coupling(signal_steps=6, logit_steps=6)
    d = degraded()
    res = run_method("parallel", coupling, d, item_generators(range(4)), switch_fraction=0.5)
    assert _kinds(log) == "ys" * 6
    c_d = coupling.classifier(d)
    for i in range(6):
        y_call, s_call = log[2 * i], log[2 * i + 1]
        assert y_call["t"] == s_call["t"] == float(coupling.signal_chain.grid[i])
        assert torch.equal(s_call["logits"], y_call["out"]), "signal step must see this step's y0_hat"
        if i < 3:
            assert torch.equal(y_call["signal"], d) and torch.equal(y_call["evidence"], c_d)
        else:
            prev_x0 = log[2 * i - 1]["out"]
            assert torch.equal(y_call["signal"], prev_x0)
            torch.testing.assert_close(y_call["evidence"], coupling.classifier(prev_x0))
    torch.testing.assert_close(res.classifier_logits, coupling.classifier(res.x_hat))


def test_alternating_order_and_conditioning():
    coupling, log = make_coupling(signal_steps=3, logit_steps=2)
    res = run_method("alternating", coupling, degraded(), item_generators(range(4)), rounds=2)
    assert _kinds(log) == "sssyy" * 2
    assert all(e["logits"] is None for e in log[:3])  # round 1: null token
    round1_y = log[4]["out"]
    assert all(torch.equal(e["logits"], round1_y) for e in log[5:8])  # round 2: l = y_hat of round 1
    x_hat_2 = log[7]["out"]  # DDIM's last step returns x0_hat
    assert all(torch.equal(e["signal"], x_hat_2) for e in log[8:10])
    assert torch.equal(res.y_hat, log[9]["out"])


def test_nested_order_and_refresh():
    coupling, log = make_coupling(signal_steps=2, logit_steps=4)
    run_method("nested", coupling, degraded(), item_generators(range(4)), refresh_every=1)
    # before the logit chain, then before logit steps 2 and 3 (window (0.5, 1) of 4 steps)
    assert _kinds(log) == "ss" + "yy" + "ss" + "y" + "ss" + "y"
    assert log[0]["logits"] is None
    assert torch.equal(log[4]["logits"], log[3]["out"])  # refresh conditioned on the current y0_hat
    assert torch.equal(log[6]["signal"], log[5]["out"])  # next logit step uses the refreshed x_hat


@pytest.mark.parametrize("method", list(METHODS))
def test_frozen_classifier_weights_untouched(method):
    coupling, _ = make_coupling()
    before = {k: v.clone() for k, v in coupling.classifier.state_dict().items()}
    coupling.classifier.train()
    run_method(method, coupling, degraded(), torch.Generator().manual_seed(0))
    assert not coupling.classifier.module.training
    assert all(not p.requires_grad for p in coupling.classifier.parameters())
    after = coupling.classifier.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def _one_line_error(fn, match):
    with pytest.raises(CoupledError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)


def test_bad_inputs_raise_one_line_errors():
    coupling, _ = make_coupling()
    d = degraded()
    gens = item_generators(range(4))
    _one_line_error(lambda: run_method("parallel", coupling, d, item_generators(range(3))), "3 per-item generators for a batch of 4")
    bad = d.clone()
    bad[1, 2] = float("nan")
    _one_line_error(lambda: run_method("sequential", coupling, bad, gens), "contains NaN")
    _one_line_error(lambda: run_method("parallel", coupling, d, gens, swich_fraction=0.5), "unknown option.*valid: signal_steps, logit_steps, switch_fraction")
    _one_line_error(lambda: run_method("paralel", coupling, d, gens), "unknown method 'paralel'; choose one of")
    _one_line_error(lambda: run_method("sequential", coupling, d, gens, signal_steps=-3), "signal_steps must be an integer >= 1")
    _one_line_error(lambda: Chain(coupling.signal_chain.process, -1), "steps must be a positive integer")
    _one_line_error(lambda: run_method("parallel", coupling, d, gens, switch_fraction=1.5), "switch_fraction must lie in")
    _one_line_error(lambda: run_method("alternating", coupling, d, gens, rounds=0), "rounds must be an integer >= 1")
    _one_line_error(lambda: Chain(CentredProcess(), 5, "ddpm"), "does not run on a centred process; use pc or ddim")
    _one_line_error(lambda: Chain(coupling.signal_chain.process, 5, "ddim", eta=2), "eta must lie in")
    _one_line_error(lambda: run_method("sequential", coupling, d[:, :4], gens), "classifier failed on input of shape")


def test_logit_width_mismatch():
    from dataclasses import replace

    from .harness import SpyLogit

    coupling, log = make_coupling()
    wrong = replace(coupling, logit_denoiser=SpyLogit(log, num_classes=K + 2))
    _one_line_error(lambda: run_method("logits_only", wrong, degraded()), f"gives {K} classes but the logit denoiser expects {K + 2}")
    from coupled.engine import FrozenClassifier

    wrong_k = replace(coupling, classifier=FrozenClassifier(coupling.classifier.module, num_classes=K + 1))
    _one_line_error(lambda: run_method("noisy", wrong_k, degraded()), f"returned {K} classes but num_classes={K + 1}")


def test_standardise_per_item_and_per_frame():
    x = torch.randn(3, 4, 7) * 5 + 2
    z = standardise(x, scale=0.8)
    torch.testing.assert_close(z.mean(-1), torch.zeros(3, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(-1, unbiased=False), torch.full((3, 4), 0.8), atol=1e-3, rtol=0)


@pytest.mark.parametrize("method,options", CASES)
def test_callback_sees_every_step_and_changes_nothing(method, options):
    from coupled.engine import StepEvent

    coupling, _ = make_coupling()
    d = degraded()
    plain = run_method(method, coupling, d, item_generators(range(4)), **options)
    events = []
    seen = run_method(method, coupling, d, item_generators(range(4)), callback=events.append, **options)
    for a, b in ((plain.y_hat, seen.y_hat), (plain.x_hat, seen.x_hat), (plain.classifier_logits, seen.classifier_logits)):
        assert (a is None and b is None) or torch.equal(a, b)
    assert seen.calls == plain.calls
    assert all(isinstance(e, StepEvent) and e.method == method for e in events)
    # the harness's chains take one denoiser call per step: one event per call, in call order
    for chain, key in (("signal", "signal"), ("logits", "logits")):
        mine = [e for e in events if e.chain == chain]
        assert len(mine) == plain.calls[key]
        assert [e.calls[key] for e in mine] == list(range(1, len(mine) + 1))
    assert all(e.x.shape[0] == 4 and e.x0_hat.shape == e.x.shape and e.index >= 0 for e in events)
    if method == "parallel" and not options:
        grid = coupling.logit_chain.grid
        assert [(e.index, e.t) for e in events if e.chain == "logits"] == [(i, float(grid[i])) for i in range(4)]
    last = {e.chain: e for e in events}
    if "signal" in last and method not in ("sequential_ensemble",):
        assert torch.equal(last["signal"].x, seen.x_hat)
    if "logits" in last and method in ("parallel", "nested"):
        assert torch.equal(last["logits"].x, seen.y_hat)


def test_public_trajectories_are_the_methods_own():
    from coupled.engine import logit_trajectory, signal_trajectory

    coupling, _ = make_coupling()
    d = degraded()
    gens = lambda: item_generators(range(4))  # noqa: E731
    assert torch.equal(signal_trajectory(coupling, d, gens()), run_method("sequential", coupling, d, gens()).x_hat)
    assert torch.equal(signal_trajectory(coupling, d, gens(), steps=2, start_fraction=0.3),
                       run_method("purification", coupling, d, gens(), noise_fraction=0.3, signal_steps=2).x_hat)
    assert torch.equal(logit_trajectory(coupling, d, gens(), steps=2, samples=3),
                       run_method("logits_only", coupling, d, gens(), logit_steps=2, logit_samples=3).y_hat)
    events = []
    logits = torch.randn(4, K, generator=torch.Generator().manual_seed(1))
    x = signal_trajectory(coupling, d, gens(), logits=logits, callback=events.append)
    assert [(e.method, e.chain, e.index) for e in events] == [("signal_trajectory", "signal", i) for i in range(6)]
    assert torch.equal(events[-1].x, x) and not torch.equal(x, signal_trajectory(coupling, d, gens()))
    _one_line_error(lambda: signal_trajectory(coupling, d, start_fraction=0), "start_fraction must lie in")
    _one_line_error(lambda: logit_trajectory(coupling, d, samples=0), "samples must be an integer >= 1")


def test_callback_is_not_a_method_option():
    from coupled.engine import method_options

    assert all("callback" not in method_options(m) for m in METHODS)
    assert method_options("parallel") == ["signal_steps", "logit_steps", "switch_fraction"]


@pytest.mark.parametrize("method,options", [(m, o) for m, o in CASES if m not in NO_SIGNAL_CHAIN])
def test_observation_adding_changes_the_classifier_readout_only(method, options):
    """Observation adding (issue 16): the readout hears x_hat + a (d - x_hat); a = 0 is the method as it was,
    a = 1 hears d itself (noisy's answer), the chains and their y_hat are untouched, and the call counts are
    `expected_calls`' (Alternating and Nested spend one more classifier call on the mixed readout)."""
    coupling, _ = make_coupling()
    d = degraded()
    run = lambda c: run_method(method, c, d, item_generators(range(4)), **options)  # noqa: E731
    plain, zero, full = run(coupling), run(replace(coupling, observation_weight=0.0)), run(replace(coupling, observation_weight=1.0))
    assert torch.equal(plain.classifier_logits, zero.classifier_logits) and plain.calls == zero.calls
    noisy = run_method("noisy", coupling, d).classifier_logits
    if method == "sequential_ensemble":  # log of the members' averaged probabilities of f(d), k times the same
        torch.testing.assert_close(full.classifier_logits, coupling.classifier.raw(d).softmax(-1).log())
    else:
        torch.testing.assert_close(full.classifier_logits, noisy)
    assert torch.equal(plain.x_hat, full.x_hat)
    if plain.y_hat is not None:
        assert torch.equal(plain.y_hat, full.y_hat)
    half = replace(coupling, observation_weight=0.5)
    assert run(half).calls == expected_calls(method, half, **options)
    c_mix = run_method("noisy", coupling, plain.x_hat + 0.5 * (d - plain.x_hat)).classifier_logits
    if method != "sequential_ensemble":
        torch.testing.assert_close(run(half).classifier_logits, c_mix)


def test_the_ensemble_averages_frame_posteriors_before_decoding():
    """Issue 16: with frame logits [B, T, K] (speech), the ensemble's readout is the log of the members'
    softmax averaged per frame (then decoded), not an average of their logits."""
    coupling, _ = make_coupling(T_FRAMES)
    d = degraded()
    finals = []
    steps = coupling.signal_chain.steps

    def keep_last(event):
        if event.chain == "signal" and event.index == steps - 1:
            finals.append(event.x)

    ens = run_method("sequential_ensemble", coupling, d, item_generators(range(4)), k=3, callback=keep_last)
    assert ens.classifier_logits.shape == (4, T_FRAMES, K) and len(finals) == 3
    probs = torch.stack([coupling.classifier.raw(x).softmax(-1) for x in finals]).mean(0)
    torch.testing.assert_close(ens.classifier_logits, probs.log())
    torch.testing.assert_close(ens.classifier_logits.exp().sum(-1), torch.ones(4, T_FRAMES))
    mean_logits = torch.stack([coupling.classifier.raw(x) for x in finals]).mean(0).log_softmax(-1)
    assert not torch.allclose(ens.classifier_logits, mean_logits)  # probabilities, not logits, are averaged
