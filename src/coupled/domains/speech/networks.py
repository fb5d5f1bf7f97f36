"""The speech domain's two denoisers of coupled diffusion, for utterances of any length batched with padding.

* `SpeechSignalUNet`: the signal denoiser D_x over a representation [B, C, F, T] (`representation.py`: the
  compressed STFT, C = 2, F = 256, 8 ms frames; or the log-mel, C = 1, F = 64, 10 ms frames), conditioned on
  the time t, the degraded representation (concatenated as channels) and optionally the recogniser's frame
  logits [B, T_l, K] (40 ms frames), which enter at the middle of the U-Net through a gate that starts at 0.
* `SpeechLogitNet`: the logit denoiser D_y over frame logits [B, T_l, K], dilated 1-D convolutions over
  time, conditioned on the evidence (the recogniser's logits of the current signal estimate), optionally
  the chain's centre and features of the current signal estimate.

Same call contracts as the image domain's SignalUNet and LogitNet (`forward(x_t, t, observation, logits=None,
logits_mask=None)`, `forward(y_t, t, evidence, signal=None, center=None)`), plus `lengths` (valid frames per
item). Both return the raw output (a `Denoiser` reads it as eps / x0 / v), zero at padded frames, and are
zero at initialisation (zero-initialised last layer). Inputs are not clipped: speech representations are
unbounded.

**Padding.** An item's output does not depend on its batch or on the padding after it (tested to 1e-5 with
three items of very different lengths): every convolution sees zeros past each item's valid frames (the
activations are masked after every layer that can make them non-zero); the U-Net's GroupNorm statistics are
taken per item over its valid frames only (`MaskedGroupNorm`, one fused group_norm per item when the batch is
padded); the logit net normalises per frame (LayerNorm over channels). Time is downsampled by stride-2
convolutions and upsampled by nearest repetition cropped to the skip's length, which are exact under zero
padding (a level of T valid frames has ceil(T / 2) below it), so no length needs padding to a multiple of the
total stride.

**Frame alignment** (`logit_frame_index`). Recogniser frame j is centred on sample 640 j (4 x 10 ms mel frames,
each centred on its hop); signal frame i on sample hop * i. Signal frame i reads logit frame
floor(hop * i / 640 + 1/2): the logit frame whose 40 ms span [640 j - 320, 640 j + 320) contains its centre
(nearest, not linear interpolation: a CTC logit spike is one frame wide, and interpolation would smear it),
never past the last logit frame whose centre is not after the last signal frame's (so the index depends on
the item's own length only, and never reads a padded logit row). The U-Net averages the aligned logit
embeddings over each middle-level frame's window (its time stride is 4: 32 ms for the STFT, exactly the 40 ms
logit frame for the mel); the logit net averages signal features over the signal frames that map to each
logit frame.

**Cost** of one forward pass on one 2 s utterance (STFT 256 x 251, mel 64 x 201, logits 51 x 22), batch 1,
one thread of the 2-core machine, no gradient, median of 30 runs (`python -m coupled.domains.speech.measure
--corpus none --repeats 30`, run three times while other developers' jobs kept the load at 3-5: the
reference 3x3 convolution timed in between took 2.1-5.7 ms, against 1.8 ms on an idle core, so idle figures
are lower, by 15-30% at the typical 2.2 ms). The ranges are the three runs' medians. Multiply-adds count the
convolutions and linear layers.

| network (`signal_unet_config(rep, size)`) | channels | parameters (STFT / mel) | GMAC (STFT / mel) | ms (STFT / mel) |
|---|---|---|---|---|
| U-Net tiny | 16, 32, 64 | 466 k / 463 k | 0.59 / 0.43 | 23-35 / 26-34 |
| **U-Net small (default)** | 24, 48, 96 | 967 k / 962 k | 1.28 / 0.97 | 41-57 / 47-60 |
| U-Net base | 32, 64, 128 | 1.66 M / 1.65 M | 2.23 / 1.72 | 59-86 / 70-92 |
| logit net (default, with signal features) | hidden 128 | 626 k / 626 k | 0.09 / 0.04 | 11-12 / 7-10 |

Why "small" is the default: about 1 M parameters at about 45 ms per 2 s of audio, i.e. about 22 ms per second.
The 480 test digit strings are 629 s of audio (mean 1.3 s), so one U-Net call over all of them costs about
14 s of one core, and a 20-step signal trajectory about 5 minutes per method and seed: hundreds of utterances
x many methods x 3 seeds within 2 hours on 2 cores leaves room for tens of calls per item, not hundreds.
"tiny" halves the cost for the strategies that pay most calls (nested); "base" is the capacity step up.
Both representations run the U-Net on a 64 x T grid (the STFT's bins folded 4 to a channel): the mel's 20%
fewer frames give 25% fewer multiply-adds, yet its U-Net was not measurably faster here (its 2-channel input
and 1-channel output convolutions run less efficiently); the mel's saving is elsewhere, in needing no
resynthesis before the recogniser (`RecogniserOnRepresentation`). Cost grows linearly with the length. The logit net's time is
mostly per-layer overhead at 51 frames (its dilated 1-D convolutions take PyTorch's slow dilated path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import CoupledError
from ...nets import count_parameters, item_times, timestep_embedding
from .corpus import JSONConfig
from .frontend import valid_mask

__all__ = [
    "SpeechSignalUNetConfig",
    "SpeechLogitNetConfig",
    "SpeechSignalUNet",
    "SpeechLogitNet",
    "SIGNAL_UNET_PRESETS",
    "signal_unet_config",
    "logit_net_config",
    "logit_frame_index",
    "align_logits",
    "MaskedGroupNorm",
    "count_parameters",
]

LOGIT_HOP = 640  # samples per recogniser frame: 4 x the 160-sample mel hop (40 ms at 16 kHz)


# ----------------------------------------------------------------------------------------------- configs


def _positive(cfg, *names: str) -> None:
    for name in names:
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise CoupledError(f"{type(cfg).__name__}.{name} must be a positive integer, got {v!r}")


def _int_tuple(cfg, name: str, allowed=None) -> None:
    v = getattr(cfg, name)
    try:
        v = tuple(v)
    except TypeError:
        raise CoupledError(f"{type(cfg).__name__}.{name} must be a list of positive integers, got {v!r}") from None
    if not v or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 or (allowed and c not in allowed) for c in v):
        what = f"values in {sorted(allowed)}" if allowed else "positive integers"
        raise CoupledError(f"{type(cfg).__name__}.{name} must be a non-empty list of {what}, got {list(v)!r}")
    object.__setattr__(cfg, name, v)  # JSON gives lists back: keep the frozen field a tuple


@dataclass(frozen=True)
class SpeechSignalUNetConfig(JSONConfig):
    """Size and inputs of the `SpeechSignalUNet`.

    Args:
        in_channels, bins, hop: the representation's channels, frequency bins and hop in samples (2 / 256 / 128
            for the compressed STFT, 1 / 64 / 160 for the log-mel; `signal_unet_config(rep)` copies them).
        freq_patch: bins folded into channels before the first convolution (4: the STFT's 256 bins become a
            64 x T grid like the mel's; the last convolution unfolds them), so the full-resolution level is cheap.
        channels: width per level; each level is `blocks_per_level` residual blocks, then a stride-2
            convolution halving frequency and dividing time by `time_strides[level]` (1 or 2).
        mid_blocks: residual blocks at the bottom, where the logits enter (width channels[-1]).
        num_classes, logit_hop: the recogniser's classes and its frame hop in samples (640 = 40 ms).
        time_dim, time_scale: sinusoidal embedding of t in [0, 1] (times time_scale, as for DDPM step indices).
        groups: GroupNorm groups (the largest divisor of a width up to this).
    """

    what = "speech signal U-Net option"

    in_channels: int = 2
    bins: int = 256
    hop: int = 128
    freq_patch: int = 4
    channels: tuple = (24, 48, 96)
    time_strides: tuple = (2, 2, 1)
    blocks_per_level: int = 1
    mid_blocks: int = 2
    num_classes: int = 22
    logit_hop: int = LOGIT_HOP
    time_dim: int = 128
    time_scale: float = 1000.0
    groups: int = 8
    dropout: float = 0.0

    def __post_init__(self):
        _positive(self, "in_channels", "bins", "hop", "freq_patch", "blocks_per_level", "num_classes", "logit_hop",
                  "time_dim", "groups")
        if isinstance(self.mid_blocks, bool) or not isinstance(self.mid_blocks, int) or self.mid_blocks < 0:
            raise CoupledError(f"SpeechSignalUNetConfig.mid_blocks must be a non-negative integer, got {self.mid_blocks!r}")
        _int_tuple(self, "channels")
        _int_tuple(self, "time_strides", {1, 2})
        if len(self.time_strides) != len(self.channels):
            raise CoupledError(f"SpeechSignalUNetConfig.time_strides needs one entry (1 or 2) per channels entry: "
                               f"{len(self.time_strides)} for {len(self.channels)}")
        grid = self.bins / self.freq_patch
        if grid != int(grid) or int(grid) % 2 ** len(self.channels):
            raise CoupledError(f"SpeechSignalUNetConfig: bins {self.bins} / freq_patch {self.freq_patch} must be a "
                               f"multiple of 2^{len(self.channels)} (one halving per level); change freq_patch or channels")
        if self.time_dim % 2:
            raise CoupledError(f"SpeechSignalUNetConfig.time_dim must be even (sin/cos halves), got {self.time_dim}")
        if not 0 <= self.dropout < 1:
            raise CoupledError(f"SpeechSignalUNetConfig.dropout must be in [0, 1), got {self.dropout}")

    @property
    def time_stride(self) -> int:
        """Signal frames per middle-level frame."""
        s = 1
        for k in self.time_strides:
            s *= k
        return s


@dataclass(frozen=True)
class SpeechLogitNetConfig(JSONConfig):
    """Size and inputs of the `SpeechLogitNet`.

    Args:
        num_classes: the recogniser's classes K (22: blank + 21 words); logit_hop: its frame hop in samples.
        hidden, dilations, kernel: residual blocks of dilated 1-D convolutions over logit frames (the default
            eight see 61 frames, 2.4 s).
        time_dim, time_scale: sinusoidal embedding of t.
        use_center: the chain's centre is a further per-frame input (None means the evidence).
        use_features: features of the current signal estimate are a further per-frame input: a conv encoder of
            widths `encoder_channels` (each a stride-2 convolution along frequency only), averaged over
            frequency, projected to `feature_dim` and averaged over the signal frames of each logit frame.
        signal_channels, bins, hop: the representation the features read (2 / 256 / 128 for the STFT).
    """

    what = "speech logit net option"

    num_classes: int = 22
    hidden: int = 128
    dilations: tuple = (1, 2, 4, 8, 1, 2, 4, 8)
    kernel: int = 3
    time_dim: int = 64
    time_scale: float = 1000.0
    use_center: bool = True
    use_features: bool = True
    signal_channels: int = 2
    bins: int = 256
    hop: int = 128
    logit_hop: int = LOGIT_HOP
    encoder_channels: tuple = (8, 16, 32)
    feature_dim: int = 32
    dropout: float = 0.0

    def __post_init__(self):
        _positive(self, "num_classes", "hidden", "kernel", "time_dim", "signal_channels", "bins", "hop", "logit_hop",
                  "feature_dim")
        _int_tuple(self, "dilations")
        _int_tuple(self, "encoder_channels")
        for name in ("use_center", "use_features"):
            if not isinstance(getattr(self, name), bool):
                raise CoupledError(f"SpeechLogitNetConfig.{name} must be true or false, got {getattr(self, name)!r}")
        if self.kernel % 2 == 0:
            raise CoupledError(f"SpeechLogitNetConfig.kernel must be odd (centred convolutions), got {self.kernel}")
        if self.time_dim % 2:
            raise CoupledError(f"SpeechLogitNetConfig.time_dim must be even (sin/cos halves), got {self.time_dim}")
        if not 0 <= self.dropout < 1:
            raise CoupledError(f"SpeechLogitNetConfig.dropout must be in [0, 1), got {self.dropout}")


# Widths chosen for the CPU budget (the module docstring's table): "small" is the default (about 1 M parameters,
# 45 ms per 2 s); "tiny" halves the cost for step-hungry strategies (nested); "base" is the capacity step up.
SIGNAL_UNET_PRESETS = {
    "tiny": {"channels": (16, 32, 64)},
    "small": {"channels": (24, 48, 96)},
    "base": {"channels": (32, 64, 128)},
}


def signal_unet_config(representation, size: str = "small", **options) -> SpeechSignalUNetConfig:
    """A `SpeechSignalUNetConfig` for a representation (`CompressedSTFT` or `LogMel`) at a preset size.

    Args:
        representation: gives in_channels, bins and hop (the STFT's 256 bins are folded 4 to a channel).
        size: one of SIGNAL_UNET_PRESETS; options: any further config field (they win over the preset).
    """
    if size not in SIGNAL_UNET_PRESETS:
        raise CoupledError(f"unknown speech U-Net size {size!r}; valid: {', '.join(SIGNAL_UNET_PRESETS)}")
    patch = max(1, representation.bins // 64)
    base = {"in_channels": representation.channels, "bins": representation.bins, "hop": representation.hop,
            "freq_patch": patch}
    return SpeechSignalUNetConfig(**{**base, **SIGNAL_UNET_PRESETS[size], **options})


def logit_net_config(representation=None, **options) -> SpeechLogitNetConfig:
    """A `SpeechLogitNetConfig` reading features of `representation` (None: no signal features)."""
    base = {"use_features": False} if representation is None else {
        "signal_channels": representation.channels, "bins": representation.bins, "hop": representation.hop}
    return SpeechLogitNetConfig(**{**base, **options})


# ----------------------------------------------------------------------------------------------- helpers
def _check_shape(name: str, x, expected: tuple, hint: str = "") -> None:
    """`expected` may hold None for a free dimension."""
    shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
    ok = isinstance(x, torch.Tensor) and x.dim() == len(expected) and all(
        e is None or e == s for e, s in zip(expected, x.shape))
    if not ok:
        want = "[" + ", ".join("T" if e is None else str(e) for e in expected) + "]"
        raise CoupledError(f"{name} must have shape {want}{hint}, got {shape}")
    if x.is_complex():
        raise CoupledError(f"{name} must be real, got a complex tensor; put real and imaginary parts in channels")


def _lengths(lengths, batch: int, size: int, device, name: str = "lengths") -> torch.Tensor:
    if lengths is None:
        return torch.full((batch,), size, device=device, dtype=torch.long)
    lengths = torch.as_tensor(lengths, device=device)
    if lengths.shape != (batch,) or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise CoupledError(f"{name} must be an integer tensor [{batch}] of valid frames per item, got "
                           f"{lengths.dtype} {list(lengths.shape)}")
    if int(lengths.min()) < 1 or int(lengths.max()) > size:
        raise CoupledError(f"{name} must lie in 1..{size} (the frames of the batch), got {lengths.tolist()}")
    return lengths.long()


def _act(h: torch.Tensor) -> torch.Tensor:
    return F.silu(h, inplace=not torch.is_grad_enabled())


def _masked(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """h zeroed at padded frames (mask None: no item of the batch is padded, nothing to do)."""
    return h if mask is None else h * mask


def _frame_mask(lengths: torch.Tensor, frames: int, dtype, dims: int = 2) -> torch.Tensor | None:
    """Float mask [B, 1, (1,) frames] of valid frames, or None when every item fills the batch."""
    if bool((lengths == frames).all()):
        return None
    m = valid_mask(lengths, frames).to(dtype)[:, None]
    return m[:, :, None] if dims == 2 else m


def _ceil_div(n: torch.Tensor, k: int) -> torch.Tensor:
    return (n + k - 1) // k


def logit_frame_index(frames: int, hop: int, lengths: torch.Tensor, logit_frames: int,
                      logit_hop: int = LOGIT_HOP) -> torch.Tensor:
    """Index [B, frames] of the logit frame each signal frame reads (module docstring, "Frame alignment").

    Args:
        frames: signal frames in the batch (T); hop: their hop in samples.
        lengths: valid signal frames per item [B].
        logit_frames: logit frames in the batch (T_l); logit_hop: their hop in samples (640).
    Signal frame i (centred on sample hop * i) reads logit frame floor(hop * i / logit_hop + 1/2), clamped to
    the last logit frame centred at or before the item's last signal frame, and to T_l - 1.
    """
    i = torch.arange(frames, device=lengths.device)
    j = (2 * hop * i + logit_hop) // (2 * logit_hop)  # integer arithmetic: no rounding surprise at the ties
    last = (hop * (lengths - 1)) // logit_hop  # [B]
    return torch.minimum(j[None], last[:, None]).clamp(max=logit_frames - 1)


def align_logits(logits: torch.Tensor, frames: int, hop: int, lengths: torch.Tensor | None = None,
                 logit_hop: int = LOGIT_HOP) -> torch.Tensor:
    """Frame logits [B, T_l, K] (or their embeddings) brought to a signal's frames: [B, frames, K].

    Args:
        logits: per-recogniser-frame rows; frames: signal frames T; hop: the signal's hop in samples.
        lengths: valid signal frames per item [B] (default all); rows past them are 0.
    """
    B, T_l, K = logits.shape
    lengths = _lengths(lengths, B, frames, logits.device)
    idx = logit_frame_index(frames, hop, lengths, T_l, logit_hop)
    out = torch.gather(logits, 1, idx[:, :, None].expand(B, frames, K))
    return out * valid_mask(lengths, frames)[:, :, None].to(out.dtype)


class MaskedGroupNorm(nn.GroupNorm):
    """GroupNorm over [B, C, F, T] whose statistics span each item's valid frames only; padded frames out are 0.

    With no padded frame in the batch it is nn.GroupNorm; otherwise it runs the same fused kernel on each
    item's valid slice, so an item gets exactly what it gets alone.
    """

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        T = x.shape[-1]
        if lengths is None or bool((lengths == T).all()):
            return super().forward(x)
        out = torch.zeros_like(x)  # keeps x's memory format
        for b, n in enumerate(lengths.tolist()):
            out[b:b + 1, ..., :n] = super().forward(x[b:b + 1, ..., :n])
        return out


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """`x` with channels_last strides, so the convolutions that follow pick oneDNN's NHWC kernels (about 2x
    faster at the full-resolution level on this CPU); the weights stay contiguous, so safetensors saves them."""
    return torch.empty_like(x, memory_format=torch.channels_last).copy_(x)


def _upsample(h: torch.Tensor, time_stride: int, frames: int) -> torch.Tensor:
    """Nearest upsampling by 2 in frequency and `time_stride` in time, cropped to `frames`: frame j reads frame
    j // time_stride, so it is exact under zero padding (expand + reshape: faster than F.interpolate on CPU)."""
    B, C, Fq, T = h.shape
    h = h[:, :, :, None, :, None].expand(B, C, Fq, 2, T, time_stride).reshape(B, C, 2 * Fq, T * time_stride)
    return h[..., :frames]


def _norm(channels: int, groups: int) -> MaskedGroupNorm:
    # the largest group count dividing the width, so any width works with the configured `groups`
    return MaskedGroupNorm(math.gcd(groups, channels), channels)


# ----------------------------------------------------------------------------------------------- signal U-Net


class _ResBlock(nn.Module):
    """MaskedGroupNorm-SiLU-conv twice, the time embedding added after the first conv; output 0 at padded frames."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = _norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = _norm(c_out, groups)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x, emb, lengths, mask):
        # x is 0 at padded frames; each norm's output is too, so every conv reads zeros there
        h = self.conv1(_act(self.norm1(x, lengths)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.drop(_act(self.norm2(h, lengths))))
        return _masked(self.skip(x) + h, mask)


class SpeechSignalUNet(nn.Module):
    """Conditional U-Net signal denoiser over a speech representation [B, C, F, T] (no attention, no BatchNorm).

    `forward(x_t, t, observation, logits=None, logits_mask=None, lengths=None)`:
      x_t, observation  [B, C, F, T] (C, F = cfg.in_channels, cfg.bins); the observation (the degraded
                        representation) is concatenated to x_t as channels.
      t                 [B] float in [0, 1].
      logits            [B, T_l, K] frame logits (standardised per frame by the caller) or None. Each frame is
                        embedded by an MLP to the middle width, aligned to the signal's frames
                        (`logit_frame_index`), averaged over each middle-level frame, broadcast over frequency
                        and added through a per-channel gate initialised at 0 (an untrained net ignores logits).
                        None uses a learned null token for every item and frame.
      logits_mask       optional bool [B]: True uses item b's logits, False its null token (classifier-free
                        dropout in training); ignored when logits is None.
      lengths           optional valid frames per item [B] (default all T); outputs past them are 0, and an
                        item's output does not depend on the rest of its batch.
    Returns the raw output [B, C, F, T]; the final conv is zero-initialised, so an untrained net outputs 0.

    Layout (STFT, channels (c0, c1, c2)): fold 4 bins into channels ([B, 2C, 256, T] -> [B, 8C, 64, T]),
    conv -> ResBlock c0 @64 x T -> down (2, 2) -> ResBlock c1 @32 x T/2 -> down (2, 2) -> ResBlock c2 @16 x
    T/4 -> down (2, 1) -> + gated logits -> mid_blocks x c2 @8 x T/4 -> mirrored up path (1x1 conv to the
    skip's width, nearest upsampling cropped to the skip's length, added to the skip, ResBlock) -> conv ->
    unfold. The log-mel has no fold. Additive skips (not concatenated) keep the up path's convolutions at the
    level's width: a third less compute than concatenation for the same widths.
    """

    def __init__(self, cfg: SpeechSignalUNetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or SpeechSignalUNetConfig()
        ch, g, d, e = cfg.channels, cfg.groups, cfg.dropout, cfg.time_dim
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        c_mid = ch[-1]
        self.logit_mlp = nn.Sequential(nn.Linear(cfg.num_classes, c_mid), nn.SiLU(), nn.Linear(c_mid, c_mid))
        self.null_logits = nn.Parameter(torch.zeros(c_mid))
        self.logit_gate = nn.Parameter(torch.zeros(c_mid))  # 0 at initialisation: logits (and null) add nothing

        p = cfg.freq_patch
        self.conv_in = nn.Conv2d(2 * cfg.in_channels * p, ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        c_prev = ch[0]
        for c, s in zip(ch, cfg.time_strides):
            blocks = nn.ModuleList()
            for _ in range(cfg.blocks_per_level):
                blocks.append(_ResBlock(c_prev, c, e, g, d))
                c_prev = c
            self.down_blocks.append(blocks)
            self.downsamplers.append(nn.Conv2d(c, c, 3, stride=(2, s), padding=1))
        self.mid_blocks = nn.ModuleList([_ResBlock(c_prev, c_prev, e, g, d) for _ in range(cfg.mid_blocks)])
        self.upsamplers = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for c in reversed(ch):
            self.upsamplers.append(nn.Conv2d(c_prev, c, 1))
            self.up_blocks.append(nn.ModuleList(_ResBlock(c, c, e, g, d) for _ in range(cfg.blocks_per_level)))
            c_prev = c
        self.norm_out = _norm(ch[0], g)
        self.conv_out = nn.Conv2d(ch[0], cfg.in_channels * p, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    # ---- frequency folding: [B, C, F, T] <-> [B, C p, F / p, T], bin f = (f // p, f % p)
    def _fold(self, x: torch.Tensor) -> torch.Tensor:
        p = self.cfg.freq_patch
        if p == 1:
            return x
        B, C, Fq, T = x.shape
        return x.reshape(B, C, Fq // p, p, T).transpose(2, 3).reshape(B, C * p, Fq // p, T)

    def _unfold(self, x: torch.Tensor) -> torch.Tensor:
        p = self.cfg.freq_patch
        if p == 1:
            return x
        B, Cp, Fp, T = x.shape
        return x.reshape(B, Cp // p, p, Fp, T).transpose(2, 3).reshape(B, Cp // p, Fp * p, T)

    def time_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """SiLU of the time MLP's embedding [B, time_dim] of t [B]."""
        dtype = self.null_logits.dtype
        return F.silu(self.time_mlp(timestep_embedding(t, self.cfg.time_dim, self.cfg.time_scale).to(dtype)))

    def logit_conditioning(self, logits: torch.Tensor | None, logits_mask: torch.Tensor | None, batch: int,
                           frames: int, lengths: torch.Tensor, mid_frames: int, mid_lengths: torch.Tensor) -> torch.Tensor:
        """What the logits add at the middle level, before the gate: [B, c_mid, mid_frames] (0 past mid_lengths).

        The per-frame logit embedding aligned to the `frames` signal frames, then averaged over the signal
        frames of each middle-level frame (a centred window of time_stride frames, valid frames only).
        """
        c_mid = self.null_logits.shape[0]
        null = self.null_logits[None, :, None].expand(batch, c_mid, mid_frames)
        if logits is None:
            cond = null
        else:
            emb = self.logit_mlp(logits.to(self.null_logits.dtype))  # [B, T_l, c_mid]
            aligned = align_logits(emb, frames, self.cfg.hop, lengths, self.cfg.logit_hop).transpose(1, 2)
            s = self.cfg.time_stride
            if s > 1:
                m = valid_mask(lengths, frames).to(aligned.dtype)[:, None]
                pool = lambda z: F.avg_pool1d(z, s, s, padding=s // 2)[..., :mid_frames]  # noqa: E731
                aligned = pool(aligned) / pool(m).clamp(min=1e-6)  # the mean over the window's valid frames
            cond = aligned[..., :mid_frames]
            if logits_mask is not None:
                cond = torch.where(logits_mask[:, None, None], cond, null)
        return cond * valid_mask(mid_lengths, mid_frames)[:, None].to(cond.dtype)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, observation: torch.Tensor, logits: torch.Tensor | None = None,
                logits_mask: torch.Tensor | None = None, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Raw network output [B, C, F, T]; see the class docstring for the arguments."""
        c = self.cfg
        rep = " (a speech representation: real and imaginary STFT parts, or the log-mel, as channels)"
        B = x_t.shape[0] if isinstance(x_t, torch.Tensor) and x_t.dim() > 0 else 0
        _check_shape("x_t", x_t, (B, c.in_channels, c.bins, None), rep)
        T = x_t.shape[-1]
        _check_shape("observation", observation, (B, c.in_channels, c.bins, T), " (the degraded representation, as x_t)")
        if logits is not None:
            _check_shape("logits", logits, (B, None, c.num_classes), " (frame logits [B, T_l, K] of the recogniser)")
        if logits_mask is not None:
            _check_shape("logits_mask", logits_mask, (B,))
            if logits_mask.dtype != torch.bool:
                raise CoupledError(f"logits_mask must be a bool tensor (True = use the logits), got {logits_mask.dtype}")
        lengths = _lengths(lengths, B, T, x_t.device)
        dtype = self.conv_in.weight.dtype
        emb = self.time_embedding(item_times(t, B, x_t.device))

        mask = _frame_mask(lengths, T, dtype)
        h = _channels_last(self._fold(_masked(torch.cat([x_t.to(dtype), observation.to(dtype)], dim=1), mask)))
        h = _masked(self.conv_in(h), mask)
        skips = []
        for blocks, down, s in zip(self.down_blocks, self.downsamplers, c.time_strides):
            for block in blocks:
                h = block(h, emb, lengths, mask)
            skips.append((h, lengths, mask))
            lengths = _ceil_div(lengths, s)
            h = down(h)
            mask = _frame_mask(lengths, h.shape[-1], dtype)
            h = _masked(h, mask)
        cond = self.logit_conditioning(logits, logits_mask, B, T, skips[0][1], h.shape[-1], lengths)
        h = _masked(h + self.logit_gate[None, :, None, None] * cond[:, :, None, :], mask)
        for block in self.mid_blocks:
            h = block(h, emb, lengths, mask)
        for up, blocks, s in zip(self.upsamplers, self.up_blocks, reversed(c.time_strides)):
            skip, lengths, mask = skips.pop()
            # nearest upsampling cropped to the skip, added to it (exact under zero padding)
            h = _masked(_channels_last(_upsample(up(h), s, skip.shape[-1])), mask) + skip
            for block in blocks:
                h = block(h, emb, lengths, mask)
        out = _masked(self.conv_out(_act(self.norm_out(h, lengths))), mask)
        return self._unfold(out.contiguous())


# ----------------------------------------------------------------------------------------------- logit denoiser


class _TemporalBlock(nn.Module):
    """Per-frame LayerNorm, dilated conv over frames, SiLU, 1x1 conv, the time embedding added; residual, masked."""

    def __init__(self, c: int, k: int, dilation: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(c)
        self.conv1 = nn.Conv1d(c, c, k, dilation=dilation, padding=dilation * (k - 1) // 2)
        self.emb = nn.Linear(emb_dim, c)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(c, c, 1)

    def forward(self, x, emb, mask):
        h = self.norm(x.transpose(1, 2)).transpose(1, 2) * mask  # per-frame statistics; padded frames back to 0
        h = _act(self.conv1(h) + self.emb(emb)[:, :, None])
        return (x + self.conv2(self.drop(h))) * mask


class SpeechLogitNet(nn.Module):
    """Logit denoiser over frame logits: `forward(y_t [B, T, K], t [B], evidence [B, T, K], signal=None,
    center=None, lengths=None, signal_lengths=None) -> [B, T, K]`.

    Per frame, concat(y_t, evidence, center if cfg.use_center (None means the evidence), signal features if
    cfg.use_features) is projected to `hidden`, then residual blocks of dilated 1-D convolutions over frames,
    each adding the time embedding, then a per-frame LayerNorm-SiLU-linear output initialised at 0.
      signal          [B, C, F, T_s] the current signal estimate's representation (its features: a small conv
                      encoder, averaged over frequency, averaged over the signal frames of each logit frame); None
                      gives zero features. Ignored without cfg.use_features.
      lengths         valid logit frames per item [B] (default all T); outputs past them are 0.
      signal_lengths  valid signal frames per item [B] (default all T_s).
    An item's output does not depend on the rest of its batch.
    """

    def __init__(self, cfg: SpeechLogitNetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or SpeechLogitNetConfig()
        self.encoder = None
        n_feat = 0
        if cfg.use_features:
            convs, c_prev = [], cfg.signal_channels
            for c in cfg.encoder_channels:
                convs.append(nn.Conv2d(c_prev, c, 3, stride=(2, 1), padding=1))
                c_prev = c
            self.encoder = nn.ModuleList(convs)
            self.feature_proj = nn.Linear(c_prev, cfg.feature_dim)
            n_feat = cfg.feature_dim
        self.n_feat = n_feat
        n_in = (3 if cfg.use_center else 2) * cfg.num_classes + n_feat
        self.inp = nn.Conv1d(n_in, cfg.hidden, 1)
        e = cfg.time_dim
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e), nn.SiLU())
        self.blocks = nn.ModuleList(_TemporalBlock(cfg.hidden, cfg.kernel, d, e, cfg.dropout) for d in cfg.dilations)
        self.norm_out = nn.LayerNorm(cfg.hidden)
        self.out = nn.Linear(cfg.hidden, cfg.num_classes)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def features(self, signal: torch.Tensor | None, frames: int, lengths: torch.Tensor,
                 signal_lengths: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """Signal features [B, feature_dim, frames] at the logit frames (zeros when `signal` is None)."""
        B = like.shape[0]
        if self.encoder is None:
            return like.new_zeros(B, 0, frames)
        if signal is None:
            return like.new_zeros(B, self.n_feat, frames)
        c = self.cfg
        _check_shape("signal", signal, (B, c.signal_channels, c.bins, None),
                     " (the current signal estimate's representation)")
        Ts = signal.shape[-1]
        signal_lengths = _lengths(signal_lengths, B, Ts, like.device, "signal_lengths")
        mask = valid_mask(signal_lengths, Ts)[:, None, None].to(like.dtype)
        h = signal.to(like.dtype) * mask
        for conv in self.encoder:
            h = _act(conv(h)) * mask
        h = self.feature_proj(h.mean(2).transpose(1, 2)).transpose(1, 2) * mask[:, :, 0]  # [B, D, Ts]
        # average the signal frames that read each logit frame (the U-Net's alignment, inverted)
        idx = logit_frame_index(Ts, c.hop, signal_lengths, frames, c.logit_hop)  # [B, Ts]
        total = h.new_zeros(B, self.n_feat, frames).scatter_add_(2, idx[:, None].expand_as(h), h)
        count = h.new_zeros(B, 1, frames).scatter_add_(2, idx[:, None], mask[:, :, 0])
        return total / count.clamp(min=1) * valid_mask(lengths, frames)[:, None].to(h.dtype)

    def forward(self, y_t: torch.Tensor, t: torch.Tensor, evidence: torch.Tensor, signal: torch.Tensor | None = None,
                center: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
                signal_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Raw network output [B, T, K]; see the class docstring for the arguments."""
        c = self.cfg
        B = y_t.shape[0] if isinstance(y_t, torch.Tensor) and y_t.dim() > 0 else 0
        _check_shape("y_t", y_t, (B, None, c.num_classes), " (frame logits [B, T, K])")
        T = y_t.shape[1]
        _check_shape("evidence", evidence, (B, T, c.num_classes), " (the recogniser's frame logits, as y_t)")
        if center is not None:
            _check_shape("center", center, (B, T, c.num_classes), " (the chain's centre, as y_t)")
        lengths = _lengths(lengths, B, T, y_t.device)
        dtype = self.inp.weight.dtype
        mask = valid_mask(lengths, T)[:, None].to(dtype)  # [B, 1, T]
        parts = [y_t, evidence]
        if c.use_center:
            parts.append(evidence if center is None else center)
        x = torch.cat([p.to(dtype) for p in parts], dim=2).transpose(1, 2)  # [B, n, T]
        x = torch.cat([x, self.features(signal, T, lengths, signal_lengths, x)], dim=1) * mask
        emb = self.time_mlp(timestep_embedding(item_times(t, B, y_t.device), c.time_dim, c.time_scale).to(dtype))
        h = self.inp(x) * mask
        for block in self.blocks:
            h = block(h, emb, mask)
        out = self.out(_act(self.norm_out(h.transpose(1, 2))))
        return out * mask.transpose(1, 2)
