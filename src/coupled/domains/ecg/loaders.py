"""Real single-lead ECG when a user has it: PhysioNet/CinC 2017 folders and WFDB records (e.g. MIT-BIH).

Both end as the synthetic corpus does: 10-second segments at 250 Hz, [N, 1, 2500], robustly scaled per segment
(`synth.robust_scale`), labels 0 normal, 1 AF, 2 other. Each record is resampled (scipy's polyphase
`resample_poly`) and cut into non-overlapping 10-s segments (the remainder is dropped); splits are by record
(a record's segments stay together), drawn with the data seed. Bad records fail in one line naming the record:
a sampling rate below 100 Hz or not a number, NaN or infinite samples, a flat line, shorter than 10 s.

- `cinc2017`: a folder with `REFERENCE.csv` (`A00001,N`; N normal, A AF, O other, ~ noisy: skipped) and per
  record `A00001.mat` (MATLAB, variable `val`, int16 ADC units) with `A00001.hea` (the rate on its first line,
  the gain in ADC units per mV on the second).
- `wfdb`: a folder of WFDB records (`.hea` + `.dat`, read by the `wfdb` package; the first channel), labelled by
  a CSV `labels` (`record,label`, label N / A / O or normal / af / other).
"""

from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import numpy as np

from ...errors import CoupledError
from .synth import CLASS_NAMES, LENGTH, RATE, robust_scale

MIN_RATE = 100.0
LABELS = {"n": 0, "normal": 0, "a": 1, "af": 1, "o": 2, "other": 2}
SKIP = {"~", "noisy"}


def check_record(name: str, x, rate) -> np.ndarray:
    """`x` as float64 [samples] after the checks every record passes (one-line CoupledError naming `name`)."""
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise CoupledError(f"record {name}: sampling rate {rate!r} is not a number; fix its header") from None
    if not np.isfinite(rate) or rate < MIN_RATE:
        raise CoupledError(f"record {name}: sampling rate {rate:g} Hz is below {MIN_RATE:g} Hz; give records sampled at "
                           f"{MIN_RATE:g} Hz or more (they are resampled to {RATE} Hz)")
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.isfinite(x).all():
        raise CoupledError(f"record {name}: {int((~np.isfinite(x)).sum())} samples are NaN or infinite; repair or drop the record")
    if len(x) < rate * LENGTH / RATE:
        raise CoupledError(f"record {name}: {len(x) / rate:.2f} s is shorter than one {LENGTH / RATE:g}-s segment; drop it")
    if np.ptp(x) <= 1e-9 * max(1.0, float(np.abs(x).max())):
        raise CoupledError(f"record {name}: the trace is a flat line (no signal); check the lead or drop the record")
    return x


def segments(name: str, x, rate) -> np.ndarray:
    """Record `x` at `rate` Hz -> its 10-s segments at 250 Hz [S, 1, 2500], each robustly scaled to [-1, 1]."""
    from scipy.signal import resample_poly

    x = check_record(name, x, rate)
    if float(rate) != RATE:
        f = Fraction(RATE / float(rate)).limit_denominator(1000)
        x = resample_poly(x, f.numerator, f.denominator)
    n = len(x) // LENGTH
    if n == 0:  # resampling rounded a record of exactly 10 s down
        raise CoupledError(f"record {name}: shorter than one {LENGTH / RATE:g}-s segment after resampling; drop it")
    segs = x[: n * LENGTH].reshape(n, LENGTH)
    if (np.ptp(segs, axis=1) <= 1e-9).any():
        raise CoupledError(f"record {name}: a 10-s stretch is a flat line; trim the record or drop it")
    return robust_scale(segs)[:, None, :]


def _label(name: str, label: str):
    key = label.strip().lower()
    if key in SKIP:
        return None
    if key not in LABELS:
        raise CoupledError(f"record {name}: unknown label {label!r}; use N, A, O (or normal, af, other; ~ skips it)")
    return LABELS[key]


