"""The speech experiment config: its defaults, merged with a user's YAML (`domain: speech`) and checked by the
generic config path (`coupled.config.make_config`: unknown keys rejected with the valid ones named, values
checked against the schema the defaults imply), then by `check_speech_config`."""

from __future__ import annotations

import copy

from ...defaults import DEFAULTS
from ...errors import CoupledError
from .corpus import CorpusConfig
from .degrade import DEGRADATIONS
from .recogniser import RecogniserConfig

# the recogniser's training (train.py): the frozen classifier of this domain
TRAIN_DEFAULTS = {"net": {}, "steps": 3000, "batch_size": 32, "lr": 3e-3, "lr_min": 1e-5, "warmup": 150,
                  "weight_decay": 1e-2, "noise_snr": [30.0, 50.0], "noise_prob": 0.8, "max_shift": 0.2,
                  "speed": [0.9, 1.1], "speed_prob": 0.0, "eval_every": 500, "num_threads": 1, "seed": 0}

SNRS = [-5, 0, 5, 10, 15, 20]

SPEECH_DEFAULTS: dict = {
    "domain": "speech",
    "name": "speech_digits",
    "seed": 0,
    "output": "checkpoints/speech",
    "device": "cpu",
    # the synthetic corpus (CorpusConfig fields; {} = its defaults) and where it is cached (null: ~/.cache);
    # wav_folder: evaluate on a folder of your own WAVs instead of the corpus's split (every file under it, each
    # with its line in `transcripts`, a file in that folder unless absolute; loaders.wav_folder)
    "corpus": {},
    "data": {"root": None, "wav_folder": None, "transcripts": "transcripts.txt"},
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
    # the generic evaluator's keys (seeds: sampling seeds; corruption_seed seeds the degraded items, 0 as part 1
    # published them), one task at a time (digits: WER, keywords: accuracy), and the noisy sweep's own keys
    "evaluation": {"split": "test", "task": "digits", "corruption_seed": 0, "seeds": [0, 1, 2], "heavy_seeds": 3,
                   "other_seeds": 1, "max_items": None, "signal_metrics_items": 150, "examples": 3,
                   "bootstrap": 1000, "num_threads": 1, "batch_size": 64},
}
# the generic pipeline's sections the stages and the evaluator read (classifier, signal, logits, joint, card,
# finetuned, sequential, predictive, train, sampling, demo), with no corruption levels of their own: the speech sweep is
# `degradations`, its calibrated levels `levels`
for _key, _value in DEFAULTS.items():
    if _key not in SPEECH_DEFAULTS:
        SPEECH_DEFAULTS[_key] = copy.deepcopy(_value)
# The coupled diffusion of speech (issue 16) through the generic stages: the chains run on `representation` (a
# CompressedSTFT, or kind: mel with LogMel's fields; recorded in signal.json / logits.json by training, so a bundle
# carries it), the signal chain is SGMSE+'s OU-VE process centred on the degraded spectrogram (the engine's centred
# process, reference values theta 2, sigma 0.1 -> 1, sampled by the predictor-corrector), both nets predict x0, and
# training degrades with white, pink or babble noise at an SNR (dB) or reverb at an RT60 (s) drawn per item. The networks' shape keys (in_channels,
# bins, hop, ...) come from the representation (check_speech_config fills them in); `size` picks the U-Net's widths.
SPEECH_DEFAULTS["representation"] = {"kind": "stft"}
SPEECH_DEFAULTS["classifier"]["net"] = {"num_classes": 22}  # the recogniser's classes (blank + 21 words): the denoisers' K
SPEECH_DEFAULTS["corruptions"]["train_severity"] = {"white_noise": [0.0, 20.0], "pink_noise": [0.0, 20.0],
                                                    "babble_noise": [0.0, 20.0], "reverb": [0.3, 1.5]}
