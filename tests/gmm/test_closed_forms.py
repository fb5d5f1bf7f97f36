"""The Bayes-limit domain's closed forms against Monte Carlo (issue 18, item 4).

Tolerances. A conditional expectation m(x) = E[s | x] is characterised by orthogonality: E[(s - m(x)) g(x)] = 0
for every function g of x, and its mean squared error equals the expected conditional variance E[tr Cov(s | x)].
The tests draw N joint samples and check those identities for a few g's; each sample mean has a standard
error estimated from the same draws, and a check passes within Z = 4.5 standard errors (under the CLT a false
failure has probability ~ 7e-6 per check; the draws are seeded, so a pass is reproducible). What that
tolerance catches at N = 10,000, checked by breaking the closed forms while writing the tests: a component
weight without its log-determinant, a denoiser gain 10% too large, a posterior variance 20% too large each
move at least one statistic by 14 to 21 standard errors (and others past Z). Accuracies are binomial: the same Z applies with
sqrt(p (1 - p) / N).
"""

import math

import pytest
import torch

from coupled.domains.gmm.mixture import Components, GaussianMixture, bayes_accuracy, make_mixture, two_class_bayes_accuracy
from coupled.domains.gmm.networks import BayesClassifier, ExactSignalNet, GaussianLogitNet, MixtureNetConfig
from coupled.engine import Chain, Coupling, Denoiser, FrozenClassifier, VPProcess, run_method

Z = 4.5
N = 10000
VP = VPProcess(1000, "cosine")


def _zero_mean(values: torch.Tensor, what: str):
    """Each column of `values` [N, M] has mean 0 within Z standard errors."""
    mean, se = values.mean(0), values.std(0) / math.sqrt(values.shape[0])
    z = (mean / se).abs()
    assert (z < Z).all(), f"{what}: |mean| / se = {z.max().item():.1f} (mean {mean[z.argmax()].item():.4f})"


