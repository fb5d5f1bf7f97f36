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
