"""The exact "networks" of the Bayes-limit domain: modules whose outputs are closed forms, so that every method
of the engine runs with perfect (or deliberately imperfect) denoisers and a Bayes classifier.

Each keeps its config as `cfg` (with `to_dict()`) and its mixture as persistent buffers, saved to safetensors
like trained weights (the config alone rebuilds them: `make_mixture` is seeded).

- `BayesClassifier`: log p(k | s), the Bayes classifier on clean signals.
- `ExactSignalNet` (x0 prediction): E[s | x_t, d] for the VP chain, d = s + sigma n with sigma one of the
  config's `noise_levels` (uniformly likely; one level: the denoiser of that level). The logit conditioning l
  (standardised logits, or the null token) enters as independent evidence about the class with likelihood
  p(l | k) ∝ exp(logit_weight * l_k): the mixture's class weights are multiplied by it. That is exact for a
  logit vector that reports the class independently of (x_t, d); the logit chain's estimate is not (it is a
  function of d), so `logit_weight` is a knob, 0 being the null token. `error` > 0 adds a fixed, deterministic
  error field of RMS `error` per coordinate: a denoiser of known imperfection.
- `GaussianLogitNet` (x0 prediction): CARD-like, the logits' clean value modelled as y0 ~ N(c, tau^2 I) around
  the classifier's current opinion c = norm(f(z)); its exact denoiser E[y0 | y_t] under that model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ...engine import process_from_dict
from ...errors import CoupledError
from .mixture import Components, GaussianMixture, make_mixture

__all__ = ["MixtureNetConfig", "BayesClassifier", "ExactSignalNet", "GaussianLogitNet", "NETWORKS"]

_VP = {"kind": "vp", "num_train_steps": 1000, "schedule": "cosine"}


@dataclass
class MixtureNetConfig:
    """One config for the three modules (each reads what it needs); unknown keys are refused."""

    dim: int = 8
    classes: int = 4
    geometry: str = "means"
    separation: float = 2.0
    seed: int = 0
    num_classes: int | None = None  # injected by training; must equal `classes`
    noise_levels: list = field(default_factory=lambda: [1.0])
    process: dict = field(default_factory=lambda: dict(_VP))
    logit_weight: float = 2.0
    error: float = 0.0
    error_seed: int = 0
    tau: float = 0.3

    def __post_init__(self):
        if self.num_classes is None:
            self.num_classes = self.classes
        if self.num_classes != self.classes:
            raise CoupledError(f"num_classes={self.num_classes} but the mixture has classes={self.classes}; make them equal")
        if not self.noise_levels or any(not isinstance(v, (int, float)) or v <= 0 for v in self.noise_levels):
            raise CoupledError(f"noise_levels must be positive numbers, got {self.noise_levels!r}")
        for name in ("logit_weight", "error", "tau"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < math.inf:
                raise CoupledError(f"{name} must be a finite number >= 0, got {v!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MixtureNetConfig":
        valid = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - valid)
        if unknown:
            raise CoupledError(f"unknown gmm network option(s) {unknown}; valid: {', '.join(sorted(valid))}")
        return cls(**d)

    def mixture(self) -> GaussianMixture:
        return make_mixture(self.dim, self.classes, self.geometry, self.separation, self.seed)


class _MixtureModule(nn.Module):
    """Holds a mixture as buffers (saved with the weights) and rebuilds it as a `GaussianMixture`."""

    def __init__(self, cfg: MixtureNetConfig):
        super().__init__()
        self.cfg = cfg
        m = cfg.mixture()
        self.register_buffer("means", m.means.clone())
        self.register_buffer("covs", m.covs.clone())
        self.register_buffer("weights", m.weights.clone())
        self.register_buffer("labels", m.labels.clone())

    @property
    def mixture(self) -> GaussianMixture:
        return GaussianMixture(self.means.double(), self.covs.double(), self.weights.double(), self.labels,
                               self.cfg.classes)

    @property
    def num_classes(self) -> int:
        return self.cfg.classes


class BayesClassifier(_MixtureModule):
    """f(s) = log p(k | s) under the mixture: the Bayes classifier on clean signals."""

    def forward(self, x):
        return self.mixture.class_log_posterior(x.double()).to(x.dtype)


def _times(process, t_net: torch.Tensor) -> torch.Tensor:
    """The process time of a network time (the inverse of `Process.network_time`)."""
    return t_net.double() * process.num_train_steps if process.kind == "vp" else t_net.double()


class ExactSignalNet(_MixtureModule):
    """x0 prediction: E[s | x_t, d] (with l: the class weights times exp(logit_weight * l)), plus `error`."""

    def __init__(self, cfg: MixtureNetConfig):
        super().__init__(cfg)
        self.process = process_from_dict(dict(cfg.process))
        if self.process.kind != "vp":
            raise CoupledError("the exact signal net runs on a VP process (center 0); set signal.process.kind: vp")
        g = torch.Generator().manual_seed(int(cfg.error_seed))
        d = cfg.dim
        # a fixed error field: sqrt(2) sin(W x + phase + 2 pi t), W wide enough that the phase wraps many times,
        # so its RMS per coordinate over the states a sampler visits is close to 1 (measured in the benchmark)
        self.register_buffer("error_W", 2 * math.pi * torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d))
        self.register_buffer("error_phase", 2 * math.pi * torch.rand(d, generator=g, dtype=torch.float64))

    def components(self, observation: torch.Tensor) -> Components:
        """The posterior p(s | d) marginalised over the config's noise levels (equally likely a priori)."""
        m = self.mixture
        parts = [m.components(level, observation) for level in self.cfg.noise_levels]
        if len(parts) == 1:
            return parts[0]
        J = len(parts)
        return Components(torch.cat([p.log_weights for p in parts], 1) - math.log(J), torch.cat([p.means for p in parts], 1),
                          torch.cat([p.lam for p in parts]), torch.cat([p.U for p in parts]),
                          torch.cat([p.labels for p in parts]))

    def error_field(self, x_t: torch.Tensor, t_net: torch.Tensor) -> torch.Tensor:
        arg = x_t.double() @ self.error_W.T + self.error_phase + 2 * math.pi * t_net.double()[:, None]
        return math.sqrt(2) * torch.sin(arg)

    def forward(self, x_t, t, observation, logits=None, logits_mask=None):
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        a, _, s = self.process.coefficients(_times(self.process, t))
        comps = self.components(observation)
        if logits is not None and self.cfg.logit_weight > 0:
            w = self.cfg.logit_weight * logits.double()
            if logits_mask is not None:
                w = torch.where(logits_mask[:, None], w, torch.zeros_like(w))
            comps = comps.reweighted(w)
        x0 = comps.denoise(x_t.double(), a, s)
        if self.cfg.error > 0:
            x0 = x0 + self.cfg.error * self.error_field(x_t, t)
        return x0.to(x_t.dtype)


