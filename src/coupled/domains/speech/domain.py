"""The speech domain as one object: what a `Domain` registry needs to train, evaluate and report it."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from ...engine.strategies import COUPLED, PAPER_METHODS
from ...errors import CoupledError
from ..registry import Domain, register_domain


def _networks() -> dict:
    from .networks import SpeechLogitNet, SpeechSignalUNet
    from .recogniser import CTCRecogniser

    return {"classifier": {"ctc_conv": CTCRecogniser}, "signal": {"speech_unet": SpeechSignalUNet},
            "logits": {"speech_logit_net": SpeechLogitNet}}


def _net_config(role: str, config: dict):
    """The config object of a `role` network from its config dict; the signal U-Net's `size` (tiny / small / base)
    picks a preset of widths that the dict's own keys override."""
    from .networks import SIGNAL_UNET_PRESETS, SpeechLogitNetConfig, SpeechSignalUNetConfig
    from .recogniser import RecogniserConfig

    config = dict(config)
    if role == "signal":
        size = config.pop("size", None)
        if size is not None:
            if size not in SIGNAL_UNET_PRESETS:
                raise CoupledError(f"unknown speech U-Net size {size!r}; valid: {', '.join(SIGNAL_UNET_PRESETS)}")
            config = {**SIGNAL_UNET_PRESETS[size], **config}
        return SpeechSignalUNetConfig.from_dict(config)
    if role == "logits":
        return SpeechLogitNetConfig.from_dict(config)
    return RecogniserConfig.from_dict(config)


def _train_degradation(name: str, context=None):
    """A speech degradation as a training corruption: (one item's waveform [1, n], level, torch generator) ->
    [1, n], drawn by a numpy generator seeded from the torch one. `context()` gives what the degradation needs
    beyond the level (babble's talkers; reverb's rooms), built on first use."""
    import numpy as np
    import torch

    from .degrade import DEGRADATIONS

    fn = DEGRADATIONS[name]

    def corrupt(item, level, generator):
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
        wave = item.reshape(-1).detach().cpu().numpy().astype(np.float32)
        if name == "reverb":  # level: an RT60 in seconds; one of the training rooms nearest to it, at random
            rooms = context()
            gap = np.abs(np.array([r.rt60_target for r in rooms]) - float(level))
            near = np.flatnonzero(gap <= gap.min() + 1e-9)
            out = fn(wave, rooms[int(rng.choice(near))], rng)
        else:
            out = fn(wave, float(level), rng, context() if context else None)
        return torch.from_numpy(np.ascontiguousarray(out, np.float32)).reshape(item.shape).to(item.dtype)

    return corrupt


# What the denoisers' training draws (corruptions.train_severity: an SNR range in dB for the noises, an RT60 range
# in seconds for reverb). Babble's talkers come from the training split; reverb's rooms from a bank of their own
# (TRAIN_ROOMS: seed 1, so no training room is one of the evaluation's, which are seed 0).
TRAIN_NOISES = ("white_noise", "pink_noise", "babble_noise", "reverb")
TRAIN_ROOMS = {"rt60s": (0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5), "per_rt60": 4, "seed": 1}
BABBLE_TALKERS = 120  # training-split digit strings the training babble draws its talkers from


@functools.lru_cache(maxsize=4)
def _training_babble(root: str, count: int) -> list:
    """The first `count` training-split digit strings of the corpus at `root`: training babble's talkers."""
    from .corpus import load_split

    return [u.wave for u in load_split(Path(root), "train", tasks=("digits",), max_items=count)]


@functools.lru_cache(maxsize=4)
def _training_rooms(rt60s: tuple, per_rt60: int, seed: int) -> list:
    from .degrade import room_bank

    return room_bank(rt60s, per_rt60, seed)


