"""Degradations of 16 kHz speech: additive white, pink and babble noise at an SNR measured against active
speech, reverberation from a cached bank of simulated rooms (each labelled by its *measured* RT60), and both.

Every degradation is a function `(speech, level, generator, context) -> degraded` of a float32 waveform,
deterministic for its numpy generator. They live in one registry (`DEGRADATIONS`), which refuses a second
entry under a taken name and names the valid ones when asked for an unknown one.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ...atomic import atomic_write
from ...errors import CoupledError
from ..registry import Registry
from .audio import SAMPLE_RATE

ACTIVE_FRAME = 320  # 20 ms
ACTIVE_RANGE_DB = 40.0  # frames within this much of the loudest frame count as active speech


def active_power(x: np.ndarray) -> float:
    """Mean power of a waveform over its active frames (20 ms frames within 40 dB of the loudest one).

    A simple stand-in for ITU-T P.56's active speech level: silence between and around words does not
    dilute the speech level, so an SNR means the same for a one-word and a seven-digit utterance.
    """
    x = np.asarray(x, dtype=np.float64)
    n = max(len(x) // ACTIVE_FRAME, 1)
    frames = np.resize(x, n * ACTIVE_FRAME).reshape(n, -1) if len(x) >= ACTIVE_FRAME else x[None]
    energy = (frames ** 2).mean(axis=1)
    if energy.max() <= 0:
        raise CoupledError("cannot measure the speech level of an all-zero waveform; pass a recording with speech in it")
    active = energy >= energy.max() * 10 ** (-ACTIVE_RANGE_DB / 10)
    return float(energy[active].mean())


def snr_db(speech: np.ndarray, noise: np.ndarray) -> float:
    """SNR in dB of `noise` against the active level of `speech`."""
    return 10 * np.log10(active_power(speech) / np.mean(np.asarray(noise, np.float64) ** 2))


def scale_noise(speech: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    """`noise` scaled so that snr_db(speech, result) == snr exactly."""
    p_noise = np.mean(np.asarray(noise, np.float64) ** 2)
    return (noise * np.sqrt(active_power(speech) / (p_noise * 10 ** (snr / 10)))).astype(np.float32)


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped by 1/sqrt(f) in the frequency domain (flat below 20 Hz)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spec /= np.sqrt(np.maximum(f, 20.0))
    return np.fft.irfft(spec, n).astype(np.float32)


def babble_noise(n: int, rng: np.random.Generator, pool: list[np.ndarray], talkers: int = 6) -> np.ndarray:
    """Babble: `talkers` utterances of other speakers, each at equal active level, looped and summed."""
    if not pool:
        raise CoupledError("babble noise needs a pool of other speakers' utterances; pass context={'babble': [...]}")
    out = np.zeros(n, np.float64)
    for i in rng.choice(len(pool), size=talkers, replace=len(pool) < talkers):
        w = np.asarray(pool[i], np.float64)
        w = w / np.sqrt(active_power(w))
        start = int(rng.integers(0, len(w)))
        out += np.resize(np.roll(w, -start), n)
    return out.astype(np.float32)


# ---- rooms ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Room:
    """A simulated impulse response at 16 kHz, direct path at sample `direct`, with its measured RT60."""

    rir: np.ndarray
    rt60_target: float
    rt60: float  # measured by Schroeder backward integration: the label
    direct: int


def schroeder_rt60(rir: np.ndarray, rate: int = SAMPLE_RATE, fit_db: tuple = (-5.0, -25.0)) -> float:
    """RT60 measured on an impulse response: a line fitted to the Schroeder energy decay curve between
    -5 and -25 dB (T20), extrapolated to 60 dB."""
    e = np.cumsum((np.asarray(rir, np.float64) ** 2)[::-1])[::-1]
    edc = 10 * np.log10(e / e[0] + 1e-300)
    hi, lo = fit_db
    idx = np.flatnonzero((edc <= hi) & (edc >= lo))
    if len(idx) < 2:
        raise CoupledError("impulse response too short to measure its RT60 (its decay never reaches -25 dB)")
    t = idx / rate
    slope = np.polyfit(t, edc[idx], 1)[0]
    return float(-60.0 / slope)


def simulate_room(rt60: float, rng: np.random.Generator, rate: int = SAMPLE_RATE, drr_db: tuple = (-6.0, 4.0)) -> Room:
    """A room impulse response: a direct path, sparse early reflections over the first 50 ms, then a diffuse
    tail of exponentially decaying Gaussian noise whose decay rate gives the requested RT60, low-passed with
    a damping that grows with time (high frequencies die first); the reverberant part is scaled to a
    direct-to-reverberant ratio drawn from `drr_db`. Its RT60 is then measured (Schroeder), and that
    measurement, not the request, is the room's label."""
    from scipy.signal import lfilter

    n = int(rate * min(1.5 * rt60 + 0.1, 3.0))
    direct = int(rate * rng.uniform(0.002, 0.006))
    t = np.arange(n) / rate
    # 60 dB of energy decay = amplitude factor 10**-3 over rt60; 1.2x longer because the damping below
    # shortens the broadband decay (the label is measured afterwards either way)
    decay = np.exp(-6.9078 * t / (1.2 * rt60))
    late = rng.standard_normal(n) * decay
    late[: direct + int(0.005 * rate)] = 0
    k = int(rng.integers(6, 14))
    pos = direct + (rng.uniform(0.002, 0.05, k) * rate).astype(int)
    late[pos] += rng.uniform(-1, 1, k) * decay[pos] * 8  # early reflections stand out of the diffuse tail
    damped = np.zeros_like(late)
    seg = int(0.05 * rate)
    for s in range(0, n, seg):  # a one-pole low-pass per 50 ms segment, its cutoff falling with time
        a = min(0.2 + 0.6 * (s / rate) / rt60, 0.9)
        damped[s: s + seg] = lfilter([1 - a], [1, -a], late[s: s + seg])
    drr = rng.uniform(*drr_db)
    damped *= np.sqrt(10 ** (-drr / 10) / np.sum(damped ** 2))
    damped[direct] = 1.0
    damped = np.clip(damped, -0.99, 0.99)  # no reflection louder than the direct path
    damped[direct] = 1.0
    rir = damped.astype(np.float32)  # measured as stored
    return Room(rir, float(rt60), schroeder_rt60(rir, rate), direct)


