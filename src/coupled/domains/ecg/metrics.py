"""Signal metrics of the ECG domain: the SNR in dB of an estimate against the clean trace (higher is better)."""

from __future__ import annotations


def snr_db(estimate, reference):
    """Per-item SNR [N] in dB of `estimate` against `reference` [N, ...] (`degrade.snr_db`)."""
    from .degrade import snr_db as _snr

    return _snr(estimate, reference).float()
