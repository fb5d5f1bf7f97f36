"""What the speech signal chain diffuses: two representations of a 16 kHz waveform, both invertible to audio.

Each is a frozen config (JSON through to_dict / from_dict) with
  `analyse(wave [B, N], lengths [B]) -> (rep [B, C, F, T], frame_lengths [B])` and
  `synthesise(rep, lengths, reference=None) -> wave [B, max(lengths)]`,
where frame i is centred on sample i * hop, an utterance of n samples has n // hop + 1 frames, and frames
past an item's `frame_lengths` are 0 (a padded batch gives each item what it gets alone). Both are real
tensors (the engine's float64 arithmetic would drop the imaginary part of a complex one).

**Values are not clipped to [-1, 1]**, unlike the image domain's signals: a compressed STFT and a log-mel are
unbounded, so the signal denoiser's estimate must not be clipped (`Denoiser(clip=None)`).

* `CompressedSTFT` (the paper's, SGMSE+'s): complex STFT (n_fft 510, hop 128 = 8 ms, periodic Hann, 256
  bins), magnitude compressed to |X|^alpha (alpha 0.5) times beta, phase kept; [B, 2, 256, T] with the real
  and imaginary parts as channels. Value scale: SGMSE+'s beta 0.15 gives this corpus (peak 0.9, unnormalised
  `torch.stft`) a standard deviation of 0.081 on clean speech, so the default beta is 1.8 (12 x 0.15):
  clean std 0.98, with white noise at 10 dB 1.34, at 0 dB 1.97, peaks near 17 (real and imaginary parts
  over the valid frames of 400 training utterances, 362 s, silence included: `python -m
  coupled.domains.speech.measure`). No per-utterance normalisation: the audio's level is kept, so
  `synthesise(analyse(d))` is `d` to float precision.
* `LogMel` (cheaper, 64 x T at 10 ms instead of 256 x T at 8 ms): the frozen recogniser's own features,
  log(mel energy + 1e-3) of RMS-normalised audio (`frontend.log_mel`), mapped by the recogniser's own fixed
  affine (log(floor) / 2 -> 0, log(floor) -> -1: digital silence is -1), so `recogniser.forward_features(
  rep.log_mel(x))` reads an estimate without resynthesis. Same measurement: clean mean -0.21, std 0.87;
  white noise at 10 dB 0.50, 0.47; at 0 dB 0.83, 0.34; values within [-1, 2.7]. A mel spectrogram has no
  phase: audio comes back by applying the per-band amplitude gain sqrt(P_estimate / P_noisy) (clamped to
  [0, max_gain]) to the noisy input's STFT (n_fft 400, hop 160, the recogniser's grid), spread over the
  bins by the transpose-normalised filterbank (`frontend.mel_to_linear`), so `synthesise` needs the noisy
  waveform (`reference=`). Since both mels are RMS-normalised, the result is the estimate at the noisy
  input's loudness, not the clean speech's: the recogniser and SI-SDR do not see the difference, observation
  adding (x_hat + a (d - x_hat)) does. A band's gain is only as precise as its float32 log: far below the
  floor (energy under 1e-4 x floor, about 70 dB under the utterance's power) it carries round-off of 1% or
  more, where it cannot be heard.

`RecogniserOnRepresentation(recogniser, representation)` is the frozen recogniser as the engine's classifier
of representations: `forward(x [B, C, F, T], lengths=frames)` and `output_lengths(frames)`, the contract of
`engine.FrozenClassifier` for padded batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import CoupledError
from .audio import SAMPLE_RATE
from .corpus import JSONConfig
from .frontend import (centred_istft, centred_stft, frame_count, full_lengths, mel_filterbank, mel_power,
                       mel_to_linear, rms_normalise, valid_mask)
from .recogniser import CTCRecogniser

__all__ = ["CompressedSTFT", "LogMel", "REPRESENTATIONS", "RecogniserOnRepresentation", "representation_from_dict",
           "representation_to_dict"]


def _wave(wave, lengths, name: str = "wave") -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(wave, torch.Tensor) or wave.dim() != 2:
        shape = list(wave.shape) if isinstance(wave, torch.Tensor) else type(wave).__name__
        raise CoupledError(f"{name} must be a float tensor [B, N] of 16 kHz samples, got {shape}; "
                           "stack waveforms with coupled.domains.speech.recogniser.collate")
    lengths = full_lengths(wave, lengths)
    if lengths.shape != (wave.shape[0],) or int(lengths.min()) < 1 or int(lengths.max()) > wave.shape[-1]:
        raise CoupledError(f"lengths must be [B] = [{wave.shape[0]}] sample counts in 1..{wave.shape[-1]}, "
                           f"got {lengths.tolist()}")
    return wave * valid_mask(lengths, wave.shape[-1]).to(wave.dtype), lengths


def _check_rep(rep, channels: int, bins: int, what: str) -> None:
    if not isinstance(rep, torch.Tensor) or rep.dim() != 4 or tuple(rep.shape[1:3]) != (channels, bins):
        shape = list(rep.shape) if isinstance(rep, torch.Tensor) else type(rep).__name__
        raise CoupledError(f"a {what} must have shape [B, {channels}, {bins}, T], got {shape}; make it with analyse()")
    if rep.is_complex():
        raise CoupledError(f"a {what} must be real (real and imaginary parts as channels), got a complex tensor")


@dataclass(frozen=True)
class CompressedSTFT(JSONConfig):
    """SGMSE+'s compressed complex STFT as a real tensor [B, 2, n_fft // 2 + 1, T] (see the module docstring).

    Args:
        n_fft, hop: STFT size and hop in samples (510 and 128 at 16 kHz: 256 bins, 8 ms frames), periodic Hann.
        alpha: magnitude exponent (|X|^alpha, phase kept); beta: the scale (1.8: unit variance on this corpus).
    """

    what = "compressed STFT option"

    n_fft: int = 510
    hop: int = 128
    alpha: float = 0.5
    beta: float = 1.8
    sample_rate: int = SAMPLE_RATE

    kind = "stft"
    channels = 2

    def __post_init__(self):
        if self.n_fft < 2 * self.hop or self.hop < 1:
            raise CoupledError(f"compressed STFT: n_fft {self.n_fft} must be at least twice the hop {self.hop}")
        if not (0 < self.alpha <= 1 and self.beta > 0):
            raise CoupledError(f"compressed STFT: alpha must be in (0, 1] and beta > 0, got {self.alpha}, {self.beta}")

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def frames(self, n_samples):
        """Frames of an utterance of n_samples (int or tensor): n_samples // hop + 1."""
        return frame_count(n_samples, self.hop)

    def _window(self, like: torch.Tensor) -> torch.Tensor:
        return torch.hann_window(self.n_fft, periodic=True, dtype=like.dtype, device=like.device)

    def analyse(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Compressed STFT [B, 2, bins, T] of waveforms [B, N] (valid samples `lengths` [B], default all) and
        the valid frames [B]; frames past them are 0."""
        wave, lengths = _wave(wave, lengths)
        spec = centred_stft(wave, self.n_fft, self.hop, self._window(wave))
        mag = spec.abs()
        # beta |X|^alpha e^{i phase} = X beta |X|^(alpha - 1); a zero bin stays zero
        gain = self.beta * torch.where(mag > 0, mag, torch.ones_like(mag)) ** (self.alpha - 1)
        spec = spec * gain
        frames = self.frames(lengths)
        rep = torch.stack([spec.real, spec.imag], dim=1)
        return rep * valid_mask(frames, rep.shape[-1])[:, None, None].to(rep.dtype), frames

    def _linear(self, rep: torch.Tensor) -> torch.Tensor:
        """The complex STFT X [B, bins, T] of a compressed one: |X| = (|Y| / beta)^(1 / alpha), phase kept."""
        spec = torch.complex(rep[:, 0], rep[:, 1])
        mag = spec.abs()
        return spec * (torch.where(mag > 0, mag, torch.ones_like(mag)) ** (1 / self.alpha - 1) * self.beta ** (-1 / self.alpha))

    def mix(self, x: torch.Tensor, d: torch.Tensor, a: float) -> torch.Tensor:
        """Observation adding: the compressed STFT of x + a (d - x) for compressed STFTs `x`, `d` [B, 2, bins, T],
        mixed as the waveforms mix (the STFT is linear: decompressed, mixed, compressed again)."""
        spec = self._linear(x) + a * (self._linear(d) - self._linear(x))
        mag = spec.abs()
        spec = spec * self.beta * torch.where(mag > 0, mag, torch.ones_like(mag)) ** (self.alpha - 1)
        return torch.stack([spec.real, spec.imag], dim=1)

    def synthesise(self, rep: torch.Tensor, lengths, reference: torch.Tensor | None = None) -> torch.Tensor:
        """Waveforms [B, max(lengths)] from a compressed STFT [B, 2, bins, T]; `lengths` [B] in samples.

        `reference` is accepted for a common signature with `LogMel` and ignored (the phase is in `rep`).
        """
        _check_rep(rep, 2, self.bins, "compressed STFT")
        lengths = torch.as_tensor(lengths, device=rep.device).long().reshape(-1)
        if lengths.shape[0] != rep.shape[0] or int(self.frames(lengths).max()) > rep.shape[-1]:
            raise CoupledError(f"lengths {lengths.tolist()} do not fit a compressed STFT of {rep.shape[-1]} frames "
                               f"(n samples need n // {self.hop} + 1 frames); pass the lengths given to analyse()")
        return centred_istft(self._linear(rep), self.n_fft, self.hop, self._window(rep), lengths)


@dataclass(frozen=True)
class LogMel(JSONConfig):
    """The recogniser's log-mel features as a representation [B, 1, n_mels, T] (see the module docstring).

    Args:
        n_mels, n_fft, hop, mel_floor, sample_rate: the recogniser's front end (`RecogniserConfig`'s fields of
            the same names; `LogMel.for_recogniser(cfg)` copies them).
        max_gain: the largest amplitude gain `synthesise` applies to a noisy STFT bin (10 = +20 dB): bands the
            estimate fills where the noisy input is near silent are not amplified without bound.
    """

    what = "log-mel representation option"

    n_mels: int = 64
    n_fft: int = 400
    hop: int = 160
    mel_floor: float = 1e-3
    sample_rate: int = SAMPLE_RATE
    max_gain: float = 10.0

    kind = "mel"
    channels = 1

    def __post_init__(self):
        if not (0 < self.mel_floor < 1 and self.max_gain > 0):
            raise CoupledError(f"log-mel: mel_floor must be in (0, 1) and max_gain > 0, got {self.mel_floor}, "
                               f"{self.max_gain}")

    @classmethod
    def for_recogniser(cls, cfg, **options) -> "LogMel":
        """The representation that is exactly recogniser `cfg`'s (a RecogniserConfig) front end."""
        return cls(n_mels=cfg.n_mels, n_fft=cfg.n_fft, hop=cfg.hop, mel_floor=cfg.mel_floor,
                   sample_rate=cfg.sample_rate, **options)

    @property
    def bins(self) -> int:
        return self.n_mels

    @property
    def _offset(self) -> float:
        return math.log(self.mel_floor) / 2

    def frames(self, n_samples):
        """Frames of an utterance of n_samples (int or tensor): n_samples // hop + 1."""
        return frame_count(n_samples, self.hop)

    def _window(self, like: torch.Tensor) -> torch.Tensor:
        return torch.hann_window(self.n_fft, dtype=like.dtype, device=like.device)

    def _fb(self, like: torch.Tensor) -> torch.Tensor:
        return mel_filterbank(self.n_mels, self.n_fft, self.sample_rate).to(like.device, like.dtype)

    def mel_power(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mel energies [B, n_mels, T] of the RMS-normalised waveforms [B, N], valid frames [B]): what the
        representation takes the log of, computed as `frontend.log_mel` does (the same operations)."""
        wave, lengths = _wave(wave, lengths)
        normalised, _ = rms_normalise(wave, lengths)
        spec = centred_stft(normalised, self.n_fft, self.hop, self._window(wave))
        return mel_power(spec, self._fb(wave), self.n_fft), self.frames(lengths)

    def from_power(self, power: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """The representation [B, 1, n_mels, T] of mel energies [B, n_mels, T] (valid frames [B]; later ones 0)."""
        rep = (torch.log(power + self.mel_floor) - self._offset) / -self._offset
        return (rep * valid_mask(frames, rep.shape[-1])[:, None].to(rep.dtype))[:, None]

    def mix(self, x: torch.Tensor, d: torch.Tensor, a: float) -> torch.Tensor:
        """Observation adding on log-mel representations [B, 1, n_mels, T]: the mel energies mixed,
        (1 - a) P(x) + a P(d) (the waveforms' mix without its cross terms: a log-mel keeps no phase); the engine
        zeroes the frames past each item's end."""
        def power(r):
            return (torch.exp(self.log_mel(r)) - self.mel_floor).clamp_min(0)

        return self.from_power(power(x) + a * (power(d) - power(x)), torch.full((x.shape[0],), x.shape[-1]))

    def log_mel(self, rep: torch.Tensor) -> torch.Tensor:
        """log(mel energy + mel_floor) [B, n_mels, T] of a representation: the recogniser's `forward_features` input."""
        _check_rep(rep, 1, self.n_mels, "log-mel representation")
        return rep[:, 0] * -self._offset + self._offset

    def analyse(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel representation [B, 1, n_mels, T] of waveforms [B, N] (valid samples `lengths`, default all)
        and the valid frames [B]; frames past them are 0."""
        power, frames = self.mel_power(wave, lengths)
        return self.from_power(power, frames), frames

    def synthesise(self, rep: torch.Tensor, lengths, reference: torch.Tensor | None = None) -> torch.Tensor:
        """Audio [B, max(lengths)] for a mel estimate `rep` [B, 1, n_mels, T]: the noisy `reference` [B, N]
        (the degraded waveform the estimate was made from; `lengths` [B] its valid samples) with each STFT bin
        scaled by the estimate-to-noisy amplitude gain of its mel bands."""
        _check_rep(rep, 1, self.n_mels, "log-mel representation")
        if reference is None:
            raise CoupledError("a log-mel estimate has no phase: pass reference= the degraded waveform it was made "
                               "from, whose STFT synthesise() rescales")
        lengths = torch.as_tensor(lengths, device=rep.device).long().reshape(-1)
        power, frames = self.mel_power(reference, lengths)
        reference, lengths = _wave(reference, lengths, "reference")
        spec = centred_stft(reference, self.n_fft, self.hop, self._window(reference))
        if rep.shape[0] != power.shape[0] or rep.shape[-1] < int(frames.max()):
            raise CoupledError(f"a log-mel estimate of shape {list(rep.shape)} does not match its reference "
                               f"({power.shape[0]} waveforms of {frames.tolist()} frames); pass the degraded waveform "
                               "and lengths it was analysed from")
        T = power.shape[-1]
        # gain^2 = P_e / P_n with log(P + floor) known for both: 1 + expm1(L_e - L_n) (1 + floor / P_n), in float64
        # so an unchanged estimate gives a gain of exactly 1
        noisy = self.from_power(power, frames)[:, 0].double()
        diff = (rep[:, 0, :, :T].double() - noisy) * -self._offset
        p = power.double().clamp(min=1e-30)
        gain2 = 1 + torch.expm1(diff) * (1 + self.mel_floor / p)
        gain = gain2.clamp(0, self.max_gain ** 2).sqrt()
        weights = mel_to_linear(self._fb(rep)).double()
        bins = torch.einsum("fm,bmt->bft", weights, gain)
        wave = centred_istft(spec * bins.to(spec.real.dtype), self.n_fft, self.hop, self._window(power), lengths)
        return wave.to(reference.dtype)


REPRESENTATIONS = {"stft": CompressedSTFT, "mel": LogMel}


def representation_to_dict(rep) -> dict:
    """{"kind": "stft" | "mel", **fields}: a representation as JSON."""
    return {"kind": rep.kind, **rep.to_dict()}


def representation_from_dict(d: dict):
    """The representation `representation_to_dict` wrote (an unknown kind names the valid ones)."""
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in REPRESENTATIONS:
        raise CoupledError(f"unknown speech representation kind {kind!r}; valid: {', '.join(REPRESENTATIONS)}")
    return REPRESENTATIONS[kind].from_dict(d)


class RecogniserOnRepresentation(nn.Module):
    """The frozen recogniser f reading a representation: what the engine's `FrozenClassifier` wraps when the
    signal chain's signals are representations [B, C, F, T] with valid frames `lengths` [B] (not waveforms).

    `forward(x, lengths=None) -> logits [B, T_l, K]` and `output_lengths(lengths) -> T_l per item` (the
    engine's `FrozenClassifier.frame_lengths` asks for it). A `LogMel` is read directly
    (`recogniser.forward_features(representation.log_mel(x), lengths)`: no resynthesis); a `CompressedSTFT` is
    resynthesised to hop * (T - 1) samples (the shortest waveform with T frames: at most hop - 1 samples, 8 ms,
    of the original end are not heard) and recognised. Either way an item's logits do not depend on its batch.

    Args:
        recogniser: the frozen `CTCRecogniser`; representation: `CompressedSTFT` or `LogMel` (a LogMel must be
            the recogniser's own front end, `LogMel.for_recogniser(recogniser.cfg)`).
    """

    def __init__(self, recogniser: CTCRecogniser, representation):
        super().__init__()
        if isinstance(representation, LogMel):
            own = LogMel.for_recogniser(recogniser.cfg, max_gain=representation.max_gain)
            if representation != own:
                fix = {k: v for k, v in own.to_dict().items() if representation.to_dict().get(k) != v}
                raise CoupledError(f"the log-mel representation differs from the recogniser's front end in "
                                   f"{', '.join(sorted(fix))}; set them in the config's representation as the "
                                   f"recogniser has them: {{kind: mel, " + ", ".join(f"{k}: {v}" for k, v in fix.items())
                                   + "} (in Python: LogMel.for_recogniser(recogniser.cfg))")
        elif not isinstance(representation, CompressedSTFT):
            raise CoupledError(f"unknown speech representation {type(representation).__name__}; valid: "
                               "CompressedSTFT, LogMel")
        self.recogniser, self.representation = recogniser, representation

    def observation_mix(self, x: torch.Tensor, d: torch.Tensor, a: float) -> torch.Tensor:
        """Observation adding for the engine's readout (`_Run.heard`): x + a (d - x) as the representation mixes
        waveforms (`CompressedSTFT.mix`, `LogMel.mix`)."""
        return self.representation.mix(x, d, a)

    def samples(self, lengths: torch.Tensor) -> torch.Tensor:
        """Waveform samples resynthesised for representations of `lengths` frames (hop * (frames - 1))."""
        return self.representation.hop * (lengths - 1)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid logit frames [B] for representations of `lengths` valid frames [B]."""
        lengths = torch.as_tensor(lengths).long()
        t = lengths if isinstance(self.representation, LogMel) else frame_count(self.samples(lengths),
                                                                                 self.recogniser.cfg.hop)
        for _ in range(2):  # the recogniser's two stride-2 subsamplings
            t = (t - 1) // 2 + 1
        return t

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Frame logits [B, T_l, K] of representations `x` [B, C, F, T] (valid frames `lengths`, default all)."""
        rep = self.representation
        _check_rep(x, rep.channels, rep.bins, f"{'log-mel' if rep.kind == 'mel' else 'compressed STFT'} representation")
        lengths = full_lengths(x, lengths)
        if isinstance(rep, LogMel):
            return self.recogniser.forward_features(rep.log_mel(x), lengths)
        n = self.samples(lengths).clamp(min=1)
        return self.recogniser(rep.synthesise(x, n), n)