ROOM_BANK_VERSION = "coupled-speech-rooms/1"


def room_bank(rt60s=(0.4, 0.7, 1.0, 1.5), per_rt60: int = 4, seed: int = 0, cache: str | os.PathLike | None = None,
              ) -> list[Room]:
    """A bank of simulated rooms, `per_rt60` for each requested RT60, cached as one .npz with a JSON sidecar.

    Args:
        rt60s: requested reverberation times in seconds (each room's label is its measured RT60).
        per_rt60: rooms per requested RT60.
        seed: draws every room.
        cache: folder for the bank (default: $COUPLED_CACHE or ~/.cache/coupled-diffusion, under speech/rooms).
    """
    key = json.dumps([ROOM_BANK_VERSION, [float(r) for r in rt60s], per_rt60, seed])
    base = Path(cache) if cache is not None else Path(os.environ.get(
        "COUPLED_CACHE", Path.home() / ".cache" / "coupled-diffusion")) / "speech" / "rooms"
    path = base / f"rooms_{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return [Room(z[f"rir{i}"], m["rt60_target"], m["rt60"], m["direct"]) for i, m in enumerate(meta)]
    rooms = []
    for i, rt in enumerate(rt60s):
        for j in range(per_rt60):
            rooms.append(simulate_room(float(rt), np.random.default_rng([seed, i, j])))
    meta = [{"rt60_target": r.rt60_target, "rt60": r.rt60, "direct": r.direct} for r in rooms]

    def write(tmp):
        with open(tmp, "wb") as fh:  # a file, not a name: np.savez would append ".npz" to it
            np.savez(fh, meta=np.array(json.dumps(meta)), **{f"rir{i}": r.rir for i, r in enumerate(rooms)})

    atomic_write(path, write)
    return rooms


def reverberate(speech: np.ndarray, room: Room) -> np.ndarray:
    """Convolve with the room, aligned so the direct path lands where the dry speech is (same length)."""
    from scipy.signal import fftconvolve

    y = fftconvolve(np.asarray(speech, np.float64), room.rir.astype(np.float64))[room.direct: room.direct + len(speech)]
    return y.astype(np.float32)


# ---- the registry --------------------------------------------------------------------------------------------

Degradation = Callable[..., np.ndarray]


DEGRADATIONS = Registry("speech degradation")


def _noise(kind):
    def add_noise(speech, snr, rng, context=None):
        """Additive noise at `snr` dB against the speech's active level."""
        n = len(speech)
        noise = {"white": lambda: white_noise(n, rng), "pink": lambda: pink_noise(n, rng),
                 "babble": lambda: babble_noise(n, rng, (context or {}).get("babble", []),
                                                   (context or {}).get("talkers", 6))}[kind]()
        return (speech + scale_noise(speech, noise, snr)).astype(np.float32)

    return add_noise


for _kind in ("white", "pink", "babble"):
    DEGRADATIONS.register(f"{_kind}_noise", _noise(_kind))


@DEGRADATIONS.register("reverb")
def _reverb(speech, room: Room, rng=None, context=None):
    """Reverberation by `room` (level: a Room from room_bank)."""
    return reverberate(speech, room)


@DEGRADATIONS.register("reverb_noise")
def _reverb_noise(speech, level, rng, context=None):
    """Reverberation then white noise; level = (room, snr), the SNR against the dry speech's active level."""
    room, snr = level
    wet = reverberate(speech, room)
    return (wet + scale_noise(speech, white_noise(len(speech), rng), snr)).astype(np.float32)


def degrade(name: str, speech: np.ndarray, level, seed, context: dict | None = None) -> np.ndarray:
    """Apply one registered degradation with a generator seeded by `seed` (an int or a sequence of ints)."""
    return DEGRADATIONS[name](np.asarray(speech, np.float32), level, np.random.default_rng(seed), context)
