"""A closed-form Gaussian domain: the engine's demo and a sanity check with exact denoisers.

Signals s ~ N(0, Sigma) in R^D; the frozen classifier is linear, f(s) = W s, and its decision on the clean
signal is the label; the observation is d = s + n with n ~ N(0, noise^2 I). Every denoiser is exact:

- the signal denoiser is E[s | x_t, d] (null logits) or E[s | x_t, d, l], where the logit vector l is read
  as a linear-Gaussian observation l = kappa P W s + e (P centres over classes, kappa the standardisation's
  typical scale, e ~ N(0, logit_noise^2 I)) - an approximation of norm(f(s)), exact under that model;
- the logit denoiser is CARD-like: y0 ~ N(c, tau^2 I) around the classifier's current opinion c.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..engine import PAPER_METHODS, Chain, Coupling, FrozenClassifier, VPProcess, item_generators, run_method
from ..engine.gaussian import GaussianPrior, linear_gaussian_posterior
from ..seeds import item_seeds, stream_seed
from .registry import Domain, register_domain


class LinearClassifier(nn.Module):
    def __init__(self, W: torch.Tensor):
        super().__init__()
        self.W = nn.Parameter(W.clone())

    def forward(self, x):
        return x @ self.W.T


@dataclass
class GaussianDomain:
    """The toy problem; `make()` builds it from a seed."""

    Sigma: torch.Tensor
    W: torch.Tensor
    noise: float
    logit_noise: float = 0.3
    tau: float = 0.3
    logit_scale: float = 0.8

    @classmethod
    def make(cls, dim=8, classes=4, noise=1.5, seed=0):
        g = torch.Generator().manual_seed(stream_seed("data", seed, 0))  # the problem; its samples are stream 1
        A = torch.randn(dim, dim, generator=g)
        return cls(Sigma=A @ A.T / dim + 0.1 * torch.eye(dim), W=torch.randn(classes, dim, generator=g), noise=noise)

    def sample(self, n, seed):
        g = torch.Generator().manual_seed(stream_seed("data", seed, 1))
        L = torch.linalg.cholesky(self.Sigma)
        s = torch.randn(n, self.Sigma.shape[0], generator=g) @ L.T
        d = s + self.noise * torch.randn(s.shape, generator=g)
        return s, d, (s @ self.W.T).argmax(-1)

    def _logit_map(self):
        K = self.W.shape[0]
        P = torch.eye(K) - torch.ones(K, K) / K
        typical_std = ((P @ self.W) @ self.Sigma @ (P @ self.W).T).diagonal().mean().sqrt()
        return self.logit_scale / typical_std * P @ self.W

    def signal_denoiser(self, process):
        D = self.Sigma.shape[0]
        zeros = torch.zeros(D)

        def denoise(x_t, t, center=None, observation=None, logits=None):
            if logits is None:
                post = linear_gaussian_posterior(zeros, self.Sigma, torch.eye(D), self.noise**2 * torch.eye(D), observation)
            else:
                M = self._logit_map()
                H = torch.cat([torch.eye(D), M])
                R = torch.block_diag(self.noise**2 * torch.eye(D), self.logit_noise**2 * torch.eye(M.shape[0]))
                post = linear_gaussian_posterior(zeros, self.Sigma, H, R, torch.cat([observation, logits], dim=1))
            return post.denoiser(process)(x_t, t, center)

        return denoise

    def logit_denoiser(self, process):
        K = self.W.shape[0]

        def denoise(y_t, t, center=None, evidence=None, signal=None):
            return GaussianPrior(evidence, self.tau**2 * torch.eye(K)).denoiser(process)(y_t, t, center)

        return denoise

    def coupling(self, steps=20):
        process = VPProcess(1000)
        return Coupling(
            classifier=FrozenClassifier(LinearClassifier(self.W), num_classes=self.W.shape[0], logit_scale=self.logit_scale),
            signal_denoiser=self.signal_denoiser(process),
            logit_denoiser=self.logit_denoiser(process),
            signal_chain=Chain(process, steps, "ddim"),
            logit_chain=Chain(process, steps, "ddim"),
        )


def run_gaussian_demo(n=2000, seed=0, steps=20) -> list[dict]:
    """The paper's methods on the toy problem; returns rows with accuracy (vs the clean decision), MSE and calls."""
    dom = GaussianDomain.make(seed=seed)
    s, d, labels = dom.sample(n, seed)
    coupling = dom.coupling(steps)
    rows = []
    for method in PAPER_METHODS:
        res = run_method(method, coupling, d, item_generators(item_seeds("sampling", seed, 0, n)))
        row = {"method": method, "acc_classifier": (res.prediction("classifier") == labels).float().mean().item()}
        row["acc_logits"] = (res.prediction("logits") == labels).float().mean().item() if res.y_hat is not None else None
        row["mse"] = ((res.x_hat - s) ** 2).mean().item() if res.x_hat is not None else ((d - s) ** 2).mean().item()
        rows.append({**row, "calls": res.calls})
    return rows


def _format_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    def cell(v):
        if v is None:
            return "-"
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    body = [[cell(r.get(key)) for key, _ in columns] for r in rows]
    heads = [h for _, h in columns]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(heads)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(heads), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


class GaussianDemo(Domain):
    """The closed-form Gaussian problem as a registered domain ("gaussian"): it serves `coupled demo` only."""

    name = "gaussian"
    commands = ("demo",)

    def run_demo(self, *, config=None, overrides=(), items=None, seed=None, steps=20, out=None, progress=True) -> str:
        rows = run_gaussian_demo(n=items or 2000, seed=seed or 0, steps=steps)
        for r in rows:
            r["calls"] = "{signal}/{logits}/{classifier}".format(**r["calls"])
        return ("Closed-form Gaussian example: exact denoisers, d = s + noise, labels = clean decision argmax W s\n"
                + _format_table(rows, [("method", "method"), ("acc_classifier", "acc f(x_hat)"), ("acc_logits", "acc y_hat"),
                                       ("mse", "MSE x_hat (noisy: d)"), ("calls", "calls Dx/Dy/f")]))


GAUSSIAN = register_domain(GaussianDemo())