def _joint(mixture, noise, n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    s, y, comp = mixture.sample(n, g)
    d = s + noise * torch.randn(s.shape, generator=g, dtype=torch.float64)
    return s, y, d, g


@pytest.mark.parametrize("geometry", ["means", "sandwich"])
def test_the_posterior_mean_and_variance_agree_with_monte_carlo(geometry):
    m = make_mixture(4, 3, geometry, 1.5, seed=1)
    noise = 0.7
    s, y, d, _ = _joint(m, noise)
    mean, tr_var = m.components(noise, d).moments(len(d))  # E[s | d] and tr Cov(s | d)
    err = s - mean
    g_funcs = torch.cat([torch.ones(len(d), 1, dtype=torch.float64), d, d**2, m.class_log_posterior(d, noise).exp()], 1)
    _zero_mean((err[:, :, None] * g_funcs[:, None, :]).reshape(len(d), -1), "orthogonality of s - E[s|d]")
    _zero_mean(((err**2).sum(1) - tr_var)[:, None], "MSE of E[s|d] vs E[tr Cov(s|d)]")


@pytest.mark.parametrize("t", [100, 500, 900])
def test_the_diffusion_denoisers_are_conditional_expectations(t):
    """E[s | x_t, d] (observation-conditioned), E[s | x_t] (unconditional) and E[s | x_t, d, k] (class-conditioned)."""
    m = make_mixture(4, 3, "means", 1.5, seed=2)
    noise = 0.8
    s, y, d, g = _joint(m, noise, seed=3)
    a, _, sig = (c.item() for c in VP.coefficients(torch.tensor([float(t)])))
    x_t = a * s + sig * torch.randn(s.shape, generator=g, dtype=torch.float64)
    feats = lambda *xs: torch.cat([torch.ones(len(s), 1, dtype=torch.float64), *xs, *(x**2 for x in xs)], 1)  # noqa: E731
    cases = {
        "unconditional": (m.components().denoise(x_t, torch.tensor([a]), torch.tensor([sig]), with_cov=True), feats(x_t)),
        "observation": (m.components(noise, d).denoise(x_t, torch.tensor([a]), torch.tensor([sig]), with_cov=True), feats(x_t, d)),
    }
    onehot = torch.full((len(s), m.num_classes), -math.inf, dtype=torch.float64)
    onehot[torch.arange(len(s)), y] = 0.0
    cls = m.components(noise, d).reweighted(onehot).denoise(x_t, torch.tensor([a]), torch.tensor([sig]), with_cov=True)
    cases["class"] = (cls, torch.cat([feats(x_t, d), torch.nn.functional.one_hot(y, m.num_classes).double()], 1))
    for name, ((mean, tr_var), gf) in cases.items():
        err = s - mean
        _zero_mean((err[:, :, None] * gf[:, None, :]).reshape(len(s), -1), f"{name} denoiser at t={t}")
        _zero_mean(((err**2).sum(1) - tr_var)[:, None], f"{name} denoiser's MSE at t={t}")


def _two_classes(dim=3):
    g = torch.Generator().manual_seed(5)
    A = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    cov = A @ A.T / dim + 0.2 * torch.eye(dim, dtype=torch.float64)
    mu = torch.randn(2, dim, generator=g, dtype=torch.float64)
    return GaussianMixture(mu, cov.expand(2, dim, dim).clone(), torch.tensor([0.5, 0.5], dtype=torch.float64),
                           torch.tensor([0, 1]), 2), cov


@pytest.mark.parametrize("noise", [0.0, 0.5, 1.5])
def test_bayes_accuracy_equals_the_two_class_closed_form(noise):
    """Two equally likely classes sharing a covariance: the Bayes accuracy from d is Phi(Delta / 2). The Monte Carlo
    estimates (E[max_k p(k|d)] and the accuracy of argmax p(k|d)) agree with it; at noise 0 the accuracy is the
    BayesClassifier network's on clean signals."""
    m, cov = _two_classes()
    exact = two_class_bayes_accuracy(m.means[0], m.means[1], cov, noise)
    g = torch.Generator().manual_seed(11)
    maxp, se, acc = bayes_accuracy(m, noise, N, g)
    assert abs(maxp - exact) < Z * se, (maxp, exact, se)
    assert abs(acc - exact) < Z * math.sqrt(exact * (1 - exact) / N), (acc, exact)
    if noise == 0.0:
        net = BayesClassifier(MixtureNetConfig(dim=3, classes=2))
        for name, value in (("means", m.means), ("covs", m.covs), ("weights", m.weights), ("labels", m.labels)):
            getattr(net, name).copy_(value)
        s, y, _ = m.sample(N, torch.Generator().manual_seed(12))
        hits = (net(s.float()).argmax(1) == y).double().mean().item()
        assert abs(hits - exact) < Z * math.sqrt(exact * (1 - exact) / N)


def test_the_bayes_limit_is_the_best_any_classifier_of_d_reaches():
    """argmax p(k|d) beats the clean Bayes classifier f applied to d, on the same draws (the room methods have)."""
    m = make_mixture(8, 4, "means", 2.0, seed=0)
    s, y, d, _ = _joint(m, 1.0, n=5000)
    bayes = (m.class_log_posterior(d, 1.0).argmax(1) == y).double().mean()
    noisy = (m.class_log_posterior(d).argmax(1) == y).double().mean()
    assert bayes > noisy + 0.05


def _coupling(cfg, steps=5):
    return Coupling(FrozenClassifier(BayesClassifier(cfg), cfg.classes), Denoiser(ExactSignalNet(cfg), VP, "x0"),
                    Denoiser(GaussianLogitNet(cfg), VP, "x0"), Chain(VP, steps, "ddim"), Chain(VP, steps, "ddim"))


def test_the_signal_net_reads_logits_as_class_evidence_and_adds_its_error():
    cfg = MixtureNetConfig(dim=4, classes=3, separation=1.5, noise_levels=[0.8], logit_weight=0.0)
    net = ExactSignalNet(cfg)
    g = torch.Generator().manual_seed(0)
    x_t, d = torch.randn(64, 4, generator=g), torch.randn(64, 4, generator=g)
    t = torch.full((64,), 0.4)
    logits = torch.randn(64, 3, generator=g)
    # weight 0: the logits change nothing (the null token)
    assert torch.equal(net(x_t, t, d), net(x_t, t, d, logits=logits))
    # a one-hot class evidence with a huge weight: the class-conditioned denoiser
    strong = ExactSignalNet(MixtureNetConfig(**{**cfg.to_dict(), "logit_weight": 1e4}))
    hot = torch.nn.functional.one_hot(torch.arange(64) % 3, 3).float()
    a, _, s = VP.coefficients(t.double() * 1000)
    onehot = torch.where(hot.bool(), 0.0, -math.inf).double()
    want = strong.mixture.components(0.8, d.double()).reweighted(onehot).denoise(x_t.double(), a, s)
    assert torch.allclose(strong(x_t, t, d, logits=hot).double(), want, atol=1e-5)
    # masked items get the null token
    mask = torch.arange(64) % 2 == 0
    out = strong(x_t, t, d, logits=hot, logits_mask=mask)
    assert torch.allclose(out[~mask], net(x_t, t, d)[~mask])
    # the added error has the RMS it is given (over states with a phase that wraps: within 10%)
    noisy = ExactSignalNet(MixtureNetConfig(**{**cfg.to_dict(), "error": 0.3}))
    xs = torch.randn(20000, 4, generator=g)
    ts = 0.999 * torch.rand(20000, generator=g)
    rms = (noisy(xs, ts, xs) - net(xs, ts, xs)).pow(2).mean().sqrt().item()
    assert abs(rms - 0.3) < 0.03, rms


def test_noise_levels_marginalise_to_the_known_level_when_one_dominates():
    """A net for several noise levels equals the single-level net on d whose level is unmistakable."""
    base = dict(dim=4, classes=3, separation=1.5)
    one = ExactSignalNet(MixtureNetConfig(**base, noise_levels=[0.3]))
    many = ExactSignalNet(MixtureNetConfig(**base, noise_levels=[0.3, 300.0]))
    m = one.mixture
    s, _, _ = m.sample(200, torch.Generator().manual_seed(1))
    d = (s + 0.3 * torch.randn(s.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)).float()
    x_t, t = torch.randn(200, 4), torch.full((200,), 0.5)
    assert torch.allclose(one(x_t, t, d), many(x_t, t, d), atol=1e-3)


def test_many_step_sampling_with_the_exact_denoiser_reproduces_the_posterior():
    """Sequential (DDIM, 100 steps) on one d repeated: the samples' mean is E[s|d] and the classifier's votes on
    them are p(k|d). Tolerance: Z standard errors of the 4000 samples plus 0.02 for the 100-step discretisation
    (measured: the 400-step run moves the statistics by less than 0.01)."""
    cfg = MixtureNetConfig(dim=4, classes=3, separation=1.5, noise_levels=[0.8])
    m = cfg.mixture()
    d0 = torch.tensor([[0.9, -0.4, 0.3, 0.8]], dtype=torch.float64)
    n = 4000
    d = d0.expand(n, 4).float()
    res = run_method("sequential", _coupling(cfg, 100), d, torch.Generator().manual_seed(0))
    x = res.x_hat.double()
    mean, _ = m.components(0.8, d0).moments(1)
    se = x.std(0) / math.sqrt(n)
    assert ((x.mean(0) - mean[0]).abs() < Z * se + 0.02).all(), (x.mean(0), mean[0])
    votes = torch.bincount(m.class_log_posterior(x).argmax(1), minlength=3).double() / n
    p = m.class_log_posterior(d0, 0.8).exp()[0]
    assert ((votes - p).abs() < Z * (p * (1 - p) / n).sqrt() + 0.02).all(), (votes, p)
