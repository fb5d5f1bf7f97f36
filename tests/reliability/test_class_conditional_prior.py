"""A class-conditional prior as a zero-shot chain's denoiser (issue 18: the channel coupling lacks with an
unconditional prior): the logits the strategy passes reach it, classifier-free guidance on them is one option,
and asking an unconditional prior for guidance is one clear error."""

import pytest
import torch

from coupled.bundle import load_bundle
from coupled.checkpoint import load_weights, save_weights
from coupled.errors import CoupledError

from .conftest import BUNDLE


def _prior(folder, *, logits: bool):
    """The bundle's logit-conditioned signal net saved as a prior (with or without `logits: classifier`)."""
    tensors, meta = load_weights(BUNDLE, "signal")
    info = {**meta, "stage": "prior", "observation": "zeros", **({"logits": "classifier"} if logits else {})}
    save_weights(folder, "prior", tensors, info)
    return str(folder)


@pytest.fixture(scope="module")
def priors(tmp_path_factory):
    root = tmp_path_factory.mktemp("priors")
    return load_bundle(BUNDLE), _prior(root / "cond", logits=True), _prior(root / "uncond", logits=False)


def _x0(bundle, prior, y, **extra):
    coupling, _, _ = bundle.prepare("sequential", {"zero_shot": {"sampler": "pigdm", "prior": prior, **extra}})
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(2, 1, 28, 28, generator=g)
    t = torch.full((2,), 500.0)
    den = coupling.signal_denoiser
    return den(x_t, t, observation=torch.ones_like(x_t), logits=y), den


def test_the_logits_reach_a_class_conditional_prior_and_never_an_unconditional_one(priors):
    bundle, cond, uncond = priors
    y1, y2 = torch.zeros(2, 10), torch.zeros(2, 10)
    y1[:, 3], y2[:, 7] = 3.0, 3.0
    a, _ = _x0(bundle, cond, y1)
    b, _ = _x0(bundle, cond, y2)
    null, _ = _x0(bundle, cond, None)
    assert (a - b).abs().max() > 1e-2 and (a - null).abs().max() > 1e-2
    u1, _ = _x0(bundle, uncond, y1)
    u2, _ = _x0(bundle, uncond, y2)
    assert torch.equal(u1, u2)
    # the class-conditional prior's null token is the unconditional prior's call (same weights), whatever d is
    assert torch.allclose(null, u1, atol=1e-6)


def test_guidance_on_the_prior_s_logits_extrapolates_and_counts_two_passes(priors):
    bundle, cond, _ = priors
    y = torch.zeros(2, 10)
    y[:, 3] = 3.0
    plain, den = _x0(bundle, cond, y)
    null, _ = _x0(bundle, cond, None)
    guided, gden = _x0(bundle, cond, y, guidance=2.0)
    off, _ = _x0(bundle, cond, y, guidance=0.0)
    assert den.passes(logits=y) == 1 and gden.passes(logits=y) == 2
    assert torch.allclose(off, null, atol=1e-6)
    # x0_hat is clipped to [-1, 1]: compare where neither extrapolation nor the plain call is clipped
    inside = (guided.abs() < 0.99) & (plain.abs() < 0.99) & (null.abs() < 0.99)
    assert inside.float().mean() > 0.2
    ratio = (guided - null)[inside].norm() / (plain - null)[inside].norm()
    assert ratio == pytest.approx(2.0, rel=0.02)


def test_guidance_on_an_unconditional_prior_or_a_bad_weight_is_one_clear_error(priors):
    bundle, cond, uncond = priors
    with pytest.raises(CoupledError, match="needs a class-conditional prior.*train_prior.py --logits"):
        bundle.prepare("sequential", {"zero_shot": {"sampler": "pigdm", "prior": uncond, "guidance": 2.0}})
    with pytest.raises(CoupledError, match="guidance must be a finite number >= 0"):
        bundle.prepare("sequential", {"zero_shot": {"sampler": "pigdm", "prior": cond, "guidance": -1}})


def test_the_command_line_s_zero_shot_text_carries_guidance(priors):
    from coupled.evaluation.runner import MethodSpec, zero_shot_specs

    _, cond, uncond = priors
    specs = zero_shot_specs([MethodSpec("parallel", "parallel", {})], ["pigdm:weight=2,guidance=2"], cond)
    assert specs[0].options["zero_shot"] == {"sampler": "pigdm", "weight": 2.0, "guidance": 2.0, "prior": cond}
    with pytest.raises(CoupledError, match="guidance must be a finite number >= 0"):
        zero_shot_specs([MethodSpec("parallel", "parallel", {})], ["pigdm:guidance=-2"], uncond)


def test_train_prior_with_logits_writes_a_prior_the_bundle_conditions(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from .conftest import ROOT

    out = tmp_path / "prior_logits"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_prior.py"), "--logits", "--out", str(out),
                           "--steps", "2", "--batch", "4"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads((out / "prior.json").read_text())
    assert meta["logits"] == "classifier" and meta["steps"] == 2 and meta["warm_start"] == "checkpoints/mnist_prior/prior"
    coupling, _, _ = load_bundle(BUNDLE).prepare("sequential", {"zero_shot": {"sampler": "pigdm", "prior": str(out)}})
    assert coupling.signal_denoiser.net.logits
