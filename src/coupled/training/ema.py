"""Exponential moving average of weights, for sampling (started after pre-trained weights are loaded)."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """A shadow copy of `module`'s floating-point state, updated as shadow <- decay shadow + (1 - decay) w."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for k, v in module.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].lerp_(v.detach().to(self.shadow[k].device), 1 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, module: nn.Module) -> None:
        module.load_state_dict(self.shadow)
