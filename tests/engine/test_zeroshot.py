"""Zero-shot posterior samplers (DPS, PiGDM, DDNM+) and their linear operators (issue 18, item 1).

Exactness tests use a Gaussian prior and the engine's exact Gaussian denoiser (`engine.gaussian`): the
exact posterior of y = A x + n is closed-form (`linear_gaussian_posterior`), so a sampler that is exact in
the many-step limit must reproduce its mean and covariance. Tolerance: 5 Monte Carlo standard errors per
entry (mean: sqrt(C_ii / n); covariance: sqrt((C_ii C_jj + C_ij^2) / n), the standard error of a sample
covariance of Gaussian data), plus a slack for the grid's discretisation, measured at these step counts
to be below 0.01 of the largest posterior variance.
"""

import pytest
import torch

from coupled.engine import (
    AreaDownsample, Chain, CirculantBlur, Coupling, FrozenClassifier, Identity, Mask, Measurement, Separable,
    VPProcess, Zero, expected_calls, item_generators, run_method,
)
from coupled.engine.gaussian import GaussianPrior, linear_gaussian_posterior
from coupled.errors import CoupledError

from .harness import D as FLAT_D
from .harness import LinearClassifier, SpyLogit, SpySignal, degraded

H = W = 4
D = H * W


def _dense(op, shape=(1, H, W)):
    """The matrix of `op` on signals of `shape` (columns A e_i), float64."""
    n = int(torch.tensor(shape).prod())
    basis = torch.eye(n, dtype=torch.float64).view(n, *shape)
    return op(basis).reshape(n, -1).T


def _separable_upsampled_area(n_in=8, n_out=3):
    """Area pooling to n_out then nearest upsampling back (the image domain's `downsample`), per axis."""
    eye = torch.eye(n_in, dtype=torch.float64)[None]
    down = torch.nn.functional.adaptive_avg_pool1d(eye, n_out)[0].T  # [n_out, n_in]
    up = torch.nn.functional.interpolate(torch.eye(n_out, dtype=torch.float64)[None], size=n_in, mode="nearest-exact")[0].T
    return Separable(up @ down, up @ down)


OPERATORS = {
    "identity": (lambda: Identity(), (1, H, W)),
    "zero": (lambda: Zero(), (1, H, W)),
    "mask": (lambda: Mask((torch.rand(1, 1, H, W, generator=torch.Generator().manual_seed(0)) < 0.5)), (1, H, W)),
    "circulant_blur": (lambda: CirculantBlur(1.2, (H, W)), (1, H, W)),
    "area_downsample": (lambda: AreaDownsample(2), (1, H, W)),
    "separable_random": (lambda: Separable(torch.randn(3, H, generator=torch.Generator().manual_seed(1)),
                                           torch.randn(5, W, generator=torch.Generator().manual_seed(2))), (1, H, W)),
    "separable_up_area": (_separable_upsampled_area, (1, 8, 8)),
}


