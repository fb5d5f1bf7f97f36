"""The synthetic spoken-digit corpus: eSpeak NG speakers saying digit strings and Speech Commands keywords.

Speakers are accent x voice variant x rate x pitch; the voice variants are disjoint between train, validation
and test, so held-out speakers are new voices, not new takes. Two tasks share one vocabulary:
`digits` (connected strings of 1-7 digits, "oh" included, scored by WER) and `keywords` (one word, scored by
accuracy). The corpus is written once as 16 kHz 16-bit WAVs with a manifest and read back from that cache.

eSpeak NG carries state from one utterance to the next inside a process (its output for a sentence depends
on what it said before), so each speaker is synthesised in a fresh child process: the corpus is then a
function of its config alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import CoupledError
from .audio import SAMPLE_RATE, write_wav

GENERATOR_VERSION = "coupled-speech-corpus/1"
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "oh")
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
WORDS = DIGITS + KEYWORDS  # CTC token i + 1 is WORDS[i]; token 0 is the blank
TASKS = ("digits", "keywords")
SPLITS = ("train", "val", "test")
ACCENTS = ("en", "en-us", "en-029", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-x-rp", "en-us-nyc")
# eSpeak NG voice variants that sound like a person (robots, whispers and croaks left out)
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "Alex", "Andy", "Annie",
            "Denis", "Gene", "Henrique", "Hugo", "Jacky", "Lee", "Mario", "Michael", "Mike", "Reed", "adam", "anika",
            "aunty", "belinda", "benjamin", "boris", "caleb", "david", "ed", "edward", "grandma", "grandpa", "ian",
            "iven", "john", "linda", "max", "michel", "norbert", "paul", "quincy", "rob", "robert", "steph", "travis",
            "victor", "zac")


class JSONConfig:
    """to_dict / from_dict for the domain's frozen config dataclasses: JSON-ready, lists back to tuples,
    and an unknown option is a one-line error naming the valid ones."""

    what = "option"

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict):
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - valid
        if unknown:
            raise CoupledError(f"unknown {cls.what}(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(valid))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class CorpusConfig(JSONConfig):
    """What the corpus is; two equal configs give the same files bit for bit.

    Args:
        seed: draws the variant split, each speaker's accent, rate and pitch, and every digit string.
        speakers: number of speakers per split.
        variants: number of voice variants reserved for validation and for test (the rest train).
        digit_strings: digit strings per speaker (lengths uniform in 1..max_digits).
        keyword_repeats: times each speaker says each of the 21 words alone.
        rate: speaking-rate range in words per minute; pitch: base-pitch range (0-99).
        peak: every utterance is scaled to this peak amplitude.
        margin: seconds of silence kept before and after the speech.
    """

    what = "speech corpus option"

    seed: int = 0
    speakers: dict = field(default_factory=lambda: {"train": 64, "val": 12, "test": 16})
    variants: dict = field(default_factory=lambda: {"val": 6, "test": 8})
    digit_strings: int = 30
    max_digits: int = 7
    keyword_repeats: int = 1
    rate: tuple = (130, 210)
    pitch: tuple = (30, 70)
    peak: float = 0.9
    margin: float = 0.1

    def digest(self) -> str:
        return hashlib.sha1(json.dumps([GENERATOR_VERSION, self.to_dict()], sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Speaker:
    name: str
    accent: str
    variant: str
    rate: int
    pitch: int
    split: str

    @property
    def voice(self) -> str:
        return f"{self.accent}+{self.variant}"


def variant_split(cfg: CorpusConfig) -> dict[str, list[str]]:
    """Voice variants per split, disjoint: a permutation of VARIANTS drawn from the seed."""
    order = np.random.default_rng([cfg.seed, 1]).permutation(len(VARIANTS))
    nv, nt = cfg.variants["val"], cfg.variants["test"]
    if nv + nt >= len(VARIANTS):
        raise CoupledError(f"corpus variants: val {nv} + test {nt} leave none of the {len(VARIANTS)} for training; lower them")
    names = [VARIANTS[i] for i in order]
    return {"test": names[:nt], "val": names[nt:nt + nv], "train": names[nt + nv:]}


def speakers(cfg: CorpusConfig) -> list[Speaker]:
    """Every speaker of the corpus, in a fixed order (split, then index)."""
    out = []
    variants = variant_split(cfg)
    for si, split in enumerate(SPLITS):
        rng = np.random.default_rng([cfg.seed, 2, si])
        pool = variants[split]
        combos = [(a, v) for v in pool for a in ACCENTS]
        picks = rng.permutation(len(combos))
        for i in range(cfg.speakers[split]):
            accent, variant = combos[picks[i % len(combos)]]
            rate = int(rng.integers(cfg.rate[0], cfg.rate[1] + 1))
            pitch = int(rng.integers(cfg.pitch[0], cfg.pitch[1] + 1))
            out.append(Speaker(f"{split}{i:03d}", accent, variant, rate, pitch, split))
    return out


def scripts(cfg: CorpusConfig, spk: Speaker, index: int) -> list[tuple[str, str]]:
    """(task, text) of every utterance of one speaker."""
    rng = np.random.default_rng([cfg.seed, 3, SPLITS.index(spk.split), index])
    out = []
    for _ in range(cfg.digit_strings):
        n = int(rng.integers(1, cfg.max_digits + 1))
        out.append(("digits", " ".join(DIGITS[i] for i in rng.integers(0, len(DIGITS), n))))
    for _ in range(cfg.keyword_repeats):
        out.extend(("keywords", WORDS[i]) for i in rng.permutation(len(WORDS)))
    return out


def _speak(job) -> list[np.ndarray]:
    """Child process: one speaker's utterances as int16 arrays at 16 kHz."""
    from .audio import resample
    from .synth import ESPEAK_RATE, synthesise

    spk, texts, peak, margin = job
    out = []
    for k, text in enumerate(texts):
        x = resample(synthesise(text, spk.voice, spk.rate, spk.pitch, seed=k), ESPEAK_RATE)
        active = np.flatnonzero(np.abs(x) > 1e-4)
        if active.size == 0:
            raise CoupledError(f"eSpeak NG produced silence for {text!r} with voice {spk.voice}")
        pad = int(margin * SAMPLE_RATE)
        x = x[max(active[0] - pad, 0): active[-1] + pad]
        x = x * (peak / np.abs(x).max())
        out.append(np.round(x * 32767).astype(np.int16))
    return out