def _reference(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise CoupledError(f"no labels file {path}; give a CSV of record,label lines")
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
    if rows and rows[0][0].lower() in ("record", "name"):
        rows = rows[1:]
    if not rows or any(len(r) < 2 for r in rows):
        raise CoupledError(f"{path} must hold record,label lines; found none or a line without a label")
    return [(r[0].strip(), r[1]) for r in rows]


def read_cinc2017(folder, name: str):
    """(signal in mV [samples], rate) of CinC 2017 record `name` in `folder` (`name.mat` + `name.hea`)."""
    from scipy.io import loadmat

    folder = Path(folder)
    hea, mat = folder / f"{name}.hea", folder / f"{name}.mat"
    for p in (hea, mat):
        if not p.is_file():
            raise CoupledError(f"record {name}: no {p.name} in {folder}; a CinC 2017 record is a .mat and a .hea")
    lines = [ln.split() for ln in hea.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if len(lines) < 2 or len(lines[0]) < 3:
        raise CoupledError(f"record {name}: {hea.name} has no rate on its first line; expected 'NAME 1 300 9000'")
    rate = lines[0][2].split("/")[0]
    gain = 1000.0
    if len(lines[1]) > 2:
        try:
            gain = float(lines[1][2].split("/")[0].split("(")[0]) or 1000.0
        except ValueError:
            pass
    data = loadmat(str(mat))
    if "val" not in data:
        raise CoupledError(f"record {name}: {mat.name} has no variable 'val'; a CinC 2017 .mat holds the trace as val")
    return np.asarray(data["val"], dtype=np.float64).reshape(-1) / gain, rate


def read_wfdb(folder, name: str):
    """(first channel [samples], rate) of WFDB record `name` in `folder`, read by `wfdb.rdrecord`."""
    import wfdb

    path = Path(folder) / name
    if not path.with_suffix(".hea").is_file():
        raise CoupledError(f"record {name}: no {name}.hea in {folder}; give WFDB records (.hea + .dat)")
    rec = wfdb.rdrecord(str(path), channels=[0])
    return np.asarray(rec.p_signal, dtype=np.float64)[:, 0], rec.fs


def load_records(kind: str, root, labels=None):
    """(signals [N, 1, 2500], labels int64 [N], record index [N] per segment, record names) of a folder."""
    root = Path(str(root)).expanduser()
    if not root.is_dir():
        raise CoupledError(f"no such folder: {root}; set data.root to a {kind} folder")
    if kind == "cinc2017":
        ref, read = _reference(root / "REFERENCE.csv"), read_cinc2017
    elif kind == "wfdb":
        if labels is None:
            raise CoupledError("data kind wfdb needs data.labels: a CSV of record,label lines (N, A, O)")
        lp = Path(str(labels)).expanduser()
        ref, read = _reference(lp if lp.is_absolute() or lp.exists() else root / lp), read_wfdb
    else:
        raise CoupledError(f"unknown ECG data kind {kind!r}; valid: synthetic, cinc2017, wfdb")
    xs, ys, rec, names = [], [], [], []
    for name, label in ref:
        y = _label(name, label)
        if y is None:
            continue
        x, rate = read(root, name)
        s = segments(name, x, rate)
        xs.append(s)
        ys += [y] * len(s)
        rec += [len(names)] * len(s)
        names.append(name)
    if not xs:
        raise CoupledError(f"{root}: no labelled record (every label is ~ or the list is empty)")
    return np.concatenate(xs), np.array(ys, dtype=np.int64), np.array(rec, dtype=np.int64), names


def load_folder_splits(data: dict) -> dict:
    """train / val / test (LabelledSignals) of a `cinc2017` or `wfdb` data section, split by record with the data
    seed in `fractions` (default 0.7, 0.1, 0.2)."""
    import torch

    from ...seeds import sequence
    from ..registry import LabelledSignals

    kind = data.get("kind")
    if "root" not in data:
        raise CoupledError(f"data kind {kind} needs data.root: the folder of records")
    x, y, rec, names = load_records(kind, data["root"], data.get("labels"))
    fractions = list(data.get("fractions") or (0.7, 0.1, 0.2))
    if len(fractions) != 3 or any(not isinstance(f, (int, float)) or f < 0 for f in fractions) or sum(fractions) <= 0:
        raise CoupledError(f"data.fractions must be three non-negative numbers (train, val, test), got {fractions!r}")
    order = np.random.default_rng(sequence("data", int(data.get("seed", 0)), 0xEC6, 1)).permutation(len(names))
    cuts = np.round(np.cumsum(fractions) / sum(fractions) * len(names)).astype(int)
    parts = np.split(order, cuts[:2])
    out = {}
    for split, recs in zip(("train", "val", "test"), parts):
        idx = np.flatnonzero(np.isin(rec, recs))
        out[split] = LabelledSignals(torch.tensor(x[idx]), torch.tensor(y[idx]), len(CLASS_NAMES), f"ecg_{kind}/{split}")
    return out


def read_record_segments(path):
    """A user's file as segments [N, 1, 2500]: `.npy` (a trace at 250 Hz, [samples] or [N, samples]), a CinC 2017
    `.mat` (beside its `.hea`) or a WFDB record (its `.hea`)."""
    import torch

    p = Path(str(path))
    if p.suffix == ".npy":
        a = np.load(p, allow_pickle=False)
        a = a.reshape(1, -1) if a.ndim == 1 else a.reshape(a.shape[0], -1)
        return torch.tensor(np.concatenate([segments(f"{p.name}[{i}]", r, RATE) for i, r in enumerate(a)]))
    if p.suffix == ".mat":
        x, rate = read_cinc2017(p.parent, p.stem)
    elif p.suffix == ".hea":
        x, rate = read_wfdb(p.parent, p.stem)
    else:
        raise CoupledError(f"cannot read {p.name}: the ECG domain reads .npy (250 Hz), a CinC 2017 .mat or a WFDB .hea")
    return torch.tensor(segments(p.stem, x, rate))
