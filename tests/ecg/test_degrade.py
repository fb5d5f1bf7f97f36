"""Each ECG degradation: seeded per item, its level measured back as SNR within 0.1 dB."""

import math

import pytest
import torch

from coupled.domains.ecg import synth
from coupled.domains.ecg.degrade import CORRUPTIONS, NAMES, snr_db, snr_of_severity
from coupled.domains.registry import get_domain


@pytest.fixture(scope="module")
def clean():
    return torch.tensor(synth.make_split("val", 0, patients=6, segments=1)[0])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("severity", [0.25, 1.0, 3.0])
def test_snr_is_measured_back_within_a_tenth_of_a_db(clean, name, severity):
    d = get_domain("ecg").corrupt_set(clean, name, severity, seed=3)
    assert d.shape == clean.shape and d.dtype == torch.float32
    snr = snr_db(d, clean)
    assert torch.all((snr - snr_of_severity(severity)).abs() < 0.1), snr


@pytest.mark.parametrize("name", NAMES)
def test_seeded_per_item_and_independent_of_batching(clean, name):
    dom = get_domain("ecg")
    whole = dom.corrupt_set(clean, name, 1.0, seed=5)
    again = dom.corrupt_set(clean, name, 1.0, seed=5)
    part = dom.corrupt_set(clean[3:], name, 1.0, seed=5, first_index=3)
    other = dom.corrupt_set(clean, name, 1.0, seed=6)
    assert torch.equal(whole, again) and torch.equal(whole[3:], part)
    assert not torch.allclose(whole, other)


def test_the_degradations_have_their_spectral_character(clean):
    """Wander and motion below 5 Hz, EMG above 20 Hz, powerline at 50 or 60 Hz (and its harmonic)."""
    x = clean[:1]
    f = torch.fft.rfftfreq(x.shape[-1], 1 / synth.RATE)

    def share(name, lo, hi):
        n = (get_domain("ecg").corrupt_set(x, name, 1.0, seed=0) - x)[0, 0].double()
        p = torch.fft.rfft(n).abs() ** 2
        return float(p[(f >= lo) & (f <= hi)].sum() / p.sum())

    assert share("baseline_wander", 0, 1.0) > 0.95
    assert share("electrode_motion", 0, 5.5) > 0.99
    assert share("emg", 19.5, 100.5) > 0.99
    assert share("powerline", 49.5, 50.5) + share("powerline", 59.5, 60.5) > 0.6
    assert share("powerline", 99.5, 100.5) + share("powerline", 119.5, 120.5) > 0.005


def test_severity_is_a_noise_to_signal_ratio():
    assert math.isclose(snr_of_severity(1.0), 0.0) and math.isclose(snr_of_severity(0.1), 20.0)