def default_root(cfg: CorpusConfig) -> Path:
    """Where a corpus is cached by default: $COUPLED_CACHE (or ~/.cache/coupled-diffusion)/speech/<digest>."""
    base = Path(os.environ.get("COUPLED_CACHE", Path.home() / ".cache" / "coupled-diffusion"))
    return base / "speech" / cfg.digest()


def build_corpus(cfg: CorpusConfig | None = None, root=None, workers: int = 2, progress: bool = True) -> Path:
    """Synthesise the corpus into `root` (default: `default_root(cfg)`) unless an identical one is cached there.

    Args:
        cfg: the corpus config (default CorpusConfig()).
        root: output folder; its manifest.json records files, transcripts, speakers, splits and the generator.
        workers: child processes synthesising in parallel (each speaker in its own fresh process).
        progress: show a tqdm bar.
    Returns the folder.
    """
    from .synth import _ENGINE  # noqa: F401  (import early: a missing synthesiser fails here, in one line)

    cfg = cfg or CorpusConfig()
    root = Path(root) if root is not None else default_root(cfg)
    if is_corpus(root):
        m = json.loads((root / "manifest.json").read_text())
        if m.get("generator") == GENERATOR_VERSION and m.get("config") == cfg.to_dict():
            return root
        raise CoupledError(f"{root} holds a different speech corpus (generator or config differ); "
                           "pass another folder or delete that one")
    check_corpus_folder(root)
    tmp = root.with_name(root.name + ".partial")
    ours = (tmp / PARTIAL_MARKER).is_file() or is_corpus(tmp)  # marked when started, a manifest when finished
    if tmp.exists() and not ours and (not tmp.is_dir() or any(tmp.iterdir())):
        raise CoupledError(f"{tmp} exists and was not started by `coupled data` (no {PARTIAL_MARKER} in it); the "
                           "corpus is built there before it is renamed to its folder: move it away or pass another --root")
    try:
        import espeakng_loader  # noqa: F401
    except ImportError:
        from .synth import INSTALL_HINT

        raise CoupledError(f"the speech corpus needs the eSpeak NG synthesiser; install it with: {INSTALL_HINT}") from None
    spks = speakers(cfg)
    index = {s.split: 0 for s in spks}
    jobs, metas = [], []
    for s in spks:
        lines = scripts(cfg, s, index[s.split])
        index[s.split] += 1
        jobs.append((s, [t for _, t in lines], cfg.peak, cfg.margin))
        metas.append(lines)
    from . import synth
    import scipy.signal  # noqa: F401  (imported once here, not in every forked child)

    # fork is fast, but only clean while this process has never synthesised; otherwise start fresh interpreters
    method = "fork" if (synth._ENGINE is None and "fork" in multiprocessing.get_all_start_methods()) else "spawn"
    ctx = multiprocessing.get_context(method)
    items = []
    if tmp.exists():  # an interrupted build of ours (marked) or an empty folder: nothing of anyone else's
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / PARTIAL_MARKER).write_text("a speech corpus being built by `coupled data`; deleted when it is done\n")
    from tqdm import tqdm

    with ctx.Pool(max(1, workers), maxtasksperchild=1) as pool:
        results = pool.imap(_speak, jobs)
        for spk, lines, waves in tqdm(zip(spks, metas, results), total=len(jobs), desc="speech corpus",
                                      unit="speaker", disable=not progress):
            for k, ((task, text), w) in enumerate(zip(lines, waves)):
                rel = f"{spk.split}/{spk.name}/{spk.name}_{k:03d}.wav"
                write_wav(tmp / rel, w.astype(np.float32) / 32768)
                items.append({"file": rel, "text": text, "task": task, "speaker": spk.name, "split": spk.split,
                              "seconds": round(len(w) / SAMPLE_RATE, 3)})
    manifest = {"generator": GENERATOR_VERSION, "config": cfg.to_dict(), "sample_rate": SAMPLE_RATE,
                "speakers": [dataclasses.asdict(s) for s in spks], "items": items}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (tmp / PARTIAL_MARKER).unlink()
    if root.exists():  # an empty folder (check_corpus_folder refused anything else): never a tree of someone's files
        root.rmdir()
    tmp.rename(root)
    return root


