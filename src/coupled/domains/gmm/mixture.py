"""Closed forms of a class-conditional Gaussian mixture observed through additive white Gaussian noise.

The signal s in R^D is drawn from C Gaussian components, component c with weight w_c, mean mu_c, covariance
S_c and class label kappa(c) (a class may own several components: a multimodal class). The observation is
d = s + noise * n, n ~ N(0, I). Everything below is exact for that model:

- the Bayes classifier on clean signals, log p(k | s) = logsumexp_{c: kappa(c)=k} [log w_c + log N(s; mu_c, S_c)]
  (normalised), and from the degraded input, log p(k | d), the same with S_c + noise^2 I;
- the posterior p(s | d) = sum_c r_c(d) N(s; m_c(d), P_c): r_c(d) ∝ w_c N(d; mu_c, S_c + noise^2 I),
  P_c = S_c (S_c + noise^2 I)^-1 noise^2, m_c(d) = mu_c + S_c (S_c + noise^2 I)^-1 (d - mu_c);
- the ideal denoiser of a diffusion process x_t = a s + sigma eps (VP: center 0) for any such mixture
  ("components": the prior itself, the posterior given d, or either restricted or re-weighted by class):
  E[s | x_t] = sum_c q_c(x_t) (m_c + a P_c (a^2 P_c + sigma^2 I)^-1 (x_t - a m_c)),
  q_c ∝ r_c N(x_t; a m_c, a^2 P_c + sigma^2 I) (the posterior of the component given x_t);
- the Bayes accuracy from d, E_d[max_k p(k | d)] (Monte Carlo over d; `bayes_accuracy`).

Float64 throughout; torch only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...errors import CoupledError

__all__ = ["GaussianMixture", "Components", "make_mixture", "GEOMETRIES", "bayes_accuracy", "two_class_bayes_accuracy"]

GEOMETRIES = ("means", "sandwich")
_LOG2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class Components:
    """A Gaussian mixture in eigen-form, the unit the denoiser works on: `log_weights` [C] or [B, C] (not
    necessarily normalised), `means` [C, D] or [B, C, D], covariances `U diag(lam) U^T` (`lam` [C, D], `U`
    [C, D, D]) shared by all items, `labels` [C] (class of each component)."""

    log_weights: torch.Tensor
    means: torch.Tensor
    lam: torch.Tensor
    U: torch.Tensor
    labels: torch.Tensor

    def reweighted(self, class_log_weights: torch.Tensor) -> "Components":
        """The same components with log weights + `class_log_weights` [B, K] of each component's class
        (a one-hot of -inf / 0: the class-conditioned mixture; beta * l: evidence l about the class)."""
        extra = class_log_weights[:, self.labels]
        return Components(self.log_weights + extra, self.means, self.lam, self.U, self.labels)

    def log_density(self, x: torch.Tensor, a=1.0, s2=0.0) -> torch.Tensor:
        """log r_c + log N(x; a m_c, a^2 P_c + s2 I) per item and component: [B, C]."""
        var = a * a * self.lam + s2  # [C, D] (or [B, C, D] with per-item a, s2)
        means = self.means if self.means.dim() == 3 else self.means.expand(x.shape[0], *self.means.shape)
        r = torch.einsum("bcd,cde->bce", x[:, None, :] - a * means, self.U)  # residual in each eigenbasis
        quad = (r * r / var).sum(-1)
        logdet = torch.log(var).sum(-1)
        return self.log_weights - 0.5 * (quad + logdet + x.shape[1] * _LOG2PI)

    def moments(self, batch: int):
        """The mixture's mean [B, D] and the trace of its covariance [B] (e.g. E[s | d] and E[|s - E[s|d]|^2 | d]):
        the denoiser at a = 0, where x_t says nothing."""
        zeros = torch.zeros(batch, self.lam.shape[-1], dtype=torch.float64)
        return self.denoise(zeros, torch.tensor([0.0]), torch.tensor([1.0]), with_cov=True)

    def denoise(self, x_t: torch.Tensor, a: torch.Tensor, s: torch.Tensor, with_cov: bool = False):
        """E[x0 | x_t] for x_t = a x0 + s eps, x0 ~ this mixture; `a`, `s` [B] or scalars. With `with_cov`, also
        the trace of Cov(x0 | x_t) per item."""
        a = torch.as_tensor(a, dtype=x_t.dtype).reshape(-1, 1, 1)
        s = torch.as_tensor(s, dtype=x_t.dtype).reshape(-1, 1, 1)
        var = a * a * self.lam + s * s  # [B or 1, C, D]
        means = self.means if self.means.dim() == 3 else self.means.expand(x_t.shape[0], *self.means.shape)
        r = torch.einsum("bcd,cde->bce", x_t[:, None, :] - a * means, self.U)
        logq = self.log_weights - 0.5 * ((r * r / var).sum(-1) + torch.log(var).sum(-1))
        q = torch.softmax(logq, dim=-1)  # [B, C]
        gain = a * self.lam / var  # a P (a^2 P + s^2)^-1 in each eigenbasis
        e = means + torch.einsum("bce,cde->bcd", gain * r, self.U)  # E[x0 | x_t, c]
        mean = (q[..., None] * e).sum(1)
        if not with_cov:
            return mean
        post_var = (self.lam * s * s / var).sum(-1)  # tr Cov(x0 | x_t, c)
        spread = ((e - mean[:, None]) ** 2).sum(-1)
        return mean, (q * (post_var + spread)).sum(-1)


def _eig(covs: torch.Tensor):
    lam, U = torch.linalg.eigh(covs)
    return lam.clamp(min=1e-12), U


@dataclass(frozen=True)
class GaussianMixture:
    """`means` [C, D], `covs` [C, D, D], `weights` [C] (summing to 1), `labels` [C] in 0..num_classes-1."""

    means: torch.Tensor
    covs: torch.Tensor
    weights: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator):
        """(signals [n, D] float64, class labels [n], components [n]) drawn with `generator`."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        L = torch.linalg.cholesky(self.covs)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = self.means[comp] + torch.einsum("nde,ne->nd", L[comp], z)
        return x, self.labels[comp], comp

    def components(self, noise: float | None = None, d: torch.Tensor | None = None) -> Components:
        """The prior (d None) or the posterior p(s | d) for d = s + noise n, as `Components`."""
        if d is None:
            lam, U = _eig(self.covs)
            return Components(self.weights.log(), self.means, lam, U, self.labels)
        lam, U = _eig(self.covs)
        n2 = float(noise) ** 2
        d = d.double()
        # in each component's eigenbasis: gain lam / (lam + n2), posterior variance lam n2 / (lam + n2)
        r = torch.einsum("bcd,cde->bce", d[:, None, :] - self.means, U)
        var = lam + n2
        logr = self.weights.log() - 0.5 * ((r * r / var).sum(-1) + torch.log(var).sum(-1) + self.dim * _LOG2PI)
        m = self.means + torch.einsum("bce,cde->bcd", lam / var * r, U)
        post_lam = lam * n2 / var if n2 > 0 else torch.zeros_like(lam)
        return Components(logr, m, post_lam.clamp(min=1e-12), U, self.labels)

    def class_log_posterior(self, x: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        """log p(k | x) [B, K] for x = s + noise n (noise 0: the Bayes classifier on clean signals)."""
        lam, U = _eig(self.covs)
        comps = Components(self.weights.log(), self.means, lam, U, self.labels)
        lc = comps.log_density(x.double(), 1.0, float(noise) ** 2)  # [B, C]
        out = torch.full((x.shape[0], self.num_classes), -math.inf, dtype=torch.float64)
        for k in range(self.num_classes):
            sel = self.labels == k
            if sel.any():
                out[:, k] = torch.logsumexp(lc[:, sel], dim=1)
        return out - torch.logsumexp(out, dim=1, keepdim=True)


def _random_covs(n: int, dim: int, g: torch.Generator, spread=(0.01, 1.0)) -> torch.Tensor:
    """`n` covariances with random eigenvectors and eigenvalues log-uniform in `spread`: each component is thin in
    most directions, as images are near a low-dimensional set, so that noise pushes d off it and the classifier
    trained on clean signals misreads d (the room denoising has)."""
    Q, _ = torch.linalg.qr(torch.randn(n, dim, dim, generator=g, dtype=torch.float64))
    lo, hi = math.log(spread[0]), math.log(spread[1])
    lam = torch.exp(lo + (hi - lo) * torch.rand(n, dim, generator=g, dtype=torch.float64))
    return Q @ torch.diag_embed(lam) @ Q.transpose(1, 2)


def make_mixture(dim: int = 8, classes: int = 4, geometry: str = "means", separation: float = 2.0,
                 seed: int = 0) -> GaussianMixture:
    """A mixture of `classes` classes in R^`dim`, its random parts drawn from `seed`:

    - "means": one Gaussian per class, means at `separation` along orthonormal directions (class overlap
      grows as separation falls), each with its own random covariance (eigenvalues log-uniform in [0.01, 1]);
    - "sandwich": class 0 one Gaussian at the origin, every other class two modes at +-`separation` along its
      own direction: the posterior mean of an item whose sign is uncertain falls towards the origin, class 0's
      territory, so it is a poor input for the classifier although p(k | d) may be confident.
    """
    if geometry not in GEOMETRIES:
        raise CoupledError(f"unknown mixture geometry {geometry!r}; choose one of: {', '.join(GEOMETRIES)}")
    need = classes if geometry == "means" else classes - 1
    if classes < 2 or need > dim:
        raise CoupledError(f"a {geometry} mixture needs 2 <= classes and {need} directions <= dim={dim}")
    g = torch.Generator().manual_seed(int(seed))
    dirs, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    dirs = dirs.T[:need]  # orthonormal rows
    if geometry == "means":
        means, labels = separation * dirs, torch.arange(classes)
    else:
        means = torch.cat([torch.zeros(1, dim, dtype=torch.float64), separation * dirs, -separation * dirs])
        labels = torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(1, classes), torch.arange(1, classes)])
    covs = _random_covs(len(means), dim, g)
    # equal class priors; a class's modes share its weight
    counts = torch.bincount(labels, minlength=classes).double()
    weights = (1.0 / classes) / counts[labels]
    return GaussianMixture(means, covs, weights, labels, classes)


