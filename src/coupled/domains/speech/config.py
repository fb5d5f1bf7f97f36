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
# free-form sections, checked by their consumers: CorpusConfig and the degradation registry
FREE_FORM = ("corpus", "degradations", "levels")


def make_speech_config(user: dict | None = None) -> dict:
    """SPEECH_DEFAULTS deep-merged with `user`; unknown keys and unknown degradations are one-line errors."""
    from .corpus import CorpusConfig
    from .degrade import DEGRADATIONS

    from ...config import _merge

    user = user or {}
    # a free-form section enters the shared merge as a leaf (taken whole), then gets its default back
    cfg = _merge({k: (None if k in FREE_FORM else v) for k, v in SPEECH_DEFAULTS.items()}, user, "")
    for k in FREE_FORM:
        cfg[k] = copy.deepcopy(user[k] if k in user else SPEECH_DEFAULTS[k])
        if not isinstance(cfg[k], dict):
            raise CoupledError(f"config key '{k}' must be a mapping, got {type(cfg[k]).__name__}")
    if set(cfg["data"]) - {"root"}:
        raise CoupledError(f"unknown config key(s) data.{', data.'.join(sorted(set(cfg['data']) - {'root'}))}; "
                           "valid keys there: root")
    if cfg["domain"] != "speech":
        raise CoupledError(f"a speech config needs domain: speech, got {cfg['domain']!r}")
    for name in list(cfg["degradations"]) + list(cfg["levels"]):
        DEGRADATIONS[name]  # raises, naming the valid degradations
    CorpusConfig.from_dict(cfg["corpus"])  # raises on unknown corpus options
    return cfg