PARTIAL_MARKER = ".coupled-partial"


def is_corpus(root) -> bool:
    """True when `root` holds a corpus written by `build_corpus` (its manifest.json names the generator)."""
    path = Path(root) / "manifest.json"
    try:
        return path.is_file() and str(json.loads(path.read_text()).get("generator", "")).startswith("coupled-speech-corpus/")
    except (OSError, ValueError, AttributeError):
        return False


def check_corpus_folder(root) -> None:
    """A folder `coupled data` may build a corpus in: a new one, an empty one, or a corpus of its own; a folder
    of anything else is a one-line CoupledError (the build replaces the folder, so it would lose those files)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise CoupledError(f"{root} is a file, not a folder; pass --root a new or empty folder for the speech corpus")
    if not root.is_dir() or is_corpus(root):
        return
    import itertools

    limit = 1000  # a data.root at someone's home folder: count no further
    seen = list(itertools.islice(root.rglob("*"), limit))
    found = sum(1 for p in seen if not p.is_dir())
    if seen:
        count = f"{found}{'+' if len(seen) == limit else ''}"
        raise CoupledError(f"{root} holds {count} files but no speech corpus manifest.json, so it is not a corpus "
                           "`coupled data` built; it will not write into or delete it: pass --root (or set data.root "
                           "to) a new or empty folder")


@dataclass
class Utterance:
    """One item: int16 samples at 16 kHz (as stored), its words, task and speaker."""

    audio: np.ndarray
    text: str
    task: str
    speaker: str
    id: str

    @property
    def wave(self) -> np.ndarray:
        return self.audio.astype(np.float32) / 32768 if self.audio.dtype == np.int16 else self.audio


def load_split(root, split: str, tasks=TASKS, max_items: int | None = None) -> list[Utterance]:
    """Read one split of a built corpus (`build_corpus`) from its manifest.

    Args:
        root: the corpus folder.
        split: train, val or test.
        tasks: which tasks to include.
        max_items: keep the first N items of each task (in manifest order, speakers interleaved).
    """
    from scipy.io import wavfile

    root = Path(root)
    mpath = root / "manifest.json"
    if not mpath.is_file():
        raise CoupledError(f"no speech corpus at {root} (manifest.json missing); build it with: coupled data speech")
    if split not in SPLITS:
        raise CoupledError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
    items = [it for it in json.loads(mpath.read_text())["items"] if it["split"] == split and it["task"] in tasks]
    if max_items is not None:
        # round-robin over speakers so a small subset still spans every speaker
        chosen = []
        for task in tasks:
            per = [it for it in items if it["task"] == task]
            seen: dict = {}
            rank = []
            for it in per:
                rank.append(seen.get(it["speaker"], 0))
                seen[it["speaker"]] = rank[-1] + 1
            order = sorted(range(len(per)), key=lambda i: (rank[i], i))
            chosen.extend(per[i] for i in sorted(order[:max_items]))
        items = chosen
    out = []
    for it in items:
        _, x = wavfile.read(root / it["file"])
        out.append(Utterance(x, it["text"], it["task"], it["speaker"], Path(it["file"]).stem))
    return out


def corpus_root(cfg: dict) -> Path:
    """The corpus folder of a speech config (built by `coupled data speech`)."""
    ccfg = CorpusConfig.from_dict(cfg["corpus"])
    return Path(cfg["data"]["root"]) if cfg["data"].get("root") else default_root(ccfg)


def built_corpus(cfg: dict) -> Path:
    """The corpus folder of a speech config, checked to hold a built corpus: otherwise a one-line CoupledError
    with the command that builds this config's corpus (and, for a folder of other files, that it will not)."""
    root = corpus_root(cfg)
    if is_corpus(root):
        return root
    build = "coupled data speech" + (f" --config {cfg['config_path']}" if cfg.get("config_path") else "")
    if root.is_dir() and any(root.iterdir()):
        raise CoupledError(f"{root} (data.root) holds files but no speech corpus manifest, and `coupled data` builds "
                           f"only into a new or empty folder: set data.root to one, then run: {build}")
    raise CoupledError(f"the speech corpus is not built yet ({root}); build it with: {build}")