@dataclass(frozen=True)
class SpeechDomain(Domain):
    """The speech domain's interface, registered as "speech".

    name: "speech"; tasks: digits (WER) and keywords (accuracy); sample_rate: 16 kHz. Its commands are its
    own for training the recogniser, calibrating levels and building the corpus; `coupled evaluate` runs the
    generic evaluator on `load_splits` (one task at a time: `evaluation.task`), `conditions` and `corrupt_set`.
    """

    name: str = "speech"
    tasks: tuple = ("digits", "keywords")
    splits: tuple = ("train", "val", "test")
    sample_rate: int = 16000
    input_suffixes: tuple = field(default=(".wav", ".flac", ".ogg"))
    commands = ("train", "evaluate", "reproduce", "calibrate", "data", "classify", "tune", "demo", "bench")
    demo_config = "configs/speech.yaml"  # `coupled demo --domain speech`
    samples_per_second = 16000.0  # the waveforms' rate (the generic runner reports seconds per second of speech)
    signal_range = None  # waveforms and spectrograms are not clipped
    # `coupled bench --domain speech` (coupled.evaluation.bench): heavy babble on validation digit strings, every
    # method at its validation pick (the config's demo.picks; the config's sampling when there is none), networks
    # timed on a 2-second utterance, cost against length on utterances of 1 to 7 digits, each alone
    bench_profiles = {
        "quick": {"items": 24, "steps": (), "batch_size": 8, "corruptions": ("babble_noise",), "specs": "picks",
                  "item_noun": "digit strings", "throughput_batches": (1, 8),
                  "throughput_methods": ("sequential", "parallel"), "throughput_seconds": 2.0,
                  "call_seconds": 2.0, "call_repeats": 5,
                  "length_sweep": {"per_group": 4, "methods": ("noisy", "one_step", "sequential", *COUPLED)}},
        "full": {"items": 100, "steps": (), "batch_size": 16, "corruptions": ("white_noise", "babble_noise", "reverb"),
                 "specs": "picks", "item_noun": "digit strings", "throughput_batches": (1, 8, 32),
                 "throughput_methods": ("sequential", "parallel", "nested"), "throughput_seconds": 5.0,
                 "call_seconds": 2.0, "call_repeats": 20,
                 "length_sweep": {"per_group": 6, "methods": ("one_step", "purification", *PAPER_METHODS)}},
    }

    # ---- config
    @property
    def free_form(self) -> frozenset:
        from .config import FREE_FORM

        return frozenset(FREE_FORM)

    def config_defaults(self) -> dict:
        from .config import SPEECH_DEFAULTS

        return SPEECH_DEFAULTS

    def check_config(self, cfg: dict) -> None:
        from .config import check_speech_config

        check_speech_config(cfg)

    # ---- data (the generic path: `coupled evaluate` runs its methods on these)
    def load_splits(self, cfg: dict):
        """{split: LabelledSignals} of the config's `evaluation.task` (digits or keywords): zero-padded waveforms
        [N, T] with their lengths, transcripts as labels; loaded when a split is first asked for. With
        `data.wav_folder`, one split "all" of the user's recordings."""
        return _Splits(cfg)

    def length_groups(self, data) -> dict | None:
        """{"N digits": indices} of a split's utterances by the words of their transcript, fewest first (`coupled
        bench`'s cost against utterance length)."""
        groups: dict = {}
        for i, label in enumerate(data.labels):
            groups.setdefault(len(str(label).split()), []).append(i)
        return {f"{n} word{'s' if n != 1 else ''}": groups[n] for n in sorted(groups)}

    def dataset_name(self, cfg: dict) -> str:
        from .corpus import CorpusConfig

        folder = cfg["data"].get("wav_folder")
        return f"wav_folder {folder}" if folder else f"espeak-digits-{CorpusConfig.from_dict(cfg['corpus']).digest()}"

    def conditions(self, cfg: dict, split: str) -> dict:
        """The sweep of `degradations` (each SNR and RT60; calibrated levels named light / medium / heavy), as
        labelled conditions that `corrupt_set` degrades with."""
        from .evaluate import condition_sweep, speech_items

        return condition_sweep(cfg, speech_items(cfg, split)[2])

    def severity_value(self, severity) -> float:
        return round(float(severity["severity"]), 4) if isinstance(severity, dict) else float(severity)

    def condition_fields(self, severity) -> dict:
        if not isinstance(severity, dict):
            return {}
        rt60 = severity.get("rt60")
        return {"snr_db": severity["snr_db"], "rt60": None if rt60 is None else round(rt60, 3),
                **({"rt60_target": severity["rt60_target"]} if "rt60_target" in severity else {})}

    def corrupt_set(self, signals, name, severity, seed, *, first_index=0, lengths=None, indices=None):
        """A padded batch of waveforms degraded by a condition of `conditions` (each item over its length,
        seeded by its index in the corpus's mixed list, as part 1's noisy table was)."""
        import torch

        if not isinstance(severity, dict):
            raise CoupledError(f"a speech condition comes from the config's degradations sweep, got {severity!r}")
        n = signals.shape[0]
        lengths = torch.full((n,), signals.shape[-1]) if lengths is None else lengths
        indices = torch.arange(first_index, first_index + n) if indices is None else indices
        from .evaluate import degrade_split

        return degrade_split(signals, severity, seed, lengths, indices)

    def load_split(self, root, split: str, tasks=None, max_items=None):
        """Utterances of one split of a built corpus."""
        from .corpus import TASKS, load_split

        return load_split(root, split, tasks or TASKS, max_items)

    # ---- corruptions
    @property
    def corruptions(self):
        """The degradation registry (rejects duplicates, names valid entries for an unknown one)."""
        from .degrade import DEGRADATIONS

        return DEGRADATIONS

    def corrupt(self, name: str, wave, level, seed, context=None):
        from .degrade import degrade

        return degrade(name, wave, level, seed, context)

    # ---- networks
    @property
    def networks(self) -> dict:
        """role -> {architecture name -> nn.Module class}."""
        return _networks()

    def build_network(self, role: str, arch: str | None = None, config: dict | None = None, **kwargs):
        """The recogniser (`classifier`: RecogniserConfig fields), the signal U-Net (`signal`: SpeechSignalUNetConfig
        fields, plus `size`: a preset of widths) or the logit net (`logits`: SpeechLogitNetConfig fields)."""
        nets = self.networks
        if role not in nets:
            raise CoupledError(f"the speech domain has no network role '{role}'; valid: {', '.join(nets)}")
        arch = arch or next(iter(nets[role]))
        if arch not in nets[role]:
            raise CoupledError(f"unknown speech {role} architecture '{arch}'; valid: {', '.join(nets[role])}")
        return nets[role][arch](_net_config(role, {**(config or {}), **kwargs}))

    # ---- what the chains run on: a time-frequency representation of the waveforms (representation.py)
    def representation(self, meta: dict | None):
        """The representation a bundle's signal net JSON (or `signal_meta`) records; None when it records none
        (a recogniser alone: its methods run on waveforms)."""
        from .representation import representation_from_dict

        rep = (meta or {}).get("representation")
        return None if rep is None else representation_from_dict(rep)

    def signal_meta(self, cfg: dict) -> dict:
        """{"representation": the config's `representation` section}: recorded in signal.json and logits.json."""
        from .representation import representation_from_dict, representation_to_dict

        return {"representation": representation_to_dict(representation_from_dict(cfg["representation"]))}

    def represent(self, signals, lengths, meta):
        """Padded waveforms [N, T] -> the representation [N, C, F, frames] with valid frames [N] (each item over its
        own length); the waveforms themselves when `meta` records no representation."""
        import torch

        rep = self.representation(meta)
        if rep is None:
            return signals, lengths
        with torch.no_grad():
            return rep.analyse(signals, lengths)

    def wrap_classifier(self, net, meta):
        """The recogniser reading the representation `meta` records (`RecogniserOnRepresentation`: representation in,
        frame logits out, with `output_lengths`); the recogniser itself without one."""
        from .representation import RecogniserOnRepresentation

        rep = self.representation(meta)
        return net if rep is None else RecogniserOnRepresentation(net, rep).eval().requires_grad_(False)

    def estimate_metrics(self, meta: dict | None = None) -> dict:
        """SI-SDR (dB) and ESTOI (pystoi, extended=True, at 16 kHz) of the audio resynthesised from a compressed-STFT
        estimate against the clean utterance's (both through the same inverse STFT, hop * (frames - 1) samples).
        ESTOI of an utterance with too little active speech for pystoi (fewer than 30 frames) is NaN, which the
        report's mean leaves out. None for a log-mel estimate, whose audio needs the degraded waveform
        (`LogMel.synthesise`), which the evaluator does not hand over; and none for a recogniser alone (no
        estimates). ESTOI costs about 0.1 s an utterance (pystoi), outside the timed sampling."""
        import numpy as np

        from .metrics import estoi, si_sdr
        from .representation import CompressedSTFT

        rep = self.representation(meta)
        if not isinstance(rep, CompressedSTFT):
            return {}

        def audio(estimate, reference):
            n = rep.hop * (estimate.shape[-1] - 1)
            lengths = [n] * estimate.shape[0]
            return zip(rep.synthesise(estimate, lengths), rep.synthesise(reference, lengths))

        def resynthesised_si_sdr(estimate, reference):
            return np.array([si_sdr(e.numpy(), r.numpy()) for e, r in audio(estimate, reference)])

        def resynthesised_estoi(estimate, reference):
            values = [estoi(e.numpy(), r.numpy(), self.sample_rate)[0] for e, r in audio(estimate, reference)]
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        return {"si_sdr": resynthesised_si_sdr, "estoi": resynthesised_estoi}

    def example_panel(self, signal):
        """A spectrogram for the report's example grid: a representation [C, F, T] (compressed STFT: its magnitude;
        log-mel: itself) or a waveform [N] (its compressed STFT's magnitude), low frequencies at the bottom, on a
        fixed decibel scale (-30 dB of the representation's unit level at -1, +10 dB at +1) so panels compare."""
        import numpy as np
        import torch

        x = torch.as_tensor(signal).detach().cpu().float()
        if x.dim() == 1:
            from .representation import CompressedSTFT

            x = CompressedSTFT().analyse(x[None])[0][0]
        mag = x.norm(dim=0) if x.shape[0] == 2 else x[0].abs()
        db = 20 * np.log10(mag.numpy()[::-1] + 1e-4)
        return np.clip((db + 10) / 20, -1, 1)

    def example_files(self, rows: list, folder, meta: dict | None = None) -> list:
        """The report's examples as 16 kHz WAVs under `folder` (clean, degraded and each method's estimate, the
        estimates resynthesised from their compressed STFT; a log-mel estimate has no audio of its own and is
        skipped), each file peak-normalised to 0.9 so none clips; named <row>_item<i>_<k>_<caption>.wav."""
        import re

        import numpy as np
        import torch

        from .audio import write_wav
        from .representation import CompressedSTFT

        rep = self.representation(meta)
        written = []
        for r, row in enumerate(rows):  # a row per (degradation, item): the row's number keeps their files apart
            item = re.sub(r"\D", "", str(row.get("title", "")).split(",")[0]) or str(r)
            for k, (caption, signal) in enumerate(row.get("signals", ())):
                x = torch.as_tensor(signal).detach().cpu().float()
                if x.dim() == 3 and isinstance(rep, CompressedSTFT):
                    x = rep.synthesise(x[None], [rep.hop * (x.shape[-1] - 1)])[0]
                if x.dim() != 1:
                    continue
                wave = x.numpy()
                wave = 0.9 * wave / max(float(np.abs(wave).max()), 1e-9)
                name = re.sub(r"[^A-Za-z0-9]+", "_", str(caption)).strip("_")[:48]
                path = Path(folder) / f"{r:02d}_item{item}_{k}_{name}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_wav(path, wave, self.sample_rate)
                written.append(path)
        return written

    def corruption(self, spec: str):
        """A training corruption (`corruptions.train_severity`): white, pink or babble noise at an SNR in dB, or
        reverb at an RT60 in seconds, drawn per item (evaluation degrades with `corrupt_set` and the `degradations`
        sweep instead). Babble and reverb need the config: `training_corruption` builds them."""
        if spec not in TRAIN_NOISES:
            self.corruptions[spec]  # an unknown name: one line naming the valid ones
            raise CoupledError(f"the speech denoisers train on {', '.join(TRAIN_NOISES)} (corruptions.train_severity: "
                               f"an SNR range in dB, or an RT60 range in seconds for reverb), not {spec!r}")
        return _train_degradation(spec)

    def training_corruption(self, name: str, cfg: dict):
        """`corruption(name)` with what it needs from `cfg`: babble talkers from the training split's digit strings
        (of `degradations.babble_noise.talkers`), reverb rooms from TRAIN_ROOMS, each built on first use."""
        self.corruption(name)  # an unknown name: one line
        if name == "babble_noise":
            talkers = int(cfg["degradations"].get("babble_noise", {}).get("talkers", 6))

            def babble():
                from .evaluate import built_corpus

                return {"babble": _training_babble(str(built_corpus(cfg)), BABBLE_TALKERS), "talkers": talkers}

            return _train_degradation(name, babble)
        if name == "reverb":
            return _train_degradation(name, lambda: _training_rooms(TRAIN_ROOMS["rt60s"], TRAIN_ROOMS["per_rt60"],
                                                                     TRAIN_ROOMS["seed"]))
        return _train_degradation(name)

    def classifier_loss(self, logits, labels, lengths=None, frame_lengths=None):
        """CTC of the recogniser's frame logits [B, T, 22] (blank 0) against the transcripts, over each item's valid
        frames, as the recogniser was trained (`train.py`); logs the batch's exact-transcript rate. The generic
        `finetuned` stage fine-tunes the recogniser with it on degraded speech."""
        import numpy as np
        import torch
        import torch.nn.functional as F

        from .recogniser import encode, greedy_decode

        if logits.dim() != 3 or isinstance(labels, torch.Tensor):
            raise CoupledError("the speech recogniser trains on frame logits [B, T, 22] with transcripts as labels; "
                               f"got logits {tuple(logits.shape)}")
        targets = [torch.tensor(encode(label), dtype=torch.long) for label in labels]
        frames = torch.full((logits.shape[0],), logits.shape[1]) if frame_lengths is None else frame_lengths.cpu()
        loss = F.ctc_loss(logits.float().log_softmax(-1).transpose(0, 1), torch.cat(targets).to(logits.device), frames,
                          torch.tensor([len(t) for t in targets]), blank=0, zero_infinity=True)
        hyps = greedy_decode(logits.detach().cpu(), frames)
        return loss, {"exact": torch.tensor(float(np.mean([h == r for h, r in zip(hyps, labels)])))}

    # ---- metrics and readout
    @property
    def signal_metrics(self) -> dict:
        """name -> fn(estimate, reference) (ESTOI and PESQ-WB return (value or None, reason))."""
        from .metrics import estoi, pesq_wb, si_sdr

        return {"si_sdr": si_sdr, "estoi": estoi, "pesq_wb": pesq_wb}

    def readout(self, logits, lengths=None) -> list[str]:
        """Greedy CTC decode of frame logits [B, T, K] into word strings."""
        from .recogniser import greedy_decode

        return greedy_decode(logits, lengths)

    def item_scores(self, task: str, refs: list[str], hyps: list[str]):
        """digits: per-utterance (edits, reference words) [N, 2], whose ratio of sums is the corpus WER (lower
        is better); keywords: 1.0 per exactly recognised word (accuracy)."""
        from .metrics import keyword_hits, word_errors

        scores = {"digits": word_errors, "keywords": keyword_hits}
        if task not in scores:
            raise CoupledError(f"unknown speech task '{task}'; valid: {', '.join(scores)}")
        return scores[task](list(refs), list(hyps))

    def secondary_scores(self, task: str | None = None) -> dict:
        """The same transcripts scored the other task's way: digit strings by accuracy (1.0 where the whole
        normalised transcript is right: the keyword task's rule, applied to strings), keywords by WER."""
        from .metrics import keyword_hits, word_errors

        return {"digits": {"accuracy": keyword_hits}, "keywords": {"wer": word_errors}}.get(task, {})

    def task_metric(self, task: str) -> str:
        metrics = {"digits": "wer", "keywords": "accuracy"}
        if task not in metrics:
            raise CoupledError(f"unknown speech task '{task}'; valid: {', '.join(metrics)}")
        return metrics[task]

    # ---- user input
    def read_input(self, path):
        """A user's audio file as checked 16 kHz mono float32 (other rates are resampled)."""
        from .audio import read_audio

        return read_audio(path)


    # ---- commands
    def run_train(self, cfg: dict, *, progress=True, resume=False, **ignored) -> list:
        """Build the corpus (when not cached) and train the frozen recogniser: the `classifier` stage (the generic
        stages' options do not apply). On `resume` a recogniser already in the output folder is kept; the summary's
        `wall_seconds` counts the corpus's synthesis too."""
        import time

        from .train import train_from_config

        if resume and (Path(cfg["output"]) / "classifier.safetensors").is_file():
            return [{"stage": "classifier", "skipped": True}]
        started = time.time()
        summary = train_from_config(cfg, progress=progress)
        return [{"stage": "classifier", **summary, "wall_seconds": round(time.time() - started, 1)}]

    def run_classify(self, files, checkpoint, *, corruption=None, severity=None, method=None, seed=0,
                     input_range=None, polarity="auto", device=None, allow_clipped=False, out=print) -> int:
        """`coupled classify FILE.wav ... --checkpoint checkpoints/speech`: one line per file with what the frozen
        recogniser hears (its greedy CTC transcript; `keyword=` when it is one word of the keyword task), or
        the file's problem; returns the number of failures. `--corruption` adds a registered noise at
        `--severity` dB SNR first (seeded by --seed)."""
        from ...bundle import default_device, load_bundle
        from .audio import read_audio
        from .corpus import WORDS
        from .degrade import degrade
        from .recogniser import collate, greedy_decode

        if input_range is not None or polarity != "auto":
            raise CoupledError("--input-range and --polarity are options of image files; drop them for audio")
        if (corruption is None) != (severity is None):
            raise CoupledError("pass --corruption and --severity together (or neither)")
        if corruption is not None and corruption not in ("white_noise", "pink_noise"):
            raise CoupledError(f"coupled classify adds white_noise or pink_noise to audio (at --severity dB SNR), "
                               f"got {corruption!r}; evaluate the other degradations with coupled evaluate")
        bundle = load_bundle(checkpoint, domain=self.name).to(default_device(device or "cpu"))
        method = method or "noisy"
        if method != "noisy":
            raise CoupledError(f"coupled classify runs the frozen recogniser alone (--method noisy); evaluate "
                               f"--method {method} with coupled evaluate --methods {method}")
        out("# file\ttranscript (greedy CTC decode of the frozen recogniser's logits on the audio; method noisy)")
        failures = 0
        for i, f in enumerate(files):
            try:
                wave = read_audio(f, allow_clipped=allow_clipped)
                if corruption is not None:
                    wave = degrade(corruption, wave, float(severity), [int(seed), i])
            except CoupledError as e:
                out(f"{f}\terror: {e}")
                failures += 1
                continue
            x, n = self.represent(*collate([wave]), bundle.meta.get("signal"))  # what the bundle's classifier reads
            logits = bundle.coupling.classifier(x.to(bundle.device), lengths=n.to(bundle.device))
            text = greedy_decode(logits.cpu(), bundle.coupling.classifier.module.output_lengths(n))[0]
            word = text if text in WORDS else None  # one word: the keyword task's answer
            out(f"{f}\t{text or '(nothing)'}" + (f"\tkeyword={word}" if word else ""))
        return failures

    def run_calibrate(self, cfg: dict, *, progress=True) -> str:
        import json

        from .calibrate import calibrate_levels

        return json.dumps(calibrate_levels(cfg, progress=progress), indent=1)

    def run_data(self, *, config, root=None, workers=2, progress=True) -> str:
        """`coupled data speech`: build the corpus a speech config names (defaults when the file does not exist)."""
        from ...config import load_config
        from .config import make_speech_config
        from .corpus import CorpusConfig, build_corpus, default_root

        cfg = make_speech_config()
        if config is not None and Path(config).is_file():
            cfg = load_config(config)
            if cfg.get("domain") != "speech":
                raise CoupledError(f"{config} is not a speech config (domain: speech); pass --config configs/speech.yaml")
        ccfg = CorpusConfig.from_dict(cfg["corpus"])
        root = root or cfg["data"].get("root") or default_root(ccfg)
        return f"speech corpus: {build_corpus(ccfg, root, workers=workers, progress=progress)}"


SPEECH = register_domain(SpeechDomain())


class _Splits(dict):
    """The speech splits of a config, each loaded (and padded) when first asked for."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        self.names = ("all",) if cfg["data"].get("wav_folder") else ("train", "val", "test")

    def __contains__(self, split) -> bool:
        return split in self.names

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def keys(self):
        return list(self.names)

    def __getitem__(self, split):
        if split not in self.names:
            raise KeyError(split)
        if not dict.__contains__(self, split):
            from .evaluate import labelled_split, speech_items

            items, name, _ = speech_items(self.cfg, split)
            dict.__setitem__(self, split, labelled_split(items, self.cfg["evaluation"]["task"], f"speech/{name}"))
        return dict.__getitem__(self, split)
