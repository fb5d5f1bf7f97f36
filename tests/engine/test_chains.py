"""Chain recipes: sampler options are typed per sampler (an option the sampler does not take is an error)."""

import pytest
import torch

from coupled.engine import SAMPLER_OPTIONS, CentredProcess, Chain, VPProcess, sample, sampler_options
from coupled.errors import CoupledError

VP, CE = VPProcess(1000), CentredProcess()


def _one_line_error(fn, match):
    with pytest.raises(CoupledError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("process,sampler,option,value,valid", [
    (VP, "ddpm", "eta", 0.3, "none"),
    (VP, "ddpm", "eta", 0.0, "none"),  # a default value is still an option ddpm does not take
    (VP, "ddim", "corrector_steps", 7, "eta"),
    (VP, "ddim", "snr", 0.5, "eta"),
    (CE, "pc", "eta", 0.0, "corrector_steps, snr"),
])
def test_an_option_the_sampler_does_not_take_is_an_error(process, sampler, option, value, valid):
    message = rf"sampler '{sampler}' does not take option\(s\) {option}; its options: {valid}"
    _one_line_error(lambda: Chain(process, 5, sampler, **{option: value}), message)
    _one_line_error(lambda: sample(lambda x, t: x, process, Chain(process, 5, sampler).grid, torch.zeros(2, 3),
                                   sampler=sampler, **{option: value}), message)
    d = {"process": process.to_dict(), "steps": 5, "sampler": sampler, option: value}
    _one_line_error(lambda: Chain.from_dict(d), message)


@pytest.mark.parametrize("process,options,match", [
    (CE, {"snr": -3}, "snr .* must be a finite number > 0, got -3"),
    (CE, {"snr": 0}, "snr .* must be a finite number > 0"),
    (CE, {"snr": float("nan")}, "snr .* must be a finite number > 0"),
    (CE, {"corrector_steps": -1}, "corrector_steps must be a non-negative integer"),
    (CE, {"corrector_steps": 1.5}, "corrector_steps must be a non-negative integer"),
    (CE, {"corrector_steps": True}, "corrector_steps must be a non-negative integer"),
    (VP, {"eta": -0.1}, r"eta must lie in \[0, 1\]"),
    (VP, {"eta": "0.5"}, r"eta must lie in \[0, 1\]"),
])
def test_invalid_option_values_are_errors(process, options, match):
    sampler = "pc" if process is CE else "ddim"
    _one_line_error(lambda: Chain(process, 5, sampler, **options), match)


def test_the_options_a_sampler_takes_get_their_defaults_and_round_trip():
    assert sampler_options("pc") == {"corrector_steps": 1, "snr": 0.5, "denoise_final": False} == SAMPLER_OPTIONS["pc"]
    _one_line_error(lambda: sampler_options("euler"), "unknown sampler 'euler'; choose one of: ddim, ddpm, pc")
    ddim, ddpm, pc = Chain(VP, 5), Chain(VP, 5, "ddpm"), Chain(CE, 5, "pc", corrector_steps=0)
    assert (ddim.eta, ddim.corrector_steps, ddim.snr) == (0.0, None, None)
    assert ddim == Chain(VP, 5, "ddim", eta=0.0)
    assert ddpm.options == {} and pc.options == {"corrector_steps": 0, "snr": 0.5, "denoise_final": False} and pc.calls_per_step == 1
    for chain in (ddim, ddpm, pc, Chain(VP, 3, "ddim", eta=1.0, spacing="leading")):
        d = chain.to_dict()
        assert set(d) - {"process", "steps", "sampler", "spacing", "start_fraction"} == set(chain.options)
        assert Chain.from_dict(d) == chain
        assert chain.with_steps(2).options == chain.options


# ------------------------------------------------------------------------------- explicit grids (timesteps)


def _run(chain, seed=0, center=None):
    """One trajectory of a fixed smooth toy denoiser (x0_hat = 0.5 tanh x), from a seeded prior."""
    g = torch.Generator().manual_seed(seed)
    state = chain.start((4, 6), g, center=center)
    return chain.run(state, lambda x, t, center=None: 0.5 * torch.tanh(x), g).x


@pytest.mark.parametrize("chain", [Chain(VP, 5, "ddim", eta=1.0), Chain(VP, 3, "ddpm"),
                                   Chain(VP, 4, "ddim", spacing="leading"), Chain(CE, 5, "pc", corrector_steps=1)])
def test_an_explicit_grid_equal_to_the_default_gives_identical_samples(chain):
    center = torch.ones(4, 6) if chain.process.kind == "centred" else None
    explicit = Chain(chain.process, chain.steps, chain.sampler, **chain.options,
                     timesteps=tuple(chain.grid.tolist()))
    assert torch.equal(explicit.grid, chain.grid)
    assert torch.equal(_run(explicit, center=center), _run(chain, center=center))


def test_a_different_explicit_grid_gives_different_samples_and_round_trips():
    default = Chain(VP, 5, "ddim", eta=1.0)
    designed = Chain(VP, 5, "ddim", eta=1.0, timesteps=[979, 939, 795, 507, 173, -1])  # JSON gives lists
    assert designed.timesteps == (979, 939, 795, 507, 173, -1) and designed.grid.tolist()[:-1] == [979, 939, 795, 507, 173]
    assert not torch.equal(_run(designed), _run(default))
    d = designed.to_dict()
    assert d["timesteps"] == [979, 939, 795, 507, 173, -1] and "timesteps" not in default.to_dict()
    assert Chain.from_dict(d) == designed and Chain.from_dict(d) != default
    assert designed.with_steps(5) is designed
    # another count runs the default grid (one_step's one step, a tuned candidate's count): a designed grid is per count
    other = designed.with_steps(3)
    assert other.timesteps is None and other.grid.tolist() == Chain(VP, 3, "ddim", eta=1.0).grid.tolist()
    part = designed.with_start(0.3)  # part-way (purification): the default grid over the last 30%
    assert part.timesteps is None and part.grid.tolist() == Chain(VP, 5, "ddim", eta=1.0, start_fraction=0.3).grid.tolist()
    centred = Chain(CE, 2, "pc", timesteps=torch.tensor([0.9, 0.2, 0.0]))
    assert centred.timesteps == (pytest.approx(0.9), pytest.approx(0.2), 0.0)


@pytest.mark.parametrize("build,match", [
    (lambda: Chain(VP, 3, timesteps=(100, 500, 900, -1)), "strictly descend"),
    (lambda: Chain(VP, 3, timesteps=(900, 500, 500, -1)), "strictly descend"),
    (lambda: Chain(VP, 3, timesteps=(1000, 500, 100, -1)), r"lie in \[0, 999\]"),
    (lambda: Chain(VP, 3, timesteps=(900, 500, 100)), "terminal time -1"),
    (lambda: Chain(VP, 3, timesteps=(900, 500.5, 100, -1)), "integers"),
    (lambda: Chain(VP, 3, timesteps=(900, 100, -1)), "needs 4 times"),
    (lambda: Chain(VP, 3, timesteps="900"), "terminal time|sequence of times"),
    (lambda: Chain(VP, 2, timesteps=(900, 100, -1), spacing="leading"), "replaces spacing"),
    (lambda: Chain(VP, 2, timesteps=(900, 100, -1), start_fraction=0.5), "start_fraction"),
    (lambda: Chain(CE, 2, "pc", timesteps=(1.0, 0.01, 0.0)), r"lie in \[0.03, 1\]"),
    (lambda: Chain.from_dict({"process": VP.to_dict(), "steps": 2, "sampler": "ddim", "timesteps": [9, 5]}), "terminal"),
])
def test_bad_explicit_grids_are_one_line_errors(build, match):
    _one_line_error(build, match)
