"""Degradations of field ECG, each `(signals [N, 1, L], severity, generator) -> [N, 1, L]`, seeded per item.

The severity of every degradation is the noise-to-signal RMS ratio r of one item: the noise is drawn with its
shape, then scaled so that its RMS over the item is exactly r times the clean item's RMS (about its mean), so
the item's SNR is -20 log10(r) dB (`snr_db` measures it back). A larger severity is a heavier degradation, as
the generic calibration search expects. The noises are not clipped (a degraded trace may leave [-1, 1]; only the
denoiser's estimates are clipped).

- baseline_wander: respiration and movement, a sum of 2-4 sinusoids of 0.05-0.5 Hz with random phases;
- powerline: mains at 50 or 60 Hz (one per item) with its first harmonic (100 / 120 Hz, below Nyquist at 250 Hz)
  at 10-50% of the fundamental, and a slow 5% amplitude modulation;
- emg: muscle noise, white noise band-passed to 20-100 Hz under a slowly varying envelope (bursts of contraction);
- electrode_motion: 1-3 bursty low-frequency transients per 10 s (a step or spike smoothed below ~5 Hz, each
  0.2-1.5 s, decaying), the MIT-BIH "em" record's character;
- mix: the four above with random weights (each normalised to unit RMS first), then scaled as one.
"""

from __future__ import annotations

import math

import torch

from ..registry import Registry
from .synth import RATE

CORRUPTIONS = Registry("ecg degradation")
NAMES = ("baseline_wander", "powerline", "emg", "electrode_motion", "mix")


def _u(g: torch.Generator, lo: float, hi: float, n: int = 1) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def _t(L: int) -> torch.Tensor:
    return torch.arange(L, dtype=torch.float64) / RATE


def _bandpass(noise: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """`noise` [L] with its FFT bins outside [lo, hi] Hz zeroed (a brick-wall filter; deterministic)."""
    L = noise.shape[-1]
    spec = torch.fft.rfft(noise)
    f = torch.fft.rfftfreq(L, 1.0 / RATE, dtype=torch.float64)
    return torch.fft.irfft(spec * ((f >= lo) & (f <= hi)), n=L)


def baseline_wander_shape(L: int, g: torch.Generator) -> torch.Tensor:
    t, out = _t(L), torch.zeros(L, dtype=torch.float64)
    for _ in range(int(torch.randint(2, 5, (1,), generator=g))):
        f, ph, a = _u(g, 0.05, 0.5), _u(g, 0, 2 * math.pi), _u(g, 0.3, 1.0)
        out += a * torch.sin(2 * math.pi * f * t + ph)
    return out


def powerline_shape(L: int, g: torch.Generator) -> torch.Tensor:
    t = _t(L)
    f0 = 50.0 if float(_u(g, 0, 1)) < 0.5 else 60.0
    ph1, ph2, h = _u(g, 0, 2 * math.pi), _u(g, 0, 2 * math.pi), _u(g, 0.1, 0.5)
    am = 1 + 0.05 * torch.sin(2 * math.pi * _u(g, 0.1, 1.0) * t + _u(g, 0, 2 * math.pi))
    return am * (torch.sin(2 * math.pi * f0 * t + ph1) + h * torch.sin(2 * math.pi * 2 * f0 * t + ph2))


def emg_shape(L: int, g: torch.Generator) -> torch.Tensor:
    white = torch.randn(L, generator=g, dtype=torch.float64)
    band = _bandpass(white, 20.0, 100.0)
    env = _bandpass(torch.randn(L, generator=g, dtype=torch.float64), 0.0, 1.0)
    env = 0.3 + (env - env.min()) / (env.max() - env.min() + 1e-12)
    return band * env


def electrode_motion_shape(L: int, g: torch.Generator) -> torch.Tensor:
    t, out = _t(L), torch.zeros(L, dtype=torch.float64)
    for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
        start, dur = _u(g, 0, L / RATE - 0.2), _u(g, 0.2, 1.5)
        amp = _u(g, 0.5, 1.0) * (1.0 if float(_u(g, 0, 1)) < 0.5 else -1.0)
        rel = (t - start) / dur
        burst = torch.where(rel >= 0, torch.exp(-torch.clamp(rel, min=0)) * (rel >= 0), torch.zeros_like(t))
        wobble = _bandpass(torch.randn(L, generator=g, dtype=torch.float64), 0.5, 5.0)
        wobble = wobble / (wobble.abs().max() + 1e-12)
        out += amp * burst * (1 + 0.8 * wobble)
    return _bandpass(out - out.mean(), 0.0, 5.0)


_BASE = {"baseline_wander": baseline_wander_shape, "powerline": powerline_shape, "emg": emg_shape,
          "electrode_motion": electrode_motion_shape}


def _rms(x: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(torch.mean((x - x.mean()) ** 2))


def mix_shape(L: int, g: torch.Generator) -> torch.Tensor:
    w = _u(g, 0.2, 1.0, len(_BASE))
    out = torch.zeros(L, dtype=torch.float64)
    for wi, fn in zip(w, _BASE.values()):
        n = fn(L, g)
        out += wi * n / (_rms(n) + 1e-12)
    return out


SHAPES = {**_BASE, "mix": mix_shape}


def _apply(shape_fn):
    def corrupt(x: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
        out = x.to(torch.float64).clone()
        for i in range(x.shape[0]):  # one item per call from corrupt_items; a batch draws in order
            clean = out[i].reshape(-1)
            n = shape_fn(clean.shape[0], generator)
            n = n / (_rms(n) + 1e-12) * float(severity) * _rms(clean)
            out[i] = (clean + n).reshape(out[i].shape)
        return out.to(x.dtype)

    corrupt.__name__ = shape_fn.__name__.replace("_shape", "")
    corrupt.__doc__ = f"The {corrupt.__name__} degradation at noise-to-signal RMS ratio `severity` (SNR = -20 log10 severity dB)."
    return corrupt


for _name in NAMES:
    CORRUPTIONS.register(_name, _apply(SHAPES[_name]))


def snr_db(degraded: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-item SNR in dB [N] of `degraded` against `clean` [N, ...]: clean power (about its mean) over the power of
    the difference (about its mean)."""
    c = clean.reshape(clean.shape[0], -1).double()
    n = degraded.reshape(degraded.shape[0], -1).double() - c
    c, n = c - c.mean(1, keepdim=True), n - n.mean(1, keepdim=True)
    return 10 * torch.log10((c ** 2).sum(1) / (n ** 2).sum(1).clamp_min(1e-30))


def snr_of_severity(severity: float) -> float:
    """The SNR in dB a degradation at `severity` gives an item."""
    return -20.0 * math.log10(severity)
