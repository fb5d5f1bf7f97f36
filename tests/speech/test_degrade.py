import numpy as np
import pytest

from coupled.domains.speech.degrade import (DEGRADATIONS, Registry, Room, active_power, degrade, reverberate, room_bank,
                                            schroeder_rt60, simulate_room, snr_db)
from coupled.errors import CoupledError


@pytest.mark.parametrize("name", ["white_noise", "pink_noise", "babble_noise"])
@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.5, 20.0])
def test_noise_snr_measured_back_within_a_tenth_of_a_db(name, snr, speech_wave, tiny_corpus):
    from coupled.domains.speech.corpus import load_split

    pool = [u.wave for u in load_split(tiny_corpus, "val", tasks=("digits",))]
    noisy = degrade(name, speech_wave, snr, [0, 1], {"babble": pool})
    assert noisy.shape == speech_wave.shape and noisy.dtype == np.float32
    assert abs(snr_db(speech_wave, noisy - speech_wave) - snr) < 0.1
    # deterministic for a seed, different for another
    np.testing.assert_array_equal(noisy, degrade(name, speech_wave, snr, [0, 1], {"babble": pool}))
    assert not np.array_equal(noisy, degrade(name, speech_wave, snr, [0, 2], {"babble": pool}))


def test_snr_is_against_active_speech_not_silence(speech_wave):
    padded = np.concatenate([np.zeros(32000, np.float32), speech_wave, np.zeros(32000, np.float32)])
    assert abs(active_power(padded) - active_power(speech_wave)) / active_power(speech_wave) < 0.05
    assert np.mean(padded ** 2) < 0.7 * active_power(padded)


def test_pink_noise_falls_3db_per_octave():
    x = degrade("pink_noise", np.ones(2 ** 17, np.float32) * 0.1, 0.0, 0) - 0.1
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 16000)
    band = lambda lo: spec[(f >= lo) & (f < 2 * lo)].mean()  # noqa: E731
    assert abs(10 * np.log10(band(500) / band(1000)) - 3.0) < 0.5


def test_babble_without_a_pool_is_an_error(speech_wave):
    with pytest.raises(CoupledError, match="babble"):
        degrade("babble_noise", speech_wave, 0.0, 0)


def _independent_rt60(rir, rate=16000):
    """T30 by least squares on the Schroeder curve between -5 and -35 dB (a different fit range than the
    library's T20), on the impulse response's energy."""
    e = np.cumsum(rir[::-1].astype(np.float64) ** 2)[::-1]
    edc = 10 * np.log10(e / e[0])
    sel = (edc <= -5) & (edc >= -35)
    t = np.arange(len(rir))[sel] / rate
    A = np.stack([t, np.ones_like(t)], 1)
    slope = np.linalg.lstsq(A, edc[sel], rcond=None)[0][0]
    return -60 / slope


def test_schroeder_on_an_exact_exponential_decay():
    rate, rt = 16000, 0.8
    t = np.arange(int(1.5 * rate)) / rate
    rir = np.random.default_rng(0).standard_normal(len(t)) * 10 ** (-3 * t / rt)
    assert abs(schroeder_rt60(rir) - rt) < 0.03


def test_room_bank_records_measured_rt60(tmp_path):
    rooms = room_bank((0.4, 1.0, 1.5), per_rt60=2, seed=0, cache=tmp_path)
    assert len(rooms) == 6
    for r in rooms:
        assert r.rt60 == pytest.approx(schroeder_rt60(r.rir), rel=1e-9)
        assert abs(_independent_rt60(r.rir) - r.rt60) / r.rt60 < 0.15
        assert 0.2 < r.rt60 < 2.0 and r.rir[r.direct] == pytest.approx(1.0)
    rt = {t: np.mean([r.rt60 for r in rooms if r.rt60_target == t]) for t in (0.4, 1.0, 1.5)}
    assert rt[0.4] < rt[1.0] < rt[1.5]
    cached = room_bank((0.4, 1.0, 1.5), per_rt60=2, seed=0, cache=tmp_path)  # from the .npz
    assert [r.rt60 for r in cached] == [r.rt60 for r in rooms]
    np.testing.assert_array_equal(cached[3].rir, rooms[3].rir)


def test_reverb_is_aligned_to_the_direct_path(speech_wave):
    delta = np.zeros(400, np.float32)
    delta[37] = 1.0
    np.testing.assert_allclose(reverberate(speech_wave, Room(delta, 0.0, 0.0, 37)), speech_wave, atol=1e-6)
    room = simulate_room(0.7, np.random.default_rng(3))
    wet = degrade("reverb", speech_wave, room, 0)
    assert wet.shape == speech_wave.shape
    # the dry target correlates best at lag 0
    lags = range(-40, 41, 4)
    corr = [np.dot(np.roll(speech_wave, k), wet) for k in lags]
    assert list(lags)[int(np.argmax(corr))] == 0
    both = degrade("reverb_noise", speech_wave, (room, 5.0), 0)
    assert abs(snr_db(speech_wave, both - wet) - 5.0) < 0.1


def test_registry_rejects_duplicates_and_names_valid_entries():
    with pytest.raises(CoupledError, match="already registered"):
        DEGRADATIONS.register("white_noise", lambda *a: None)
    with pytest.raises(CoupledError, match="valid: babble_noise, pink_noise, reverb, reverb_noise, white_noise"):
        DEGRADATIONS["whit_noise"]
    r = Registry()
    r.register("mine", lambda s, level, rng, ctx=None: s * level)
    assert r.names() == ["mine"]