@pytest.mark.parametrize("name", list(OPERATORS))
def test_operator_adjoint_pinv_and_spectral(name):
    make, shape = OPERATORS[name]
    op = make()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, *shape, generator=g, dtype=torch.float64)
    ax = op(x)
    y = torch.randn(ax.shape, generator=g, dtype=torch.float64)
    # the adjoint: <A x, y> = <x, A^T y>
    torch.testing.assert_close((ax * y).sum(), (x * op.adjoint(y)).sum(), rtol=1e-9, atol=1e-9)
    # the pseudo-inverse: A A^+ A = A (to rcond: the blur's gains below 1e-4 of the largest count as 0) and A^+ A A^+ = A^+
    torch.testing.assert_close(op(op.pinv(ax)), ax, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(op.pinv(op(op.pinv(y))), op.pinv(y), rtol=1e-6, atol=1e-6)
    # spectral(x, s -> s^2) = A^T A x and spectral(x, 1[s > 0]) = A^+ A x: the same singular values everywhere
    torch.testing.assert_close(op.spectral(x, lambda s: s * s), op.adjoint(ax), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(op.spectral(x, lambda s: (s > 0).to(s.dtype)), op.pinv(ax), rtol=1e-6, atol=1e-6)


def test_mask_is_per_item_and_batches():
    mask = torch.zeros(3, 1, H, W)
    mask[1, ..., :2] = 1
    op = Mask(mask)
    assert torch.equal(op.batch(1, 2).mask, mask[1:2])
    m = Measurement(op, torch.ones(3, 1, H, W), 0.1).batch(1, 3)
    assert m.y.shape[0] == 2 and m.operator.mask.shape[0] == 2
    with pytest.raises(CoupledError, match="0 \\(missing\\) and 1"):
        Mask(torch.full((1, 1, H, W), 0.5))


def _problem(prior_cov, seed=0, mean_scale=0.3):
    g = torch.Generator().manual_seed(seed)
    mean = mean_scale * torch.randn(D, generator=g)
    x_true = (mean + torch.linalg.cholesky(prior_cov) @ torch.randn(D, generator=g)).view(1, 1, H, W)
    return GaussianPrior(mean, prior_cov), x_true


def _image_denoiser(prior, process):
    flat = prior.denoiser(process)
    return lambda x, t, center=None, **conditioning: flat(x.flatten(1), t).view_as(x)


def _correlated(seed=4):
    a = torch.randn(D, D, generator=torch.Generator().manual_seed(seed))
    return a @ a.T / D + 0.2 * torch.eye(D)


def _run(sampler, op, noise_std, prior, x_true, steps, n, seed=1, **options):
    """n samples of `sampler` for one observation y = A x_true + n, and the exact posterior."""
    process = VPProcess(1000, "cosine")
    g = torch.Generator().manual_seed(seed)
    y = op(x_true)
    y = y + noise_std * torch.randn(y.shape, generator=g)
    A = _dense(op).float()
    post = linear_gaussian_posterior(prior.mean, prior.cov, A, max(noise_std ** 2, 1e-10) * torch.eye(A.shape[0]),
                                     y.flatten(1))
    chain = Chain(process, steps, sampler, **options).with_measurement(Measurement(op, y.expand(n, *y.shape[1:]), noise_std))
    state = chain.run(chain.start((n, 1, H, W), g), _image_denoiser(prior, process), g)
    return state.x.flatten(1).double(), post


def _assert_posterior(xs, post, prior, k=5.0, slack=0.01):
    n = xs.shape[0]
    C, m = post.cov.double(), post.mean[0].double()
    var = C.diagonal().clamp(min=1e-12)
    mean_se = (var / n).sqrt()
    cov_se = ((var[:, None] * var[None, :] + C * C) / n).sqrt()
    scale = var.max()
    mean_err = (xs.mean(0) - m).abs()
    cov_err = (torch.cov(xs.T) - C).abs()
    assert (mean_err <= k * mean_se + slack * scale.sqrt()).all(), f"mean off by {(mean_err / mean_se).max():.1f} se"
    assert (cov_err <= k * cov_se + slack * scale).all(), f"covariance off by {(cov_err / cov_se).max():.1f} se"
    # and the posterior is far from the prior, so a sampler that ignored y would fail
    assert (m - prior.mean.double()).abs().max() > 10 * mean_se.max()


def test_pigdm_samples_the_exact_posterior_of_a_white_gaussian_prior():
    """PiGDM's N(x0_hat, r_t^2 I) is exact for white data of variance v = prior_variance: denoising, noisy."""
    v = 0.5
    prior, x_true = _problem(v * torch.eye(D))
    xs, post = _run("pigdm", Identity(), 0.3, prior, x_true, steps=100, n=4000, eta=0.0, prior_variance=v)
    _assert_posterior(xs, post, prior)


def test_ddnm_samples_the_exact_posterior_when_seen_and_missing_pixels_are_independent():
    """Noise-free inpainting: DDNM sets the seen pixels to y and runs the prior's DDPM on the rest, exact when
    the prior makes them independent of the seen ones (a correlated prior: see the next test)."""
    mask = (torch.rand(1, 1, H, W, generator=torch.Generator().manual_seed(5)) < 0.5)
    seen = mask.flatten()
    cov = _correlated() * (seen[:, None] == seen[None, :]).float()
    prior, x_true = _problem(cov)
    xs, post = _run("ddnm", Mask(mask), 0.0, prior, x_true, steps=100, n=4000)
    _assert_posterior(xs, post, prior)


def test_ddnm_is_not_the_posterior_when_seen_and_missing_pixels_correlate():
    """What the projection costs (the zero-shot literature's known bias, measured in closed form by
    coupled.analysis): on a correlated prior the missing pixels are conditioned on a noised y only."""
    mask = (torch.rand(1, 1, H, W, generator=torch.Generator().manual_seed(5)) < 0.5)
    prior, x_true = _problem(_correlated())
    xs, post = _run("ddnm", Mask(mask), 0.0, prior, x_true, steps=50, n=2000)
    se = (post.cov.double().diagonal().clamp(min=1e-12) / 2000).sqrt()
    assert ((xs.mean(0) - post.mean[0].double()).abs() / se).max() > 10


@pytest.mark.slow
@pytest.mark.parametrize("op,noise_std", [(CirculantBlur(1.0, (H, W)), 0.3), (AreaDownsample(2), 0.1),
                                          (Mask(torch.arange(D).view(1, 1, H, W) % 3 == 0), 0.0)],
                         ids=["blur-noisy", "downsample-noisy", "inpaint-noise-free"])
def test_pigdm_exact_posterior_more_operators(op, noise_std):
    v = 0.7
    prior, x_true = _problem(v * torch.eye(D), seed=2)
    xs, post = _run("pigdm", op, noise_std, prior, x_true, steps=200, n=20000, eta=0.0, prior_variance=v)
    _assert_posterior(xs, post, prior)


def _unconditional(sampler_pair, op, weight=None, n=64, steps=8):
    """Final states of a zero-shot sampler and of the plain sampler it should reduce to, same noise."""
    zero_shot, plain, opts = sampler_pair
    process = VPProcess(1000, "cosine")
    prior, x_true = _problem(_correlated())
    den = _image_denoiser(prior, process)
    y = op(x_true).expand(n, *op(x_true).shape[1:])
    extra = {} if weight is None else {"weight": weight}
    zs = Chain(process, steps, zero_shot, **opts, **extra).with_measurement(Measurement(op, y, 0.0))
    un = Chain(process, steps, plain, **opts)
    out = []
    for chain in (zs, un):
        g = torch.Generator().manual_seed(7)
        out.append(chain.run(chain.start((n, 1, H, W), g), den, g).x)
    return out


PAIRS = {"dps": ("dps", "ddim", {"eta": 0.3}), "pigdm": ("pigdm", "ddim", {"eta": 0.3}), "ddnm": ("ddnm", "ddpm", {})}


@pytest.mark.parametrize("name", list(PAIRS))
def test_reduces_to_the_unconditional_sampler_when_A_is_zero_or_the_weight_is(name):
    a, b = _unconditional(PAIRS[name], Zero())
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    mask = Mask(torch.arange(D).view(1, 1, H, W) % 2 == 0)
    a, b = _unconditional(PAIRS[name], mask, weight=0.0)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    a, b = _unconditional(PAIRS[name], mask)  # and with the measurement, it is not
    assert (a - b).abs().max() > 1e-2


def test_per_step_weights_and_config_round_trip():
    process = VPProcess(1000)
    chain = Chain(process, 3, "dps", weight=[0.1, 0.2, 0.0], eta=0.5)
    assert chain.weight == (0.1, 0.2, 0.0)
    assert Chain.from_dict(chain.to_dict()) == chain
    assert "measurement" not in chain.to_dict()
    assert Chain(process, 2, "pigdm").options == {"eta": 1.0, "weight": 1.0, "prior_variance": 1.0, "clip": None}
    assert Chain.from_dict(Chain(process, 2, "pigdm", clip=[-1, 1]).to_dict()).clip == (-1, 1)
    with pytest.raises(CoupledError, match="one value per step"):
        Chain(process, 2, "dps", weight=[0.1, 0.2, 0.3])
    with pytest.raises(CoupledError, match="does not take option"):
        Chain(process, 2, "ddim", weight=0.5)
    with pytest.raises(CoupledError, match="prior_variance"):
        Chain(process, 2, "pigdm", prior_variance=0)
    with pytest.raises(CoupledError, match="takes no measurement"):
        Chain(process, 2, "ddim").with_measurement(Measurement(Identity(), torch.zeros(1, 2)))
    chain = Chain(process, 2, "ddnm")
    with pytest.raises(CoupledError, match="needs a measurement"):
        chain.step(chain.start((1, 2), torch.Generator()), lambda x, t, center=None: x, torch.Generator())


def _zero_shot_coupling(sampler, steps=4):
    log = []
    process = VPProcess(1000)
    return Coupling(
        classifier=FrozenClassifier(LinearClassifier(), num_classes=5),
        signal_denoiser=SpySignal(log), logit_denoiser=SpyLogit(log),
        signal_chain=Chain(process, steps, sampler), logit_chain=Chain(process, 3, "ddim", eta=0.5),
    )


@pytest.mark.parametrize("sampler", ["dps", "pigdm", "ddnm"])
@pytest.mark.parametrize("method,options", [("sequential", {}), ("parallel", {"switch_fraction": 0.5}),
                                            ("alternating", {"rounds": 2}), ("nested", {"refresh_every": 1})])
def test_a_zero_shot_chain_is_the_signal_chain_of_every_strategy(sampler, method, options):
    coupling = _zero_shot_coupling(sampler)
    d = degraded(batch=4)
    mask = (torch.arange(FLAT_D) % 2 == 0).float()[None]
    m = Measurement(Mask(mask), d * mask, 0.05)
    runs = [run_method(method, coupling, d, item_generators(range(4)), measurement=m, **options) for _ in range(2)]
    assert runs[0].x_hat.shape == d.shape and torch.isfinite(runs[0].x_hat).all()
    assert torch.equal(runs[0].x_hat, runs[1].x_hat)  # deterministic under fixed generators
    assert runs[0].calls == expected_calls(method, coupling, **options)
    with pytest.raises(CoupledError, match="needs a measurement"):
        run_method(method, coupling, d, item_generators(range(4)), **options)


def test_a_measurement_needs_a_zero_shot_chain():
    coupling = _zero_shot_coupling("dps")
    plain = Coupling(coupling.classifier, coupling.signal_denoiser, coupling.logit_denoiser,
                     Chain(VPProcess(1000), 2, "ddim"), coupling.logit_chain)
    d = degraded(batch=2)
    with pytest.raises(CoupledError, match="zero-shot signal chain"):
        run_method("sequential", plain, d, item_generators(range(2)), measurement=Measurement(Identity(), d))
