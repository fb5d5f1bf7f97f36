"""Networks of the ECG domain, for single-lead traces [B, 1, L] in [-1, 1] (L = 2500: 10 s at 250 Hz).

* `RhythmCNN` (`ecg_cnn`): the frozen rhythm classifier, five stride-2 1-D conv blocks, then mean, max and std
  pooling over time (std sees beat-to-beat irregularity) and a linear head -> logits [B, K].
* `SignalUNet1d` (`ecg_unet`): the signal denoiser, the image domain's U-Net in one dimension: the degraded trace
  concatenated as a channel, a (time + logit) embedding added in every residual block, a learned null token.
* `LogitNet1d` (`ecg_logit_net`): the logit denoiser, a residual MLP over (y_t, evidence, centre, time, features of
  the shown trace from a strided conv encoder).

No BatchNorm anywhere (GroupNorm, LayerNorm), so an item's output never depends on its batch. Output layers of
the denoisers are zero-initialised (an untrained net outputs 0).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import CoupledError
from ...nets import item_times, timestep_embedding
from .synth import LENGTH


class _Config:
    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):
        """Rebuild from `to_dict()` output; an unknown key is a one-line error naming the valid ones."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise CoupledError(f"unknown {cls.__name__} option(s) {unknown}; valid: {', '.join(valid)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            ok = (all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in v) and len(v) > 0
                  if isinstance(v, tuple) else isinstance(v, bool) or (isinstance(v, (int, float)) and v > 0))
            if not ok:
                raise CoupledError(f"{type(self).__name__}.{f.name} must be positive, got {v!r}; fix the config's net section")


@dataclass(frozen=True)
class RhythmCNNConfig(_Config):
    length: int = LENGTH
    num_classes: int = 3
    channels: tuple = (16, 32, 48, 64, 64)
    kernel: int = 7


@dataclass(frozen=True)
class SignalUNetConfig(_Config):
    """`patch`: the trace enters as non-overlapping patches of this many samples (a stride-`patch` conv; a transposed
    conv of the same stride writes the output), so the U-Net runs at length / patch: 2500 / 4 = 625, then
    `channels[i]` is the width after i stride-2 downsamplings (625 -> 313 -> 157 for two levels)."""

    length: int = LENGTH
    num_classes: int = 3
    patch: int = 4
    channels: tuple = (32, 48, 64)
    kernel: int = 5
    time_dim: int = 128
    mid_blocks: int = 2
    groups: int = 8
    time_scale: float = 1000.0


@dataclass(frozen=True)
class LogitNetConfig(_Config):
    length: int = LENGTH
    num_classes: int = 3
    hidden: int = 256
    depth: int = 2
    time_dim: int = 64
    feature_dim: int = 64
    encoder_channels: tuple = (16, 32, 48, 64)
    use_features: bool = True
    time_scale: float = 1000.0


def _check(name: str, x, shape: tuple) -> None:
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != tuple(shape):
        got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise CoupledError(f"{name} must have shape {list(shape)}, got {got}; ECG traces are [B, 1, length]")


def _norm(c: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, c), c)


def _pool_stats(h: torch.Tensor) -> torch.Tensor:
    """[B, C, T] -> [B, 3C]: mean, max and std over time."""
    return torch.cat([h.mean(-1), h.amax(-1), h.std(-1)], dim=1)


