"""Small helpers every domain's networks use: parameter counts, the sinusoidal time embedding and the check of a
per-item time tensor. A leaf below the domains (no domain imports another, so what they share lives here)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import CoupledError

__all__ = ["count_parameters", "timestep_embedding", "item_times"]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of `module` (only those with requires_grad when `trainable_only`)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def timestep_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of times `t` [B] (transformer / DDPM style, after multiplying by `scale`)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * scale)[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def item_times(t, batch: int, device) -> torch.Tensor:
    t = torch.as_tensor(t, device=device).float()
    if t.dim() == 0 or t.numel() == 1:
        return t.reshape(1).expand(batch)
    if t.shape != (batch,):
        raise CoupledError(f"t must have shape [{batch}] (one time per item), got {list(t.shape)}")
    return t
