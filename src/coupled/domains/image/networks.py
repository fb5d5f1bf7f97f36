"""Networks of the image domain: the frozen digit classifier and the two denoisers of coupled diffusion.

* `DigitClassifier`: a small CNN, images [B, C, H, W] in [-1, 1] -> logits [B, K].
* `SignalUNet`: the image denoiser, conditioned on the degraded observation (channel concatenation) and on a
  logit vector (an MLP embedding added to the time embedding, or a learned null token).
* `LogitNet`: the logit denoiser, an MLP over (y_t, evidence, time, features of an image).

All three are sized for MNIST (28 x 28, 1 channel, 10 classes) on a 2-core CPU; sizes are config fields.
None uses BatchNorm, so an item's output never depends on the rest of its batch. Denoisers take the time
`t` as a float tensor [B] in [0, 1] and return the raw network output (a wrapper reads it as eps/x0/v).
See benchmarks/denoiser_cost.py for the measured cost behind the default widths.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import CoupledError
from ...nets import count_parameters, item_times, timestep_embedding

__all__ = [
    "ClassifierConfig",
    "SignalUNetConfig",
    "LogitNetConfig",
    "DigitClassifier",
    "SignalUNet",
    "LogitNet",
    "count_parameters",
    "timestep_embedding",
]


# ----------------------------------------------------------------------------------------------- configs


class _Config:
    """Shared (de)serialisation of the frozen config dataclasses."""

    def to_dict(self) -> dict:
        """Plain dict of the fields (tuples become lists, so it survives a JSON round trip unchanged)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):
        """Rebuild from `to_dict()` output; unknown keys raise CoupledError naming the valid ones."""
        if not isinstance(d, dict):
            raise CoupledError(f"{cls.__name__}.from_dict needs a dict, got {type(d).__name__}")
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise CoupledError(f"unknown {cls.__name__} option(s) {unknown}; valid: {', '.join(valid)}")
        return cls(**d)

    def _positive(self, *names: str) -> None:
        for name in names:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise CoupledError(f"{type(self).__name__}.{name} must be a positive integer, got {v!r}")

    def _int_tuple(self, name: str, min_len: int = 1) -> None:
        v = getattr(self, name)
        try:
            v = tuple(v)
        except TypeError:
            raise CoupledError(f"{type(self).__name__}.{name} must be a sequence of positive integers, got {v!r}")
        if len(v) < min_len or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in v):
            raise CoupledError(
                f"{type(self).__name__}.{name} must be at least {min_len} positive integer(s), got {list(v)!r}"
            )
        # frozen dataclass: JSON hands back lists, keep the field hashable and equal to the default form
        object.__setattr__(self, name, v)

    def _fraction(self, name: str) -> None:
        v = getattr(self, name)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v < 1.0:
            raise CoupledError(f"{type(self).__name__}.{name} must be a number in [0, 1), got {v!r}")

    def _number(self, *names: str) -> None:
        for name in names:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
                raise CoupledError(f"{type(self).__name__}.{name} must be a finite number > 0, got {v!r}")

    def _bool(self, *names: str) -> None:
        for name in names:
            if not isinstance(getattr(self, name), bool):
                raise CoupledError(f"{type(self).__name__}.{name} must be true or false, got {getattr(self, name)!r}")

    def _even(self, name: str) -> None:
        self._positive(name)
        if getattr(self, name) % 2:
            raise CoupledError(f"{type(self).__name__}.{name} must be even (sin/cos halves), got {getattr(self, name)}")


@dataclass(frozen=True)
class ClassifierConfig(_Config):
    """Size of the `DigitClassifier`: conv widths are `width` and `2 * width`, the hidden layer `4 * width`."""

    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 28
    width: int = 32

    def __post_init__(self):
        self._positive("in_channels", "num_classes", "image_size", "width")
        if self.image_size < 4:
            raise CoupledError(
                f"ClassifierConfig.image_size must be at least 4 (two 2x poolings), got {self.image_size}"
            )


