"""A thin ctypes binding to eSpeak NG (the library and voices shipped by the PyPI package `espeakng-loader`).

Only what the corpus needs: synchronous synthesis of one utterance into a numpy array at 22,050 Hz, with a
voice (accent + variant), a rate in words per minute and a pitch. One process-wide engine, initialised lazily.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from ...errors import CoupledError

ESPEAK_RATE = 22050
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
INSTALL_HINT = "pip install espeakng-loader (a dependency of coupled-diffusion: reinstall it with pip install -e .)"

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Engine:
    def __init__(self):
        try:
            import espeakng_loader
        except ImportError:
            raise CoupledError(f"the speech corpus needs the eSpeak NG synthesiser; install it with: {INSTALL_HINT}") from None
        try:
            self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data = espeakng_loader.get_data_path()
        except (OSError, RuntimeError) as e:
            raise CoupledError(f"cannot load eSpeak NG ({e}); reinstall it with: {INSTALL_HINT}") from None
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                          ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), 0)
        if rate != ESPEAK_RATE:
            raise CoupledError(f"eSpeak NG failed to initialise (returned {rate}); reinstall it with: {INSTALL_HINT}")
        self.chunks: list[np.ndarray] = []
        # eSpeak seeds the C library's rand() from the clock when it initialises, and voices with breath or
        # Klatt noise draw from it: reseeding before every utterance makes the output a function of the seed
        self.libc = ctypes.CDLL(None)
        self.libc.srand.argtypes = [ctypes.c_uint]
        if hasattr(self.lib, "espeak_ng_SetRandSeed"):
            self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]

        def collect(wav, n, events):
            if n > 0 and wav:
                self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = _CALLBACK(collect)  # kept referenced: the C side holds a raw pointer to it
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lock = threading.Lock()

    def synth(self, text: str, voice: str, rate: int, pitch: int, seed: int) -> np.ndarray:
        with self.lock:
            self.libc.srand(seed & 0xFFFFFFFF)
            if hasattr(self.lib, "espeak_ng_SetRandSeed"):
                self.lib.espeak_ng_SetRandSeed(seed & 0x7FFFFFFF)
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise CoupledError(f"eSpeak NG has no voice '{voice}'; use an accent such as 'en-us' with a variant like '+m3'")
            self.lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            self.lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            self.lib.espeak_SetParameter(_PARAM_VOLUME, 100, 0)
            self.chunks = []
            raw = text.encode() + b"\0"
            err = self.lib.espeak_Synth(raw, len(raw), 0, 0, 0, _CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            if err != 0:
                raise CoupledError(f"eSpeak NG failed to synthesise {text!r} (error {err})")
            if not self.chunks:
                return np.zeros(0, dtype=np.float32)
            return np.concatenate(self.chunks).astype(np.float32) / 32768.0


_ENGINE: _Engine | None = None


def synthesise(text: str, voice: str, rate: int = 175, pitch: int = 50, seed: int = 0) -> np.ndarray:
    """Speak `text` with eSpeak NG; returns float32 samples at ESPEAK_RATE (22,050 Hz).

    Args:
        text: what to say.
        voice: an eSpeak voice name, accent plus optional variant, e.g. "en-us+m3".
        rate: speaking rate in words per minute (80-450).
        pitch: base pitch, 0-99.
        seed: seeds the noise sources of voices that have them.

    eSpeak keeps state between utterances (its output for a sentence depends on what it said before in
    the same process); `corpus.build_corpus` therefore gives every speaker a fresh process.
    """
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Engine()
    return _ENGINE.synth(text, voice, rate, pitch, seed)