class GaussianLogitNet(nn.Module):
    """x0 prediction: E[y0 | y_t] for y0 ~ N(c, tau^2 I), c the evidence (CARD-like: the classifier's opinion)."""

    def __init__(self, cfg: MixtureNetConfig):
        super().__init__()
        self.cfg = cfg
        self.process = process_from_dict(dict(cfg.process))
        self.register_buffer("tau", torch.tensor(float(cfg.tau), dtype=torch.float64))

    @property
    def num_classes(self) -> int:
        return self.cfg.classes

    def forward(self, y_t, t, evidence, signal=None, center=None):
        t = torch.as_tensor(t, device=y_t.device).reshape(-1).expand(y_t.shape[0])
        a, b, s = (c[:, None] for c in self.process.coefficients(_times(self.process, t)))
        c = evidence.double()
        shifted = y_t.double() - (0 if center is None else b * center.double())
        tau2 = self.tau * self.tau
        return (c + a * tau2 / (a * a * tau2 + s * s) * (shifted - a * c)).to(y_t.dtype)


def _builder(cls):
    def build(config: dict):
        return cls(MixtureNetConfig.from_dict(dict(config)))

    return build


NETWORKS = {"classifier": {"bayes": _builder(BayesClassifier)}, "signal": {"exact": _builder(ExactSignalNet)},
            "logits": {"gaussian": _builder(GaussianLogitNet)}}
