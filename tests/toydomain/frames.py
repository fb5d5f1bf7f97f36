"""The toy 1-D domain with a frame-wise classifier: logits [B, T, K] (as a CTC recogniser's), so that the generic
training stages are exercised on frame logits (issue 15). Data and corruptions are the toy domain's; the networks
take and return [B, T, K] logits (T = `frames` of their config). The denoisers record what they are shown in
training mode into their class's `record` list when a test sets one (None: nothing is recorded). Importing the
module registers the domain as "toy1d_frames"; a config selects it with `domain: tests.toydomain.frames:FRAMES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from coupled.domains.registry import register_domain

from .domain import CLASSES, MLPConfig, ToyDomain, _mlp


@dataclass
class FrameConfig(MLPConfig):
    frames: int = 3


def _frames(t, like):
    return torch.as_tensor(t, dtype=like.dtype, device=like.device).reshape(-1).expand(like.shape[0])


class FrameClassifier(nn.Module):
    """Signal [B, L] -> frame logits [B, T, K]; every frame depends on the whole signal."""

    def __init__(self, cfg: FrameConfig):
        super().__init__()
        self.cfg = cfg
        self.net = _mlp(cfg.length, cfg.width, cfg.frames * cfg.num_classes)

    def forward(self, x):
        return self.net(x).reshape(x.shape[0], self.cfg.frames, self.cfg.num_classes)


def _log(cls, **values):
    if cls.record is not None:
        cls.record.append({k: None if v is None else v.detach().clone() for k, v in values.items()})


class FrameSignalNet(nn.Module):
    """forward(x_t [B, L], t [B], observation [B, L], logits [B, T, K] or None, logits_mask [B] or None)."""

    record: list | None = None

    def __init__(self, cfg: FrameConfig):
        super().__init__()
        self.cfg = cfg
        self.logit_mlp = nn.Linear(cfg.frames * cfg.num_classes, cfg.width)
        self.null_logits = nn.Parameter(torch.zeros(cfg.width))
        self.inp = nn.Linear(2 * cfg.length + 1, cfg.width)
        self.out = _mlp(cfg.width, cfg.width, cfg.length)

    def forward(self, x_t, t, observation, logits=None, logits_mask=None):
        t = _frames(t, x_t)
        cond = self.null_logits.expand(x_t.shape[0], -1)
        if logits is not None:
            c = self.logit_mlp(logits.flatten(1).to(x_t.dtype))
            cond = c if logits_mask is None else torch.where(logits_mask[:, None], c, cond)
        out = self.out(torch.nn.functional.silu(self.inp(torch.cat([x_t, observation, t[:, None]], 1)) + cond))
        if self.training:
            _log(type(self), logits=logits, logits_mask=logits_mask, out=out)
        return out


class FrameLogitNet(nn.Module):
    """forward(y_t [B, T, K], t [B], evidence [B, T, K], signal [B, L] or None, center [B, T, K] or None)."""

    record: list | None = None

    def __init__(self, cfg: FrameConfig):
        super().__init__()
        self.cfg = cfg
        n = cfg.frames * cfg.num_classes
        self.net = _mlp(3 * n + cfg.length + 1, cfg.width, n)

    def forward(self, y_t, t, evidence, signal=None, center=None):
        B = y_t.shape[0]
        t = _frames(t, y_t)
        signal = torch.zeros(B, self.cfg.length, dtype=y_t.dtype, device=y_t.device) if signal is None else signal
        flat = [v.flatten(1) for v in (y_t, evidence, torch.zeros_like(y_t) if center is None else center)]
        out = self.net(torch.cat([*flat, signal.to(y_t.dtype), t[:, None]], 1)).reshape(y_t.shape)
        if self.training:
            _log(type(self), evidence=evidence, center=center, signal=signal, out=out)
        return out


def _builder(cls):
    def build(config: dict):
        return cls(FrameConfig(**{"num_classes": CLASSES, **config}))

    return build


class FramesDomain(ToyDomain):
    name = "toy1d_frames"

    @property
    def networks(self):
        return {"classifier": {"mlp": _builder(FrameClassifier)}, "signal": {"mlp": _builder(FrameSignalNet)},
                "logits": {"mlp": _builder(FrameLogitNet)}}


FRAMES = register_domain(FramesDomain())
