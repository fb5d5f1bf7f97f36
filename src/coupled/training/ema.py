"""Exponential moving average of weights, for sampling (started after pre-trained weights are loaded)."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """A shadow copy of `module`'s floating-point state, updated as shadow <- beta shadow + (1 - beta) w.

    `beta = min(decay, (1 + n) / (10 + n))` at update n (0, 1, ...): the warm-up of diffusers' EMAModel and
    timm, so a short run saves weights that followed its training instead of staying near their start (at a
    flat 0.999, 100 steps move the shadow less than 10% of the way). `updates` (n) is part of the training state: a
    resumed run passes the count it saved. `warmup=False` is the flat `decay` from the first update (how the
    bundled weights were trained, so `configs/mnist.yaml` keeps it and a retrain reproduces them).
    """

    def __init__(self, module: nn.Module, decay: float, updates: int = 0, warmup: bool = True):
        self.decay = decay
        self.updates = updates
        self.warmup = warmup
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def current_decay(self) -> float:
        """The decay of the next update."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        weight = 1 - self.current_decay()
        for k, v in module.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].lerp_(v.detach().to(self.shadow[k].device), weight)
            else:
                self.shadow[k].copy_(v)
        self.updates += 1
