"""The speech front end shared by the frozen recogniser and the diffusion representations.

One centred STFT (zero padding of n_fft // 2 on both sides, never reflect padding, so a frame past an
utterance's end looks the same batched or alone; frame i is centred on sample i * hop, and N samples give
N // hop + 1 frames), its exact inverse under padding (overlap-add divided by the window envelope of the
item's own frames), per-utterance RMS normalisation, the HTK mel filterbank and the log-mel features the
recogniser reads.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F


def frame_count(n_samples, hop: int):
    """Frames of the centred STFT of `n_samples` samples (an int or a tensor [B]): n_samples // hop + 1."""
    return n_samples // hop + 1


def valid_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """Bool [B, size]: True at the first lengths[b] positions of item b."""
    return torch.arange(size, device=lengths.device)[None] < lengths[:, None]


def full_lengths(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """`lengths` as a long tensor on x's device, or the full last dimension of `x` for every item when None."""
    if lengths is None:
        return torch.full((x.shape[0],), x.shape[-1], device=x.device, dtype=torch.long)
    return torch.as_tensor(lengths, device=x.device).long()


def mel_filterbank(n_mels: int, n_fft: int, rate: int) -> torch.Tensor:
    """Triangular HTK-mel filters [n_mels, n_fft // 2 + 1] between 20 Hz and rate / 2."""
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    inv = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = inv(np.linspace(mel(20.0), mel(rate / 2), n_mels + 2))
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return torch.tensor(fb, dtype=torch.float32)


def mel_to_linear(fb: torch.Tensor) -> torch.Tensor:
    """Weights [n_fft // 2 + 1, n_mels] that spread a per-band gain over the STFT bins.

    The filterbank transposed and normalised so each bin's weights sum to 1 (a gain of 1 in every band is a
    gain of exactly 1 in every bin); bins no filter covers (below 20 Hz, and Nyquist) take the nearest band.
    """
    w = fb.t().double().clone()
    uncovered = w.sum(1) == 0
    centre = fb.double().argmax(1).double()  # each band's peak bin
    for f in torch.nonzero(uncovered).flatten().tolist():
        w[f, int((centre - f).abs().argmin())] = 1.0
    return (w / w.sum(1, keepdim=True)).to(fb.dtype)


def rms_normalise(wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveforms [B, N] zeroed past `lengths` [B] and divided by their RMS over their own samples; and the RMS [B]."""
    valid = valid_mask(lengths, wave.shape[-1]).to(wave.dtype)
    wave = wave * valid
    rms = ((wave ** 2).sum(-1) / lengths.clamp(min=1)).sqrt().clamp(min=1e-5)
    return wave / rms[:, None], rms


def centred_stft(wave: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """Complex STFT [B, n_fft // 2 + 1, N // hop + 1] of waveforms [B, N], frame i centred on sample i * hop.

    Zero padding (not torch.stft's reflect padding), so frames past an item's end are the same in a padded
    batch as alone. The waveform must already be zero past each item's length.
    """
    wave = F.pad(wave, (n_fft // 2, n_fft // 2))
    return torch.stft(wave, n_fft, hop, window=window, center=False, return_complex=True)


def centred_istft(spec: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor,
                  lengths: torch.Tensor) -> torch.Tensor:
    """The inverse of `centred_stft`: waveforms [B, max(lengths)] from a complex STFT [B, F, T].

    Overlap-add of the windowed inverse FFTs divided by the summed squared window of the item's own frames
    (the first lengths // hop + 1; later frames are ignored), so a padded batch gives each item what it gets
    alone, and analysis then synthesis returns the waveform to float precision. Samples past `lengths` are 0.
    """
    B, _, T = spec.shape
    n = int(lengths.max())
    frames = valid_mask(frame_count(lengths, hop), T).to(window.dtype)[:, None]  # [B, 1, T]
    chunks = torch.fft.irfft(spec, n=n_fft, dim=1) * window[None, :, None] * frames
    total = n_fft + hop * (T - 1)
    fold = lambda x: F.fold(x, (1, total), (1, n_fft), stride=(1, hop))[:, 0, 0]  # noqa: E731
    wave = fold(chunks)
    envelope = fold((window ** 2)[None, :, None] * frames)
    start = n_fft // 2
    wave, envelope = wave[:, start:start + n], envelope[:, start:start + n]
    wave = torch.where(envelope > 1e-8, wave / envelope.clamp(min=1e-8), torch.zeros_like(wave))
    return wave * valid_mask(lengths, n).to(wave.dtype)


def mel_power(spec: torch.Tensor, fb: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Mel band energies [B, n_mels, T] of a complex STFT [B, F, T] (power summed by the filters, over n_fft)."""
    power = spec.real ** 2 + spec.imag ** 2
    return torch.einsum("mf,bft->bmt", fb, power) / n_fft


def log_mel(wave: torch.Tensor, lengths: torch.Tensor, fb: torch.Tensor, window: torch.Tensor, n_fft: int, hop: int,
            floor: float) -> torch.Tensor:
    """The recogniser's features: log(mel energy + floor) [B, n_mels, N // hop + 1] of RMS-normalised audio.

    Args:
        wave: waveforms [B, N]; lengths: valid samples [B] (the RMS is taken over them alone).
        fb: mel filterbank [n_mels, n_fft // 2 + 1]; window: analysis window [n_fft].
        floor: added to the energies before the log (digital silence maps to log(floor)).
    """
    wave, _ = rms_normalise(wave, lengths)
    return torch.log(mel_power(centred_stft(wave, n_fft, hop, window), fb, n_fft) + floor)
