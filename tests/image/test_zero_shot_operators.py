"""The image corruptions as linear measurements for the zero-shot samplers (issue 18, item 1): the degraded
image is exactly y = A x (+ noise) with the operator `ImageDomain.linear_measurement` builds."""

import pytest
import torch

from coupled.domains.registry import LabelledSignals, get_domain
from coupled.engine import Measurement
from coupled.errors import CoupledError


def _split(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g) * 2 - 1
    return LabelledSignals(x, torch.zeros(n, dtype=torch.long), 10, "test")


@pytest.mark.parametrize("name,severity", [("occlusion", 13), ("occlusion_noise", 19), ("downsample", 4.0),
                                           ("downsample", 5.6), ("gaussian_blur", 1.5)])
def test_degraded_image_is_the_operator_applied_to_the_clean_one(name, severity):
    image = get_domain("image")
    data = _split()
    d = image.corrupt_set(data.signals, name, severity, 3, lengths=data.lengths, indices=data.ids)
    op, noise_std = image.linear_measurement(name, severity, 3, data)
    assert noise_std == 0.0
    # y = A A^+ d (d projected on A's range, what the evaluation measures) is A x: the seen pixels of an
    # occlusion (its box holds -1 or noise, which A zeroes), the block averages of a downsample, the blur
    torch.testing.assert_close(op(op.pinv(d)).float(), op(data.signals).float(), rtol=1e-5, atol=1e-5)
    if name in ("downsample", "gaussian_blur"):  # d lies in the range already
        torch.testing.assert_close(op(data.signals).float(), d, rtol=1e-5, atol=1e-5)
    # batches of a per-item operator are its items'
    m = Measurement(op, d, noise_std).batch(2, 5)
    torch.testing.assert_close(m.operator(data.signals[2:5]), op(data.signals)[2:5])


def test_gaussian_noise_is_the_identity_with_its_noise_and_pixel_noise_is_not_linear():
    image = get_domain("image")
    op, noise_std = image.linear_measurement("gaussian_noise", 0.5, 0, _split())
    assert noise_std == 0.5 and torch.equal(op(torch.ones(2)), torch.ones(2))
    with pytest.raises(CoupledError, match="not a linear-Gaussian measurement"):
        image.linear_measurement("pixel_noise", 0.3, 0, _split())


def test_zero_shot_variants_of_the_methods_with_a_signal_chain():
    from coupled.evaluation.runner import MethodSpec, parse_zero_shot, zero_shot_specs

    assert parse_zero_shot("dps:weight=2,eta=0.5") == {"sampler": "dps", "weight": 2.0, "eta": 0.5}
    assert parse_zero_shot("pigdm:clip=-1/1") == {"sampler": "pigdm", "clip": [-1.0, 1.0]}
    specs = [MethodSpec("noisy", "noisy"), MethodSpec("sequential", "sequential", {"signal_steps": 20}),
             MethodSpec("parallel", "parallel")]
    out = zero_shot_specs(specs, ["ddnm", "dps:weight=2"], "checkpoints/mnist_prior")
    assert [s.label for s in out] == ["sequential+ddnm", "parallel+ddnm", "sequential+dps:weight=2", "parallel+dps:weight=2"]
    assert out[0].options == {"signal_steps": 20, "zero_shot": {"sampler": "ddnm", "prior": "checkpoints/mnist_prior"}}
    with pytest.raises(CoupledError, match="sampler must be one of"):
        zero_shot_specs(specs, ["ddim"], "p")
    with pytest.raises(CoupledError, match="does not take option"):
        zero_shot_specs(specs, ["ddnm:eta=0.5"], "p")
