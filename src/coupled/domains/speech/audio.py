"""Audio checks and file I/O for the speech domain: 16 kHz mono float32 in [-1, 1].

`check_audio` is the one gate every user-supplied waveform passes: a bad one is a one-line CoupledError
naming the problem and the fix (wrong sample rate, stereo, empty, all-zero, NaN, clipped).
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np

from ...errors import CoupledError

SAMPLE_RATE = 16000
CLIP_LEVEL = 0.999  # a sample at or above this magnitude counts as clipped
MAX_CLIPPED_FRACTION = 0.001


def resample(x: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling of a 1-D signal from `rate` to `target` Hz."""
    from scipy.signal import resample_poly

    if rate == target:
        return np.asarray(x, dtype=np.float32)
    g = gcd(int(rate), int(target))
    return resample_poly(np.asarray(x, dtype=np.float64), target // g, rate // g).astype(np.float32)


def check_audio(x, rate: int = SAMPLE_RATE, name: str = "audio", resample_to: int | None = None,
                allow_clipped: bool = False) -> np.ndarray:
    """Validate one waveform and return it as float32 mono.

    Args:
        x: samples, shape [N] (a [N, 1] or [1, N] array is accepted as mono).
        rate: its sample rate in Hz.
        name: how to call it in an error message (e.g. the file name).
        resample_to: if given, a waveform at another rate is resampled to it instead of refused.
        allow_clipped: take clipped audio as it is (float samples beyond full scale are limited to [-1, 1])
            instead of refusing it.
    """
    x = np.asarray(x)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise CoupledError(f"{name} has shape {tuple(x.shape)}, i.e. {min(x.shape)} channels; speech must be mono: "
                           "average the channels (x.mean(axis=1)) or pick one")
    if x.size == 0:
        raise CoupledError(f"{name} is empty (0 samples); pass a recording with speech in it")
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise CoupledError(f"{name} contains NaN or infinite samples; fix the recording or replace them (np.nan_to_num)")
    if not np.any(x):
        raise CoupledError(f"{name} is all zeros (digital silence); pass a recording with speech in it")
    if rate != SAMPLE_RATE:
        if resample_to is None:
            raise CoupledError(f"{name} is sampled at {rate} Hz, the speech domain needs {SAMPLE_RATE} Hz; resample it "
                               f"(coupled.domains.speech.audio.resample(x, {rate}))")
        x = resample(x, rate, resample_to)
    clipped = float(np.mean(np.abs(x) >= CLIP_LEVEL))
    if allow_clipped:
        return np.clip(x, -1.0, 1.0)
    if clipped > MAX_CLIPPED_FRACTION or np.abs(x).max() > 1.0:
        raise CoupledError(f"{name} is clipped ({100 * clipped:.2f}% of samples at full scale, peak "
                           f"{np.abs(x).max():.2f}); record at a lower gain, scale it into [-1, 1] if it is float audio, "
                           "or pass --allow-clipped to take it as it is")
    return x


def read_audio(path, resample_to: int | None = SAMPLE_RATE, allow_clipped: bool = False) -> np.ndarray:
    """Read a WAV (or, with `soundfile` installed, FLAC/OGG) file as checked 16 kHz mono float32."""
    path = Path(path)
    if not path.is_file():
        raise CoupledError(f"no such audio file: {path}")
    if path.suffix.lower() == ".wav":
        from scipy.io import wavfile

        try:
            rate, x = wavfile.read(path)
        except (ValueError, OSError) as e:
            raise CoupledError(f"cannot read {path} as WAV ({e}); convert it to 16-bit PCM WAV") from None
    else:
        try:
            import soundfile
        except ImportError:
            raise CoupledError(f"reading {path.suffix} files needs soundfile: pip install soundfile "
                               "(or convert the file to WAV)") from None
        x, rate = soundfile.read(str(path), dtype="float32")
    return check_audio(x, rate, name=str(path), resample_to=resample_to, allow_clipped=allow_clipped)


def write_wav(path, x: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write float samples in [-1, 1] as 16-bit PCM WAV (values beyond full scale are limited)."""
    from scipy.io import wavfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.round(np.clip(np.asarray(x, dtype=np.float64), -1.0, 32767 / 32768) * 32768).astype(np.int16)
    wavfile.write(path, rate, pcm)