class _Encoder(nn.Module):
    """Stride-2 conv blocks (conv, GroupNorm, SiLU), then mean / max / std pooling: [B, 1, L] -> [B, 3 * last width]."""

    def __init__(self, channels: tuple, kernel: int):
        super().__init__()
        layers, c_prev = [], 1
        for c in channels:
            layers += [nn.Conv1d(c_prev, c, kernel, stride=2, padding=kernel // 2), _norm(c, 8), nn.SiLU()]
            c_prev = c
        self.convs = nn.Sequential(*layers)
        self.out_dim = 3 * c_prev

    def forward(self, x):
        return _pool_stats(self.convs(x))


class RhythmCNN(nn.Module):
    """Rhythm classifier: traces [B, 1, L] -> logits [B, num_classes]."""

    def __init__(self, cfg: RhythmCNNConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or RhythmCNNConfig()
        self.encoder = _Encoder(cfg.channels, cfg.kernel)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.encoder.out_dim, 64), nn.SiLU(),
                                  nn.Linear(64, cfg.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check("ECG traces", x, (x.shape[0], 1, self.cfg.length))
        return self.head(self.encoder(x))


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb: int, kernel: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in, groups), nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2)
        self.emb = nn.Linear(emb, c_out)
        self.norm2, self.conv2 = _norm(c_out, groups), nn.Conv1d(c_out, c_out, kernel, padding=kernel // 2)
        self.skip = nn.Identity() if c_in == c_out else nn.Conv1d(c_in, c_out, 1)

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(emb)[:, :, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class SignalUNet1d(nn.Module):
    """`forward(x_t, t, observation, logits=None, logits_mask=None)` -> raw output [B, 1, L] (see docs/domains.md's
    network contracts): x_t and the degraded `observation` [B, 1, L]; t [B] in [0, 1]; logits [B, K] or None (the
    learned null token); logits_mask bool [B] (False: the null token for that item)."""

    def __init__(self, cfg: SignalUNetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or SignalUNetConfig()
        ch, e, k, g = cfg.channels, cfg.time_dim, cfg.kernel, cfg.groups
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.logit_mlp = nn.Sequential(nn.Linear(cfg.num_classes, e), nn.SiLU(), nn.Linear(e, e))
        self.null_logits = nn.Parameter(torch.zeros(e))
        if cfg.length % cfg.patch:
            raise CoupledError(f"SignalUNetConfig.patch={cfg.patch} must divide length={cfg.length}; pick a divisor")
        self.conv_in = nn.Conv1d(2, ch[0], cfg.patch, stride=cfg.patch)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        c_prev = ch[0]
        for c in ch:
            self.down.append(_ResBlock(c_prev, c, e, k, g))
            self.downsample.append(nn.Conv1d(c, c, k, stride=2, padding=k // 2))
            c_prev = c
        self.mid = nn.ModuleList([_ResBlock(c_prev, c_prev, e, k, g) for _ in range(cfg.mid_blocks)])
        self.upconv, self.up = nn.ModuleList(), nn.ModuleList()
        for c in reversed(ch):
            self.upconv.append(nn.Conv1d(c_prev, c, 1))
            self.up.append(_ResBlock(2 * c, c, e, k, g))
            c_prev = c
        self.norm_out = _norm(ch[0], g)
        self.conv_out = nn.ConvTranspose1d(ch[0], 1, cfg.patch, stride=cfg.patch)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x_t, t, observation, logits=None, logits_mask=None):
        c, B = self.cfg, x_t.shape[0]
        _check("x_t", x_t, (B, 1, c.length))
        _check("observation", observation, (B, 1, c.length))
        emb = self.time_mlp(timestep_embedding(item_times(t, B, x_t.device), c.time_dim, c.time_scale).to(x_t.dtype))
        null = self.null_logits[None].expand_as(emb)
        if logits is None:
            emb = emb + null
        else:
            _check("logits", logits, (B, c.num_classes))
            cond = self.logit_mlp(logits.to(emb.dtype))
            emb = emb + (cond if logits_mask is None else torch.where(logits_mask[:, None], cond, null))
        emb = F.silu(emb)
        h = self.conv_in(torch.cat([x_t, observation.to(x_t.dtype)], 1))
        skips = []
        for block, down in zip(self.down, self.downsample):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, emb)
        for conv, block in zip(self.upconv, self.up):
            skip = skips.pop()
            h = conv(h).repeat_interleave(2, dim=-1)[..., : skip.shape[-1]]
            h = block(torch.cat([h, skip], 1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))


class LogitNet1d(nn.Module):
    """`forward(y_t [B, K], t [B], evidence [B, K], signal [B, 1, L] or None, center [B, K] or None)` -> [B, K]."""

    def __init__(self, cfg: LogitNetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or LogitNetConfig()
        self.encoder = None
        n_feat = 0
        if cfg.use_features:
            self.encoder = nn.Sequential(_Encoder(cfg.encoder_channels, 7),
                                         nn.Linear(3 * cfg.encoder_channels[-1], cfg.feature_dim))
            n_feat = cfg.feature_dim
        self.n_feat = n_feat
        self.inp = nn.Linear(3 * cfg.num_classes + cfg.time_dim + n_feat, cfg.hidden)
        self.blocks = nn.ModuleList([nn.Sequential(nn.LayerNorm(cfg.hidden), nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU(),
                                                   nn.Linear(cfg.hidden, cfg.hidden)) for _ in range(cfg.depth)])
        self.out = nn.Sequential(nn.LayerNorm(cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.num_classes))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, y_t, t, evidence, signal=None, center=None):
        c, B = self.cfg, y_t.shape[0]
        _check("y_t", y_t, (B, c.num_classes))
        _check("evidence", evidence, (B, c.num_classes))
        temb = timestep_embedding(item_times(t, B, y_t.device), c.time_dim, c.time_scale).to(y_t.dtype)
        center = evidence if center is None else center
        parts = [y_t, evidence.to(y_t.dtype), center.to(y_t.dtype), temb]
        if self.encoder is not None:
            if signal is None:
                parts.append(y_t.new_zeros(B, self.n_feat))
            else:
                _check("signal", signal, (B, 1, c.length))
                parts.append(self.encoder(signal.to(y_t.dtype)))
        h = F.silu(self.inp(torch.cat(parts, 1)))
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)
