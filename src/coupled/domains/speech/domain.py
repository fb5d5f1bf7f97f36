"""The speech domain as one object: what a `Domain` registry needs to train, evaluate and report it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...errors import CoupledError
from ..registry import Domain, register_domain


def _networks() -> dict:
    from .recogniser import CTCRecogniser

    return {"classifier": {"ctc_conv": CTCRecogniser}}


@dataclass(frozen=True)
class SpeechDomain(Domain):
    """The speech domain's interface, registered as "speech".

    name: "speech"; tasks: digits (WER) and keywords (accuracy); sample_rate: 16 kHz. Its commands are its
    own (the frozen recogniser is its only trained network so far): train, evaluate, calibrate, data.
    """

    name: str = "speech"
    tasks: tuple = ("digits", "keywords")
    splits: tuple = ("train", "val", "test")
    sample_rate: int = 16000
    input_suffixes: tuple = field(default=(".wav", ".flac", ".ogg"))
    commands = ("train", "evaluate", "calibrate", "data")

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

    # ---- data
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
        nets = self.networks
        if role not in nets:
            raise CoupledError(f"the speech domain has no network role '{role}'; valid: {', '.join(nets)}")
        arch = arch or next(iter(nets[role]))
        if arch not in nets[role]:
            raise CoupledError(f"unknown speech {role} architecture '{arch}'; valid: {', '.join(nets[role])}")
        from .recogniser import RecogniserConfig

        return nets[role][arch](RecogniserConfig.from_dict({**(config or {}), **kwargs}))

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
    def run_train(self, cfg: dict, *, progress=True, **ignored) -> list:
        """Train the frozen recogniser (the generic stages' options do not apply)."""
        from .train import train_from_config

        return [train_from_config(cfg, progress=progress)]

    def run_evaluate(self, cfg: dict, *, checkpoint=None, split=None, out="runs/eval", max_items=None,
                     corruptions=None, levels=None, methods=None, seeds=None, picks=None, results_path=None,
                     progress=True) -> str:
        from .evaluate import evaluate_speech, speech_report

        if levels:
            raise CoupledError("speech rows are per SNR and RT60, not per level; drop --levels")
        results = evaluate_speech(cfg, checkpoint=checkpoint, split=split, out=out, max_items=max_items,
                                  corruptions=corruptions, methods=methods, progress=progress, results_path=results_path)
        return speech_report(results)

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