@dataclass(frozen=True)
class SignalUNetConfig(_Config):
    """Size of the `SignalUNet`.

    `channels[i]` is the width at resolution image_size / 2**i; after the last level one more stride-2
    downsampling leads to the middle blocks (28 -> 14 -> 7 for two levels). `time_scale` multiplies t in
    [0, 1] before the sinusoidal embedding so its frequencies span the range they do for DDPM step indices.
    The default (16, 32) with two middle blocks costs ~0.8 ms per image per call at batch 200 on the 2-core
    CPU (benchmarks/denoiser_cost.py): multiples of 16 suit the AVX2 kernels, the 7 x 7 middle blocks are
    nearly free capacity, and (16, 48) is the next step up (~1.0 ms) if quality needs it.
    """

    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    channels: tuple[int, ...] = (16, 32)
    time_dim: int = 128
    blocks_per_level: int = 1
    mid_blocks: int = 2
    groups: int = 8
    dropout: float = 0.0
    time_scale: float = 1000.0

    def __post_init__(self):
        self._positive("in_channels", "image_size", "num_classes", "blocks_per_level", "mid_blocks", "groups")
        self._even("time_dim")
        self._int_tuple("channels")
        self._fraction("dropout")
        self._number("time_scale")
        if self.image_size < 2 ** len(self.channels):
            raise CoupledError(
                f"SignalUNetConfig.image_size={self.image_size} is too small for {len(self.channels)} downsamplings; "
                f"use fewer channels entries"
            )


@dataclass(frozen=True)
class LogitNetConfig(_Config):
    """Size of the `LogitNet`: an MLP of `depth` residual blocks of width `hidden`.

    With `use_features`, a conv encoder of widths `encoder_channels` (each a stride-2 conv) and a global
    average pool turn the image into `feature_dim` features fed to the MLP.
    """

    num_classes: int = 10
    in_channels: int = 1
    image_size: int = 28
    hidden: int = 256
    feature_dim: int = 64
    use_features: bool = True
    use_center: bool = True
    time_dim: int = 64
    depth: int = 2
    encoder_channels: tuple[int, ...] = (16, 32, 64)
    dropout: float = 0.0
    time_scale: float = 1000.0

    def __post_init__(self):
        self._positive("num_classes", "in_channels", "image_size", "hidden", "feature_dim", "depth")
        self._even("time_dim")
        self._int_tuple("encoder_channels")
        self._fraction("dropout")
        self._number("time_scale")
        self._bool("use_features", "use_center")


# ----------------------------------------------------------------------------------------------- helpers


def _check_shape(name: str, x: torch.Tensor, expected: tuple) -> None:
    if not isinstance(x, torch.Tensor):
        raise CoupledError(f"{name} must be a tensor of shape {list(expected)}, got {type(x).__name__}")
    if tuple(x.shape) != tuple(expected):
        raise CoupledError(f"{name} must have shape {list(expected)}, got {list(x.shape)}")


def _act(h: torch.Tensor) -> torch.Tensor:
    """SiLU, in place when autograd is off: on CPU a fresh activation buffer costs about as much as the SiLU."""
    return F.silu(h, inplace=not torch.is_grad_enabled())


