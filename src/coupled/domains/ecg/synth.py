"""Synthetic single-lead ECG: a sum-of-Gaussians beat model driven by an explicit RR sequence.

The beat model is the morphology of ECGSYN (P. E. McSharry, G. D. Clifford, L. Tarassenko, L. A. Smith, "A
dynamical model for generating synthetic electrocardiogram signals", IEEE Trans. Biomed. Eng. 50(3), 2003; the
simulator neurokit2's `ecg_simulate(method="ecgsyn")` wraps): each beat is five Gaussian waves P, Q, R, S, T
around its R peak, with wave widths and the QT interval scaled with sqrt(RR) (Bazett) as ECGSYN scales its
angles. Written here in the time domain rather than as ECGSYN's ODE because the classes need explicit control of
every RR interval (AF's irregular rhythm, a premature beat's compensatory pause) and of the P wave (absent in AF,
late in first-degree AV block), which ECGSYN's spectral RR process does not expose; it is also ~100x faster
(the whole corpus builds in seconds on one core, so it is generated on the fly, never cached).

Classes, in the spirit of PhysioNet/CinC 2017 (normal, AF, other):
  0 normal sinus rhythm: 58-98 bpm, small heart-rate variability (respiratory sinus arrhythmia), P waves, PR 0.12-0.20 s;
  1 atrial fibrillation: 65-150 bpm, irregularly irregular RR (coefficient of variation 0.12-0.30), no P wave,
    fibrillatory f-waves (4-9 Hz, amplitude 3-12% of R);
  2 other: one of sinus bradycardia (36-50 bpm), sinus tachycardia (108-150 bpm), first-degree AV block
    (PR 0.26-0.38 s) or premature ventricular contractions (wide, tall, P-less beats with a compensatory pause).

A patient is a draw of morphology (wave amplitudes and widths, R amplitude, T polarity), heart rate and PR interval;
each patient has one rhythm and gives `segments_per_patient` 10-second segments (their own RR draws). Train,
validation and test hold different patients. What it cannot capture: real morphological diversity (bundle branch
blocks, ST changes, lead placement), paroxysmal rhythms that change within a record, atrial flutter, real sensor
transfer functions, and the label noise of real annotations; the "other" class here is four clean textbook rhythms,
far narrower than PhysioNet 2017's "other".
"""

from __future__ import annotations

import functools

import numpy as np

from ...seeds import sequence

RATE = 250  # samples per second: mains at 50/60 Hz and its first harmonic (100/120 Hz) lie below Nyquist
SECONDS = 10.0
LENGTH = int(RATE * SECONDS)
CLASS_NAMES = ("normal", "af", "other")
OTHER_KINDS = ("bradycardia", "tachycardia", "av_block", "pvc")
_ECG_WORD = 0xEC6  # names the ECG corpus among the "data" purpose's streams
# per split: (first patient id, patients, segments per patient); patients never repeat across splits
SPLITS = {"train": (0, 600, 3), "val": (100_000, 100, 3), "test": (200_000, 200, 3)}
# robust per-record scaling: the 99.5th percentile of |x - median| maps to this, then clipped to [-1, 1]
SCALE_TARGET = 0.6


def robust_scale(x: np.ndarray) -> np.ndarray:
    """Each record of `x` [..., L] centred on its median and scaled so the 99.5th percentile of its absolute
    deviation is `SCALE_TARGET`, then clipped to [-1, 1] (a few outlying samples cannot shrink the rest)."""
    x = np.asarray(x, dtype=np.float64)
    c = x - np.median(x, axis=-1, keepdims=True)
    q = np.quantile(np.abs(c), 0.995, axis=-1, keepdims=True)
    return np.clip(SCALE_TARGET * c / np.maximum(q, 1e-12), -1.0, 1.0).astype(np.float32)


def _patient(rng: np.random.Generator, label: int) -> dict:
    """One patient's rhythm and morphology."""
    p = {"label": label, "other": None,
         "r_amp": rng.uniform(0.8, 1.6), "p_amp": rng.uniform(0.08, 0.2), "q_amp": -rng.uniform(0.05, 0.2),
         "s_amp": -rng.uniform(0.1, 0.4), "t_amp": rng.uniform(0.15, 0.45) * rng.choice([1.0, 1.0, 1.0, -1.0]),
         "qrs_w": rng.uniform(0.008, 0.013), "p_w": rng.uniform(0.02, 0.035), "t_w": rng.uniform(0.04, 0.065),
         "qtc": rng.uniform(0.36, 0.44), "pr": rng.uniform(0.12, 0.20), "hrv": rng.uniform(0.01, 0.04),
         "resp_hz": rng.uniform(0.15, 0.4), "hr": rng.uniform(58, 98)}
    if label == 1:
        p.update(hr=rng.uniform(65, 150), cv=rng.uniform(0.12, 0.30), f_amp=rng.uniform(0.03, 0.12),
                 f_hz=rng.uniform(4.0, 9.0))
    elif label == 2:
        kind = OTHER_KINDS[int(rng.integers(len(OTHER_KINDS)))]
        p["other"] = kind
        if kind == "bradycardia":
            p["hr"] = rng.uniform(36, 50)
        elif kind == "tachycardia":
            p["hr"] = rng.uniform(108, 150)
        elif kind == "av_block":
            p["pr"] = rng.uniform(0.26, 0.38)
        else:
            p["pvc_rate"] = rng.uniform(0.15, 0.3)  # share of beats that are premature ventricular
    return p