def bayes_accuracy(mixture: GaussianMixture, noise: float, n: int, generator: torch.Generator, batch: int = 20000):
    """The Bayes accuracy from d = s + noise n by Monte Carlo over (s, d): returns (E[max_k p(k|d)], its standard
    error, the accuracy of argmax p(k|d) on the same draws). Both estimate the same number; the first has the
    smaller variance."""
    maxp, hits = [], []
    for i in range(0, n, batch):
        m = min(batch, n - i)
        s, y, _ = mixture.sample(m, generator)
        d = s + noise * torch.randn(s.shape, generator=generator, dtype=torch.float64)
        lp = mixture.class_log_posterior(d, noise)
        maxp.append(lp.max(1).values.exp())
        hits.append((lp.argmax(1) == y).double())
    maxp, hits = torch.cat(maxp), torch.cat(hits)
    return maxp.mean().item(), (maxp.std() / math.sqrt(n)).item(), hits.mean().item()


def two_class_bayes_accuracy(mu0, mu1, cov, noise: float) -> float:
    """Closed form for two equally likely Gaussian classes of one shared covariance: Phi(Delta / 2), Delta the
    Mahalanobis distance of the means under cov + noise^2 I."""
    c = cov + noise**2 * torch.eye(len(mu0), dtype=cov.dtype)
    diff = (mu1 - mu0).double()
    delta = torch.sqrt(diff @ torch.linalg.solve(c, diff)).item()
    return 0.5 * (1 + math.erf(delta / 2 / math.sqrt(2)))