def _upsample_to(h: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Nearest 2x upsampling cropped to `size` (the skip's size, odd or even).

    A stride-2 conv maps size s to ceil(s / 2), so doubling and cropping restores s exactly, with the
    same pixels as F.interpolate(mode="nearest", size=size); it is several times faster than
    F.interpolate on CPU, whose copy cost a noticeable share of the whole U-Net.
    """
    B, C, H, W = h.shape
    h = h[:, :, :, None, :, None].expand(B, C, H, 2, W, 2).reshape(B, C, 2 * H, 2 * W)
    return h[:, :, : size[0], : size[1]]


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """`x` with channels_last strides, so the convolutions that follow pick oneDNN's NHWC kernels.

    `x.contiguous(memory_format=torch.channels_last)` is a no-op for one-channel images (their usual
    strides already count as channels_last), yet the kernel choice follows the actual strides, hence the copy.
    """
    return torch.empty_like(x, memory_format=torch.channels_last).copy_(x)


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    # the largest group count dividing the width, so any width works with the configured `groups`
    return nn.GroupNorm(math.gcd(groups, channels), channels)


# ----------------------------------------------------------------------------------------------- classifier


class DigitClassifier(nn.Module):
    """Small CNN classifier: images [B, C, H, W] in [-1, 1] -> logits [B, num_classes].

    Two conv blocks (3x3 conv, ReLU, 2x2 max-pool; widths `width`, `2 * width`), then an MLP head with
    dropout. No normalisation layers, so eval outputs are per item. About 0.4M parameters at the default.
    Activations run in channels_last memory format, which makes it about twice as fast on CPU; inputs and
    outputs are ordinary tensors and the weights stay contiguous (so safetensors can save them).
    """

    def __init__(self, cfg: ClassifierConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or ClassifierConfig()
        w = cfg.width
        self.features = nn.Sequential(
            nn.Conv2d(cfg.in_channels, w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        side = cfg.image_size // 2 // 2
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(2 * w * side * side, 4 * w),
            nn.ReLU(inplace=True),
            nn.Dropout(0.25),
            nn.Linear(4 * w, cfg.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, num_classes] of images `x` [B, C, H, W]."""
        c = self.cfg
        _check_shape("images", x, (x.shape[0], c.in_channels, c.image_size, c.image_size))
        return self.head(self.features(_channels_last(x)))


# ----------------------------------------------------------------------------------------------- signal U-Net


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the (time + logit) embedding added after the first conv."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = _norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = _norm(c_out, groups)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_act(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.drop(_act(self.norm2(h))))
        return self.skip(x) + h


class SignalUNet(nn.Module):
    """Conditional U-Net image denoiser (no attention, no BatchNorm).

    `forward(x_t, t, observation, logits=None, logits_mask=None)`:
      x_t, observation  [B, C, H, W]; the observation (degraded image) is concatenated to x_t as channels.
      t                 [B] float in [0, 1].
      logits            [B, K] or None; embedded by an MLP and added to the time embedding. None uses a
                        learned null token for every item.
      logits_mask       optional bool [B]: True uses item i's logits, False its null token (classifier-free
                        dropout in training); ignored when logits is None.
    Returns the raw output [B, C, H, W]. The final conv is zero-initialised, so an untrained net outputs 0.

    Layout for channels (c0, c1) at 28 x 28: ResBlock c0 @28 -> down -> ResBlock c1 @14 -> down -> mid_blocks x c1 @7
    -> up -> [skip c1] ResBlock c1 @14 -> up -> [skip c0] ResBlock c0 @28 -> conv out. Downsampling is a
    stride-2 conv (28 -> 14 -> 7, odd sizes fine); upsampling is a 1x1 conv to the skip's width at the low
    resolution followed by nearest 2x upsampling cropped to the skip's exact size, which keeps the costly
    full-resolution convs narrow.
    """

    def __init__(self, cfg: SignalUNetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or SignalUNetConfig()
        ch, g, d, e = cfg.channels, cfg.groups, cfg.dropout, cfg.time_dim
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.logit_mlp = nn.Sequential(nn.Linear(cfg.num_classes, e), nn.SiLU(), nn.Linear(e, e))
        # the null token lives in embedding space, so "no logits" is never confused with some logit vector
        self.null_logits = nn.Parameter(torch.zeros(e))

        self.conv_in = nn.Conv2d(2 * cfg.in_channels, ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        c_prev = ch[0]
        for c in ch:
            blocks = nn.ModuleList()
            for _ in range(cfg.blocks_per_level):
                blocks.append(_ResBlock(c_prev, c, e, g, d))
                c_prev = c
            self.down_blocks.append(blocks)
            self.downsamplers.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid_blocks = nn.ModuleList([_ResBlock(c_prev, c_prev, e, g, d) for _ in range(cfg.mid_blocks)])
        self.upsamplers = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for c in reversed(ch):
            self.upsamplers.append(nn.Conv2d(c_prev, c, 1))
            blocks = nn.ModuleList([_ResBlock(2 * c, c, e, g, d)])
            blocks.extend(_ResBlock(c, c, e, g, d) for _ in range(cfg.blocks_per_level - 1))
            self.up_blocks.append(blocks)
            c_prev = c
        self.norm_out = _norm(ch[0], g)
        self.conv_out = nn.Conv2d(ch[0], cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def embed(self, t: torch.Tensor, logits: torch.Tensor | None, logits_mask: torch.Tensor | None) -> torch.Tensor:
        """The conditioning embedding [B, time_dim]: time MLP + (logit MLP or null token), per item."""
        dtype = self.null_logits.dtype
        emb = self.time_mlp(timestep_embedding(t, self.cfg.time_dim, self.cfg.time_scale).to(dtype))
        null = self.null_logits[None].expand_as(emb)
        if logits is None:
            return emb + null
        cond = self.logit_mlp(logits.to(emb.dtype))
        if logits_mask is not None:
            cond = torch.where(logits_mask[:, None], cond, null)
        return emb + cond

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        observation: torch.Tensor,
        logits: torch.Tensor | None = None,
        logits_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Raw network output [B, C, H, W]; see the class docstring for the arguments."""
        c = self.cfg
        B = x_t.shape[0]
        _check_shape("x_t", x_t, (B, c.in_channels, c.image_size, c.image_size))
        _check_shape("observation", observation, tuple(x_t.shape))
        if logits is not None:
            _check_shape("logits", logits, (B, c.num_classes))
        if logits_mask is not None:
            _check_shape("logits_mask", logits_mask, (B,))
            if logits_mask.dtype != torch.bool:
                raise CoupledError(
                    f"logits_mask must be a bool tensor (True = use the logits), got {logits_mask.dtype}"
                )
        emb = F.silu(self.embed(item_times(t, B, x_t.device), logits, logits_mask))

        h = self.conv_in(torch.cat([x_t, observation.to(x_t.dtype)], dim=1))
        skips = []
        for blocks, down in zip(self.down_blocks, self.downsamplers):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            h = down(h)
        for block in self.mid_blocks:
            h = block(h, emb)
        for up, blocks in zip(self.upsamplers, self.up_blocks):
            skip = skips.pop()
            h = _upsample_to(up(h), skip.shape[-2:])
            h = torch.cat([h, skip], dim=1)
            for block in blocks:
                h = block(h, emb)
        return self.conv_out(_act(self.norm_out(h)))


# ----------------------------------------------------------------------------------------------- logit denoiser


class _MLPBlock(nn.Module):
    """Pre-norm residual MLP block (LayerNorm is per item, so batch-independent)."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Dropout(dropout), nn.Linear(width, width)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.net(h)


class LogitNet(nn.Module):
    """Logit denoiser: `forward(y_t [B, K], t [B], evidence [B, K], signal [B, C, H, W] or None) -> [B, K]`.

    An MLP over concat(y_t, evidence, sinusoidal time embedding, image features) made of an input layer,
    `depth` residual blocks and a zero-initialised output layer. With `cfg.use_features` the features
    come from a small strided-conv encoder of `signal` with a global average pool; when `signal` is None
    they are zeros. Without `use_features` there is no encoder and `signal` is ignored. With
    `cfg.use_center` the chain's `center` (a centred process's prior mean, which can differ from the
    evidence, e.g. in Parallel after the switch) is a further input; None means "the evidence".
    """

    def __init__(self, cfg: LogitNetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or LogitNetConfig()
        self.encoder = None
        n_feat = 0
        if cfg.use_features:
            layers, c_prev = [], cfg.in_channels
            for c in cfg.encoder_channels:
                layers += [nn.Conv2d(c_prev, c, 3, stride=2, padding=1), nn.SiLU()]
                c_prev = c
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_prev, cfg.feature_dim)]
            self.encoder = nn.Sequential(*layers)
            n_feat = cfg.feature_dim
        self.n_feat = n_feat
        self.inp = nn.Linear((3 if cfg.use_center else 2) * cfg.num_classes + cfg.time_dim + n_feat, cfg.hidden)
        self.blocks = nn.Sequential(*[_MLPBlock(cfg.hidden, cfg.dropout) for _ in range(cfg.depth)])
        self.out = nn.Sequential(nn.LayerNorm(cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.num_classes))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def features(self, signal: torch.Tensor | None, batch: int, like: torch.Tensor) -> torch.Tensor:
        """Image features [B, feature_dim] (zeros when `signal` is None); [B, 0] without `use_features`."""
        if self.encoder is None:
            return like.new_zeros(batch, 0)
        if signal is None:
            return like.new_zeros(batch, self.n_feat)
        c = self.cfg
        _check_shape("signal", signal, (batch, c.in_channels, c.image_size, c.image_size))
        return self.encoder(signal.to(like.dtype))

    def forward(
        self, y_t: torch.Tensor, t: torch.Tensor, evidence: torch.Tensor, signal: torch.Tensor | None = None,
        center: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Raw network output [B, K] for noisy logits `y_t`, times `t` [B] in [0, 1], `evidence` [B, K]."""
        c = self.cfg
        B = y_t.shape[0]
        _check_shape("y_t", y_t, (B, c.num_classes))
        _check_shape("evidence", evidence, (B, c.num_classes))
        temb = timestep_embedding(item_times(t, B, y_t.device), c.time_dim, c.time_scale).to(y_t.dtype)
        parts = [y_t, evidence.to(y_t.dtype), temb, self.features(signal, B, y_t)]
        if c.use_center:
            parts.insert(2, (evidence if center is None else center).to(y_t.dtype))
        h = torch.cat(parts, dim=1)
        return self.out(self.blocks(F.silu(self.inp(h))))
