"""Loaders for speech a user has on disk, so real recordings can be scored like the synthetic corpus.

- Speech Commands (v0.01/v0.02): `<root>/<word>/<speaker>_nohash_<k>.wav`, with `validation_list.txt` and
  `testing_list.txt` naming the validation and test files; everything else (but `_background_noise_`) trains.
- VoiceBank-DEMAND: `<root>/{clean,noisy}_{trainset_28spk,testset}_wav/<spk>_<k>.wav`, transcripts in
  `<root>/{trainset_28spk,testset}_txt/<spk>_<k>.txt`.
- EARS-WHAM / EARS-Reverb: `<root>/{train,valid,test}/{clean,noisy}/<speaker>/<utterance>.wav`, transcripts
  in `<root>/transcripts.json` keyed by `<utterance>` (or `<speaker>/<utterance>`).
- A plain folder of WAVs with a transcript file: one line per file, `<file name or stem> <words...>`
  (a tab, comma or spaces after the name).

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


def wav_folder(root, transcripts: str | Path = "transcripts.txt", task: str = "digits") -> list[Utterance]:
    """Every WAV named in a transcript file, each line `<file> <words...>`; files without a line are refused."""
    root = _folder(root)
    tpath = Path(transcripts) if Path(transcripts).is_absolute() else root / transcripts
    if not tpath.is_file():
        raise CoupledError(f"transcript file {tpath} is missing; write one line per WAV: '<file name> <words>'")
    texts = {}
    for i, line in enumerate(tpath.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = re.split(r"[\t,]|\s+", line.strip(), maxsplit=1)
        if len(parts) < 2:
            raise CoupledError(f"{tpath} line {i}: expected '<file name> <words>', got {line.strip()!r}")
        texts[Path(parts[0]).stem] = parts[1].strip()
    wavs = sorted(root.glob("*.wav"))
    if not wavs:
        raise CoupledError(f"no .wav files in {root}")
    missing = [w.name for w in wavs if w.stem not in texts]
    if missing:
        raise CoupledError(f"{len(missing)} WAV file(s) have no line in {tpath.name} (first: {missing[0]}); add them")
    return [Utterance(read_audio(w), texts[w.stem], task, "", w.stem) for w in wavs]
