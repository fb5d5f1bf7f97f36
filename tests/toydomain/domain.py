"""A toy 1-D domain, all in this one module: the proof that a domain plugs in without touching the engine,
training, evaluation or the CLI (issue 8).

Signals are 32-sample waveforms in [-1, 1]; class k is a sine of k + 1 cycles with a random phase and
amplitude. Corruptions: additive white noise and sample dropout. Networks: small MLPs for the classifier,
the signal denoiser and the logit denoiser. Signal metric: per-item MSE. Importing the module registers the
domain as "toy1d"; a config selects it with `domain: tests.toydomain.domain:TOY` (or `toy1d` once imported).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from coupled.defaults import DEFAULTS
from coupled.domains.registry import Domain, LabelledSignals, Registry, register_domain

LENGTH, CLASSES = 32, 4
SIZES = {"train": 256, "val": 64, "test": 64}


def make_split(n: int, seed: int, name: str) -> LabelledSignals:
    g = np.random.default_rng(seed)
    labels = np.arange(n) % CLASSES
    phase = g.uniform(0, 2 * math.pi, n)
    amp = g.uniform(0.5, 0.9, n)
    t = np.arange(LENGTH) / LENGTH
    x = amp[:, None] * np.sin(2 * math.pi * (labels[:, None] + 1) * t[None] + phase[:, None])
    return LabelledSignals(torch.tensor(x, dtype=torch.float32), torch.tensor(labels), CLASSES, name)


# ---- corruptions: (signals [N, L], severity, generator) -> [N, L]
CORRUPTIONS = Registry("toy1d corruption")


@CORRUPTIONS.register("white_noise")
def white_noise(x, sigma, generator):
    return x + sigma * torch.randn(x.shape, generator=generator)


@CORRUPTIONS.register("dropout")
def dropout(x, p, generator):
    return torch.where(torch.rand(x.shape, generator=generator) < p, torch.zeros_like(x), x)


# ---- networks: each keeps its config as `cfg` (saved beside its weights)
@dataclass
class MLPConfig:
    length: int = LENGTH
    num_classes: int = CLASSES
    width: int = 64

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MLPConfig:
        return cls(**d)


def _mlp(n_in, width, n_out):
    return nn.Sequential(nn.Linear(n_in, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, n_out))


class ToyClassifier(nn.Module):
    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.cfg = cfg
        self.net = _mlp(cfg.length, cfg.width, cfg.num_classes)

    def forward(self, x):
        return self.net(x)


class ToySignalNet(nn.Module):
    """forward(x_t [B, L], t [B], observation [B, L], logits [B, K] or None, logits_mask [B] or None)."""

    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.cfg = cfg
        self.logit_mlp = nn.Linear(cfg.num_classes, cfg.width)
        self.null_logits = nn.Parameter(torch.zeros(cfg.width))
        self.inp = nn.Linear(2 * cfg.length + 1, cfg.width)
        self.out = _mlp(cfg.width, cfg.width, cfg.length)

    def forward(self, x_t, t, observation, logits=None, logits_mask=None):
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        cond = self.null_logits.expand(x_t.shape[0], -1)
        if logits is not None:
            c = self.logit_mlp(logits.to(x_t.dtype))
            cond = c if logits_mask is None else torch.where(logits_mask[:, None], c, cond)
        return self.out(torch.nn.functional.silu(self.inp(torch.cat([x_t, observation, t[:, None]], 1)) + cond))


class ToyLogitNet(nn.Module):
    """forward(y_t [B, K], t [B], evidence [B, K], signal [B, L] or None, center [B, K] or None)."""

    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.cfg = cfg
        self.net = _mlp(3 * cfg.num_classes + cfg.length + 1, cfg.width, cfg.num_classes)

    def forward(self, y_t, t, evidence, signal=None, center=None):
        B = y_t.shape[0]
        t = torch.as_tensor(t, dtype=y_t.dtype, device=y_t.device).reshape(-1).expand(B)
        signal = torch.zeros(B, self.cfg.length, dtype=y_t.dtype, device=y_t.device) if signal is None else signal
        center = torch.zeros_like(y_t) if center is None else center
        return self.net(torch.cat([y_t, evidence, center, signal.to(y_t.dtype), t[:, None]], 1))


def _builder(cls):
    def build(config: dict):
        return cls(MLPConfig.from_dict(config))

    return build


def toy_defaults(kind: str) -> dict:
    """The generic defaults with a toy data kind and the toy corruptions' levels (shared by the toy domains)."""
    d = copy.deepcopy(DEFAULTS)
    d["data"] = {"kind": kind, "seed": 0}
    d["corruptions"] = {"severities": {"white_noise": {"light": 0.2, "medium": 0.5, "heavy": 0.9},
                                       "dropout": {"light": 0.2, "medium": 0.4, "heavy": 0.6}},
                        "train_severity": {"white_noise": [0.1, 1.0], "dropout": [0.1, 0.7]}, "calibration": {}}
    return d


class ToyDomain(Domain):
    name = "toy1d"
    commands = ("train", "evaluate", "reproduce", "calibrate")
    # `coupled calibrate`: the generic search, on a grid up to each corruption's training range
    calibration_targets = {"light": 0.8, "medium": 0.6, "heavy": 0.4}

    def config_defaults(self) -> dict:
        return toy_defaults("toy_sines")

    def load_splits(self, cfg):
        seed = cfg["data"].get("seed", 0)
        return {name: make_split(n, 1000 * seed + i, f"toy_sines/{name}") for i, (name, n) in enumerate(SIZES.items())}

    @property
    def corruptions(self):
        return CORRUPTIONS

    @property
    def networks(self):
        return {"classifier": {"mlp": _builder(ToyClassifier)}, "signal": {"mlp": _builder(ToySignalNet)},
                "logits": {"mlp": _builder(ToyLogitNet)}}

    @property
    def signal_metrics(self):
        return {"mse": lambda x, ref: ((x.double() - ref.double()) ** 2).mean(dim=1)}


TOY = register_domain(ToyDomain())
