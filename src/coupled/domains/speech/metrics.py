"""Speech metrics: corpus-level WER after text normalisation, keyword accuracy, SI-SDR, ESTOI, PESQ-WB.

WER uses jiwer when it is installed and an own word-level Levenshtein otherwise (the two agree; tested).
ESTOI needs enough 30-band frames after pystoi drops silent frames: too-short utterances come back as
`None` with the reason, never as a number. PESQ-WB needs the optional `pesq` package.
"""

from __future__ import annotations

import re

import numpy as np

from ...errors import CoupledError
from .audio import SAMPLE_RATE

_NUMBERS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six", "7": "seven",
            "8": "eight", "9": "nine"}


def normalise_text(text: str) -> str:
    """Lower case, punctuation dropped, digits spelled out ("3" -> "three"), whitespace collapsed."""
    text = text.lower()
    text = re.sub(r"\d", lambda m: f" {_NUMBERS[m.group()]} ", text)
    text = re.sub(r"[^a-z' ]+", " ", text).replace("'", "")
    return " ".join(text.split())


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(refs: list[str], hyps: list[str], backend: str = "auto") -> float:
    """Corpus-level word error rate: total edits over total reference words, after `normalise_text`.

    Args:
        refs, hyps: reference and hypothesis transcripts, paired.
        backend: "jiwer", "own" or "auto" (jiwer when installed).
    """
    if len(refs) != len(hyps):
        raise CoupledError(f"WER needs as many hypotheses as references, got {len(hyps)} and {len(refs)}")
    refs = [normalise_text(r) for r in refs]
    hyps = [normalise_text(h) for h in hyps]
    n_words = sum(len(r.split()) for r in refs)
    if n_words == 0:
        raise CoupledError("WER is undefined when every reference transcript is empty")
    if backend in ("auto", "jiwer"):
        try:
            import jiwer

            # jiwer refuses empty references; they contribute their hypothesis words as insertions
            keep = [i for i, r in enumerate(refs) if r]
            ins = sum(len(hyps[i].split()) for i, r in enumerate(refs) if not r)
            o = jiwer.process_words([refs[i] for i in keep], [hyps[i] for i in keep])
            return (o.substitutions + o.deletions + o.insertions + ins) / n_words
        except ImportError:
            if backend == "jiwer":
                raise CoupledError("backend 'jiwer' needs jiwer: pip install jiwer") from None
    return sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps)) / n_words


def word_errors(refs: list[str], hyps: list[str]) -> np.ndarray:
    """Per-utterance (edits, reference words) [N, 2] after `normalise_text`: their column sums' ratio is the
    corpus WER (what a ratio bootstrap resamples)."""
    if len(refs) != len(hyps):
        raise CoupledError(f"WER needs as many hypotheses as references, got {len(hyps)} and {len(refs)}")
    out = np.zeros((len(refs), 2))
    for i, (r, h) in enumerate(zip(refs, hyps)):
        r, h = normalise_text(r).split(), normalise_text(h).split()
        out[i] = edit_distance(r, h), len(r)
    return out


def keyword_hits(refs: list[str], hyps: list[str]) -> np.ndarray:
    """Per-utterance 1.0 where the normalised transcript is exactly the reference word, else 0.0."""
    return np.array([float(normalise_text(r) == normalise_text(h)) for r, h in zip(refs, hyps)])


def keyword_accuracy(refs: list[str], hyps: list[str]) -> float:
    """Fraction of utterances whose normalised transcript is exactly the reference word."""
    if not refs:
        raise CoupledError("keyword accuracy of zero utterances is undefined")
    return float(np.mean([normalise_text(r) == normalise_text(h) for r, h in zip(refs, hyps)]))


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019), both signals zero-meaned."""
    est = np.asarray(estimate, np.float64) - np.mean(estimate)
    ref = np.asarray(reference, np.float64) - np.mean(reference)
    if len(est) != len(ref):
        raise CoupledError(f"SI-SDR needs equal lengths, got {len(est)} and {len(ref)} samples")
    target = (est @ ref) / (ref @ ref + 1e-12) * ref
    return float(10 * np.log10((target @ target + 1e-12) / ((est - target) @ (est - target) + 1e-12)))


def estoi(estimate: np.ndarray, reference: np.ndarray, rate: int = SAMPLE_RATE) -> tuple[float | None, str]:
    """Extended STOI (pystoi, at the true sample rate: spec 7.9). Returns (value, "") or (None, reason)."""
    try:
        from pystoi import stoi
    except ImportError:
        return None, "pystoi not installed (pip install pystoi)"
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = stoi(np.asarray(reference, np.float64), np.asarray(estimate, np.float64), rate, extended=True)
        except (ValueError, IndexError) as e:
            return None, f"too short for ESTOI ({e})"
    if any("Not enough" in str(w.message) for w in caught) or not np.isfinite(value):
        return None, "too short for ESTOI (fewer than 30 active 10 kHz frames)"
    return float(value), ""


def pesq_wb(estimate: np.ndarray, reference: np.ndarray, rate: int = SAMPLE_RATE) -> tuple[float | None, str]:
    """Wide-band PESQ (the optional `pesq` package). Returns (value, "") or (None, reason)."""
    try:
        from pesq import pesq
    except ImportError:
        return None, "pesq not installed (pip install pesq; it builds from source)"
    try:
        return float(pesq(rate, np.asarray(reference, np.float64), np.asarray(estimate, np.float64), "wb")), ""
    except Exception as e:  # the C library signals 'no utterance detected' and friends as exceptions
        return None, f"PESQ failed ({type(e).__name__}: {e})"
