"""Speech domain: a synthetic spoken-digit corpus (eSpeak NG), its degradations (noise, reverberation), a frozen
word-level CTC recogniser, the speech metrics and loaders for real corpora.

`SPEECH` is the one object describing the domain, shaped for the `Domain` registry of the domains issue:
data splits, a degradation registry, networks by role, signal metrics, the readout (greedy CTC decode of
`[B, T, K]` frame logits), the task scores (WER, accuracy) and reading a user's audio file. Submodules load
on first use, so importing the domain costs nothing until it is used.
"""

from __future__ import annotations

from .domain import SPEECH, SpeechDomain

__all__ = ["SPEECH", "SpeechDomain"]
