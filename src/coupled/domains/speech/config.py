"""The speech experiment config: defaults deep-merged with a user's YAML (`domain: speech`), unknown keys
rejected with the valid ones named, as for the image configs."""

from __future__ import annotations

import copy

from ...errors import CoupledError
from .train import TRAIN_DEFAULTS

SNRS = [-5, 0, 5, 10, 15, 20]

SPEECH_DEFAULTS: dict = {
    "domain": "speech",
    "name": "speech_digits",
    "seed": 0,
    "output": "checkpoints/speech",
    "device": "cpu",
    # the synthetic corpus (CorpusConfig fields; {} = its defaults) and where it is cached (null: ~/.cache)
    "corpus": {},
    "data": {"root": None},
    "recogniser": copy.deepcopy(TRAIN_DEFAULTS),
    # what the evaluation sweeps: additive noise at these SNRs (dB, against active speech), rooms of these
    # requested RT60s (each row reports the rooms' measured RT60), and both together
    "degradations": {
        "white_noise": {"snr": SNRS},
        "pink_noise": {"snr": SNRS},
        "babble_noise": {"snr": SNRS, "talkers": 6},
        "reverb": {"rt60": [0.4, 0.7, 1.0, 1.5]},
        "reverb_noise": {"rt60": [0.7, 1.5], "snr": [0, 10]},
    },
    "rooms": {"per_rt60": 4, "seed": 0},
    # light / medium / heavy per degradation, chosen on the validation split (see docs/speech.md)
    "levels": {},
    "evaluation": {"split": "test", "seed": 0, "max_items": None, "signal_metrics_items": 150, "examples": 3,
                   "bootstrap": 1000, "num_threads": 1, "batch_size": 64},
}
FREE_FORM = {"corpus", "net", "degradations", "levels", "noise_snr", "speakers", "variants"}


def _merge(base: dict, user: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for key, value in user.items():
        if key not in base:
            raise CoupledError(f"unknown config key '{where}{key}'; valid keys there: {', '.join(sorted(base))}")
        if isinstance(base[key], dict) and key not in FREE_FORM:
            if not isinstance(value, dict):
                raise CoupledError(f"config key '{where}{key}' must be a mapping, got {type(value).__name__}")
            out[key] = _merge(base[key], value, f"{where}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def make_speech_config(user: dict | None = None) -> dict:
    """SPEECH_DEFAULTS deep-merged with `user`; unknown keys and unknown degradations are one-line errors."""
    from .corpus import CorpusConfig
    from .degrade import DEGRADATIONS

    cfg = _merge(SPEECH_DEFAULTS, user or {}, "")
    if cfg["domain"] != "speech":
        raise CoupledError(f"a speech config needs domain: speech, got {cfg['domain']!r}")
    for name in list(cfg["degradations"]) + list(cfg["levels"]):
        DEGRADATIONS[name]  # raises, naming the valid degradations
    CorpusConfig.from_dict(cfg["corpus"])  # raises on unknown corpus options
    return cfg
