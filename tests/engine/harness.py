"""A shared harness for the strategy suite: tiny deterministic denoisers that record every call."""

import torch
from torch import nn

from coupled.engine import Chain, Coupling, FrozenClassifier, VPProcess

D, K, T_FRAMES = 6, 5, 3


class LinearClassifier(nn.Module):
    """Signal [B, D] -> logits [B, K], or [B, T, K] when `frames` is set."""

    def __init__(self, frames=None):
        super().__init__()
        torch.manual_seed(0)
        self.frames = frames
        self.lin = nn.Linear(D, K * (frames or 1))

    def forward(self, x):
        out = self.lin(x)
        return out if self.frames is None else out.reshape(x.shape[0], self.frames, K)


class SpySignal:
    """x0_hat = 0.5 x_t + 0.5 d + 0.1 mean(logits); records (kind, t, state, logits, output)."""

    def __init__(self, log):
        self.log = log

    def __call__(self, x, t, center=None, observation=None, logits=None):
        shift = 0 if logits is None else 0.1 * logits.flatten(1).mean(1, keepdim=True)
        out = 0.5 * x + 0.5 * observation + shift
        self.log.append({"kind": "signal", "t": float(t[0]), "x": x, "logits": logits, "out": out})
        return out


class SpyLogit:
    """y0_hat = 0.5 y_t + 0.5 evidence; records (kind, t, evidence, signal, output)."""

    def __init__(self, log, num_classes=None):
        self.log = log
        if num_classes is not None:
            self.num_classes = num_classes

    def __call__(self, y, t, center=None, evidence=None, signal=None):
        out = 0.5 * y + 0.5 * evidence
        self.log.append({"kind": "logits", "t": float(t[0]), "evidence": evidence, "signal": signal, "out": out})
        return out


def make_coupling(frames=None, signal_steps=6, logit_steps=4, sampler="ddim", process=None, log=None):
    log = [] if log is None else log
    process = process or VPProcess(1000)
    opts = {"eta": 0.5} if sampler == "ddim" else {}
    classifier = FrozenClassifier(LinearClassifier(frames), num_classes=K)
    coupling = Coupling(
        classifier=classifier,
        signal_denoiser=SpySignal(log),
        logit_denoiser=SpyLogit(log),
        signal_chain=Chain(process, signal_steps, sampler, **opts),
        logit_chain=Chain(process, logit_steps, sampler, **opts),
    )
    return coupling, log


def degraded(batch=4, seed=0):
    return torch.randn(batch, D, generator=torch.Generator().manual_seed(seed))