SPEECH_DEFAULTS["signal"].update(net={"size": "small"}, process={"kind": "centred"}, prediction="x0", batch_size=16)
SPEECH_DEFAULTS["logits"].update(batch_size=16)
SPEECH_DEFAULTS["card"].update(batch_size=16)
SPEECH_DEFAULTS["joint"].update(batch_size=16)
SPEECH_DEFAULTS["sequential"].update(batch_size=16)
SPEECH_DEFAULTS["predictive"].update(batch_size=16)
# Both chains run DDIM on the centred process (deterministic, ending on its estimate): on validation it beat SGMSE+'s
# predictor-corrector for almost every method at the few steps this CPU budget allows, where pc ends on noise
# (docs/results/speech_val.json against speech_val_pc.json; docs/speech.md)
SPEECH_DEFAULTS["sampling"]["signal"] = {"steps": 5, "sampler": "ddim", "eta": 0.0}
SPEECH_DEFAULTS["sampling"]["logits"] = {"steps": 5, "sampler": "ddim", "eta": 0.0}

# free-form sections (taken whole from the user), checked by check_speech_config and their consumers
FREE_FORM = ("corpus", "degradations", "levels", "net", "representation")

# the network-config keys the representation fixes, per config section: (network key, representation attribute)
_SHAPE_KEYS = {"signal": (("in_channels", "channels"), ("bins", "bins"), ("hop", "hop")),
               "logits": (("signal_channels", "channels"), ("bins", "bins"), ("hop", "hop")),
               "card": (("signal_channels", "channels"), ("bins", "bins"), ("hop", "hop"))}


def _fill_shape_keys(cfg: dict, rep) -> None:
    """Each denoiser section's `net` takes its shape keys from the representation (one line when a given one differs)."""
    for section, keys in _SHAPE_KEYS.items():
        net = cfg[section]["net"]
        if not isinstance(net, dict):
            raise CoupledError(f"config key {section}.net must be a mapping of network options, got {net!r}")
        wanted = dict((k, getattr(rep, a)) for k, a in keys)
        if section == "signal":
            wanted["freq_patch"] = max(1, rep.bins // 64)
        for k, v in wanted.items():
            if k in net and net[k] != v and not (k == "freq_patch" and section == "signal"):
                raise CoupledError(f"config key {section}.net.{k} is {net[k]!r} but the representation "
                                   f"({rep.kind}) gives {v!r}; drop it (it is taken from `representation`)")
            net.setdefault(k, v)


def check_speech_config(cfg: dict) -> None:
    """The speech domain's checks of a merged config (after the schema's): unknown degradations and corpus
    options are one-line errors naming the valid ones."""
    for k in ("corpus", "degradations", "levels"):
        if not isinstance(cfg[k], dict):
            raise CoupledError(f"config key '{k}' must be a mapping, got {type(cfg[k]).__name__}")
    if cfg["domain"] != "speech":
        raise CoupledError(f"a speech config needs domain: speech, got {cfg['domain']!r}")
    for key in ("root", "wav_folder"):
        value = cfg["data"].get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise CoupledError(f"config key data.{key} must be null or a folder path, got {value!r}; fix it in the "
                               "config file")
    net = cfg["recogniser"]["net"]
    if not isinstance(net, dict):
        raise CoupledError(f"config key recogniser.net must be a mapping of RecogniserConfig fields, got {net!r}")
    try:
        RecogniserConfig.from_dict(net)  # checked now, not after the corpus is read for training
    except CoupledError as e:
        raise CoupledError(f"config key recogniser.net: {e}") from None
    if cfg["data"].get("wav_folder"):  # a user's folder is one set of recordings
        cfg["evaluation"]["split"] = "all"
    if cfg["evaluation"]["task"] not in ("digits", "keywords"):
        raise CoupledError(f"config key evaluation.task must be digits or keywords, got {cfg['evaluation']['task']!r}")
    for name in list(cfg["degradations"]) + list(cfg["levels"]):
        DEGRADATIONS[name]  # raises, naming the valid degradations
    CorpusConfig.from_dict(cfg["corpus"])  # raises on unknown corpus options
    from .representation import representation_from_dict

    if not isinstance(cfg["representation"], dict):
        raise CoupledError(f"config key representation must be a mapping (kind: stft or mel, and its options), got "
                           f"{cfg['representation']!r}")
    try:
        rep = representation_from_dict(cfg["representation"])
    except CoupledError as e:
        raise CoupledError(f"config key representation: {e}") from None
    _fill_shape_keys(cfg, rep)


def make_speech_config(user: dict | None = None) -> dict:
    """SPEECH_DEFAULTS deep-merged with `user` through the generic config path (`coupled.config.make_config`);
    unknown keys and unknown degradations are one-line errors."""
    from ...config import make_config

    return make_config(user, "speech")