def _gauss(t: np.ndarray, centre: np.ndarray, width: np.ndarray, amp: np.ndarray) -> np.ndarray:
    """sum_k amp_k exp(-(t - centre_k)^2 / (2 width_k^2)) over beats k, only within 5 widths (sparse, fast)."""
    out = np.zeros_like(t)
    for c, w, a in zip(centre, width, amp):
        lo, hi = max(0, int((c - 5 * w) * RATE)), min(len(t), int((c + 5 * w) * RATE) + 2)
        if hi > lo:
            out[lo:hi] += a * np.exp(-((t[lo:hi] - c) ** 2) / (2 * w * w))
    return out


def segment(rng: np.random.Generator, p: dict) -> np.ndarray:
    """One 10-second segment [LENGTH] (millivolt-like units, before scaling) of patient `p`."""
    t = np.arange(LENGTH) / RATE
    mean_rr = 60.0 / p["hr"]
    # R-peak times from before 0 to after the end, so the segment starts and ends mid-rhythm
    peaks, kinds, now = [], [], -rng.uniform(0, mean_rr) - mean_rr
    resp_phase = rng.uniform(0, 2 * np.pi)
    while now < SECONDS + 1.0:
        if p["label"] == 1:  # irregularly irregular: independent log-normal intervals
            rr = mean_rr * np.exp(rng.normal(-0.5 * p["cv"] ** 2, p["cv"]))
        else:
            rr = mean_rr * (1 + p["hrv"] * np.sin(2 * np.pi * p["resp_hz"] * now + resp_phase) + 0.01 * rng.normal())
        kind = 0
        if p["other"] == "pvc" and kinds and kinds[-1] == 0 and rng.random() < p["pvc_rate"]:
            kind = 1  # premature: comes early, then a compensatory pause
            rr_pvc = rr * rng.uniform(0.55, 0.7)
            peaks.append(now + rr_pvc)
            kinds.append(1)
            now = now + 2 * rr
            continue
        now = now + max(rr, 0.25)
        peaks.append(now)
        kinds.append(kind)
    peaks, kinds = np.array(peaks), np.array(kinds)
    rr_prev = np.diff(np.concatenate([[peaks[0] - mean_rr], peaks]))
    s = np.sqrt(np.clip(rr_prev, 0.3, 2.0))
    normal = kinds == 0
    n = len(peaks)
    jitter = 1 + 0.03 * rng.normal(size=n)  # beat-to-beat amplitude variation
    x = np.zeros(LENGTH)
    # QRS: ventricular (PVC) beats are wider, taller, with a discordant T wave
    qrs_w = np.where(normal, p["qrs_w"], 3.0 * p["qrs_w"])
    r_amp = np.where(normal, p["r_amp"], 1.4 * p["r_amp"]) * jitter
    x += _gauss(t, peaks - 2.5 * qrs_w, qrs_w, np.full(n, p["q_amp"]) * jitter)
    x += _gauss(t, peaks, qrs_w, r_amp)
    x += _gauss(t, peaks + 2.5 * qrs_w, qrs_w, np.where(normal, p["s_amp"], 2.0 * p["s_amp"]) * jitter)
    qt = p["qtc"] * s
    x += _gauss(t, peaks + 0.7 * qt, p["t_w"] * s, np.where(normal, p["t_amp"], -1.5 * abs(p["t_amp"])) * jitter)
    if p["label"] != 1:  # sinus beats have a P wave at PR before R
        x += _gauss(t[:], peaks[normal] - p["pr"], np.full(normal.sum(), p["p_w"]), np.full(normal.sum(), p["p_amp"]))
    else:  # fibrillatory waves: a wandering 4-9 Hz oscillation with slowly varying amplitude
        f = p["f_hz"] * (1 + 0.1 * np.cumsum(rng.normal(size=LENGTH)) / np.sqrt(LENGTH))
        phase = 2 * np.pi * np.cumsum(f) / RATE + rng.uniform(0, 2 * np.pi)
        env = 1 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi))
        x += p["f_amp"] * p["r_amp"] * env * np.sin(phase)
    return x + 0.005 * rng.normal(size=LENGTH)  # a trace of measurement noise


def patient_rng(seed: int, patient: int) -> np.random.Generator:
    """The generator of synthetic patient `patient` under data seed `seed` (`coupled.seeds`, purpose "data")."""
    return np.random.default_rng(sequence("data", int(seed), _ECG_WORD, int(patient)))


def make_split(split: str, seed: int = 0, patients: int | None = None, segments: int | None = None):
    """(signals float32 [N, 1, LENGTH] robustly scaled to [-1, 1], labels int64 [N], patient ids int64 [N],
    other-rhythm kinds [N] ('' unless class 2)) of `split` ("train", "val", "test"); patients are balanced over the
    three classes (patient i has class i % 3). `patients` / `segments` override the split's size (tests)."""
    first, n_pat, n_seg = SPLITS[split]
    n_pat = n_pat if patients is None else int(patients)
    n_seg = n_seg if segments is None else int(segments)
    xs, ys, ids, kinds = [], [], [], []
    for i in range(n_pat):
        pid = first + i
        rng = patient_rng(seed, pid)
        p = _patient(rng, i % 3)
        for _ in range(n_seg):
            xs.append(segment(rng, p))
            ys.append(p["label"])
            ids.append(pid)
            kinds.append(p["other"] or "")
    signals = robust_scale(np.stack(xs))[:, None, :]
    return signals, np.array(ys, dtype=np.int64), np.array(ids, dtype=np.int64), kinds


@functools.lru_cache(maxsize=6)
def cached_split(split: str, seed: int = 0, patients: int | None = None):
    """`make_split(split, seed, patients)`, kept for the process (the stages of one `coupled train` share it)."""
    return make_split(split, seed, patients)
