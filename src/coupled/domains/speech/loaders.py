"""Loaders for speech a user has on disk, so real recordings can be scored like the synthetic corpus.

- Speech Commands (v0.01/v0.02): `<root>/<word>/<speaker>_nohash_<k>.wav`, with `validation_list.txt` and
  `testing_list.txt` naming the validation and test files; everything else (but `_background_noise_`) trains.
- VoiceBank-DEMAND: `<root>/{clean,noisy}_{trainset_28spk,testset}_wav/<spk>_<k>.wav`, transcripts in
  `<root>/{trainset_28spk,testset}_txt/<spk>_<k>.txt`.
- EARS-WHAM / EARS-Reverb: `<root>/{train,valid,test}/{clean,noisy}/<speaker>/<utterance>.wav`, transcripts
  in `<root>/transcripts.json` keyed by `<utterance>` (or `<speaker>/<utterance>`).
- A plain folder of WAVs (subfolders too; a subfolder's name is its files' speaker) with a transcript file:
  one line per file, `<file> <words...>` or `<file> <task>: <words...>` (a tab, comma or spaces after the name).

Every file is read through `read_audio`: resampled to 16 kHz and checked (stereo, empty, clipped ... are
one-line errors naming the file).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import CoupledError
from .audio import read_audio
from .corpus import Utterance


@dataclass
class PairedUtterance:
    """A degraded recording with its clean reference (float32, 16 kHz) and transcript."""

    noisy: np.ndarray
    clean: np.ndarray
    text: str
    speaker: str
    id: str


def _folder(root) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise CoupledError(f"no such folder: {root}")
    return root


def speech_commands(root, split: str = "test", words=None) -> list[Utterance]:
    """Speech Commands items of one split (train, val or test); `words` limits the folders read."""
    root = _folder(root)
    lists = {}
    for name, fname in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
        p = root / fname
        if not p.is_file():
            raise CoupledError(f"{root} is not a Speech Commands folder: {fname} is missing")
        lists[name] = {line.strip() for line in p.read_text().splitlines() if line.strip()}
    if split not in ("train", "val", "test"):
        raise CoupledError(f"unknown split '{split}'; valid: train, val, test")
    files = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.wav") if not p.parent.name.startswith("_"))
    if words is not None:
        files = [f for f in files if f.split("/")[0] in set(words)]
    held = lists["val"] | lists["test"]
    chosen = [f for f in files if (f in lists[split] if split != "train" else f not in held)]
    out = []
    for f in chosen:
        word, name = f.split("/")
        out.append(Utterance(read_audio(root / f), word, "keywords", name.split("_nohash_")[0], f"{word}/{Path(name).stem}"))
    return out


def _read_pairs(clean_dir: Path, noisy_dir: Path, text_of, speaker_of) -> list[PairedUtterance]:
    out = []
    for c in sorted(clean_dir.rglob("*.wav")):
        rel = c.relative_to(clean_dir)
        n = noisy_dir / rel
        if not n.is_file():
            raise CoupledError(f"{n} is missing: every clean file needs its noisy counterpart in {noisy_dir}")
        clean, noisy = read_audio(c), read_audio(n)
        if len(clean) != len(noisy):
            raise CoupledError(f"{c.name}: clean and noisy lengths differ ({len(clean)} vs {len(noisy)} samples)")
        out.append(PairedUtterance(noisy, clean, text_of(rel), speaker_of(rel), rel.with_suffix("").as_posix()))
    if not out:
        raise CoupledError(f"no WAV files in {clean_dir}")
    return out


def voicebank_demand(root, split: str = "test") -> list[PairedUtterance]:
    """VoiceBank-DEMAND pairs of one split (train or test), 48 kHz files resampled to 16 kHz."""
    root = _folder(root)
    tag = {"train": "trainset_28spk", "test": "testset"}.get(split)
    if tag is None:
        raise CoupledError(f"VoiceBank-DEMAND has splits train and test, not '{split}'")
    clean, noisy, txt = root / f"clean_{tag}_wav", root / f"noisy_{tag}_wav", root / f"{tag}_txt"
    for d in (clean, noisy, txt):
        if not d.is_dir():
            raise CoupledError(f"{root} is not a VoiceBank-DEMAND folder: {d.name}/ is missing")

    def text_of(rel):
        t = txt / rel.with_suffix(".txt").name
        if not t.is_file():
            raise CoupledError(f"transcript {t} is missing")
        return t.read_text().strip()

    return _read_pairs(clean, noisy, text_of, lambda rel: rel.stem.split("_")[0])


def ears(root, split: str = "test") -> list[PairedUtterance]:
    """EARS-WHAM / EARS-Reverb pairs of one split (train, valid or test) with transcripts.json."""
    root = _folder(root)
    base = root / {"val": "valid"}.get(split, split)
    if not (base / "clean").is_dir() or not (base / "noisy").is_dir():
        raise CoupledError(f"{root} is not an EARS-WHAM/EARS-Reverb folder: {base.name}/clean and {base.name}/noisy are needed")
    tpath = root / "transcripts.json"
    if not tpath.is_file():
        raise CoupledError(f"{tpath} is missing: EARS transcripts are read from transcripts.json in the dataset root")
    texts = json.loads(tpath.read_text())

    def text_of(rel):
        key = rel.with_suffix("").as_posix()
        for k in (key, rel.stem):
            if k in texts:
                return texts[k]
        raise CoupledError(f"no transcript for {key} in {tpath}")

    return _read_pairs(base / "clean", base / "noisy", text_of, lambda rel: rel.parts[0] if len(rel.parts) > 1 else "")


def wav_folder(root, transcripts: str | Path = "transcripts.txt", task: str | None = None) -> list[Utterance]:
    """Every WAV under `root` (subfolders too, `.wav` in any case) with its line in a transcript file.

    Args:
        root: the folder; a file in a subfolder gets that subfolder's name as its speaker.
        transcripts: the transcript file (relative to `root` unless absolute), UTF-8 (a byte-order mark is
            skipped), one line per WAV: `<file> <words...>` or `<file> <task>: <words...>` (task digits or
            keywords), `<file>` the path under `root` with or without `.wav`, then a tab, comma or spaces; blank
            lines and lines starting with `#` are skipped.
        task: the task of lines that name none; None infers it from the words: one word is a keyword (scored by
            accuracy), more are a string (scored by WER, as the digit strings are).
    Returns the utterances in path order, each with id `<path without .wav>`. A WAV without a line, a line
    without a WAV, a file named on two lines and an unknown task are one-line CoupledErrors naming the line.
    """
    from .corpus import TASKS

    root = _folder(root)
    if task is not None and task not in TASKS:
        raise CoupledError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    tpath = Path(transcripts) if Path(transcripts).is_absolute() else root / transcripts
    if not tpath.is_file():
        raise CoupledError(f"transcript file {tpath} is missing; write one line per WAV: '<file name> <words>'")
    try:
        text = tpath.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CoupledError(f"{tpath} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                           "save it as UTF-8") from None
    wavs = {}
    for w in sorted(p for p in root.rglob("*") if p.suffix.lower() == ".wav" and p.is_file()):
        key = w.relative_to(root).with_suffix("").as_posix()
        if key in wavs:
            raise CoupledError(f"{wavs[key].relative_to(root)} and {w.relative_to(root)} in {root} differ only in the "
                               "case of .wav, so a transcript line cannot tell them apart; rename one")
        wavs[key] = w
    if not wavs:
        raise CoupledError(f"no .wav files in {root} or its subfolders")
    lines: dict[str, tuple] = {}  # file key -> (line number, task, words)
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{tpath.name} line {i}"
        parts = re.split(r"[\t,]|\s+", line.strip(), maxsplit=1)
        words = parts[1].strip() if len(parts) == 2 else ""
        line_task = task
        tag = re.match(r"(\w+):\s*", words)
        if tag:
            if tag.group(1) not in TASKS:
                raise CoupledError(f"{where}: unknown task {tag.group(1)!r}; valid: {', '.join(TASKS)} "
                                   "(as '<file> digits: <words>')")
            line_task, words = tag.group(1), words[tag.end():].strip()
        if not words:
            raise CoupledError(f"{where}: expected '<file> <words>', got {line.strip()!r}")
        name = Path(parts[0].replace("\\", "/"))
        key = (name.with_suffix("") if name.suffix.lower() == ".wav" else name).as_posix()
        if key not in wavs:
            raise CoupledError(f"{where}: no WAV file {parts[0]} under {root}; remove the line or add the file")
        if key in lines:
            raise CoupledError(f"{where}: {wavs[key].relative_to(root).as_posix()} already has a transcript on line "
                               f"{lines[key][0]}; keep one of the two lines")
        lines[key] = (i, line_task or ("keywords" if len(words.split()) == 1 else "digits"), words)
    missing = [wavs[k].relative_to(root).as_posix() for k in wavs if k not in lines]
    if missing:
        raise CoupledError(f"{len(missing)} WAV file(s) have no line in {tpath.name} (first: {missing[0]}); add them")
    return [Utterance(read_audio(w), lines[k][2], lines[k][1], k.split("/")[0] if "/" in k else "", k)
            for k, w in wavs.items()]
