import numpy as np
import pytest
from scipy.io import wavfile

from coupled.domains.speech.audio import check_audio, read_audio, resample, write_wav
from coupled.errors import CoupledError

from .conftest import tone


@pytest.mark.parametrize("x,rate,match", [
    (tone(), 8000, "8000 Hz.*16000 Hz; resample"),
    (np.stack([tone(), tone()], 1), 16000, "mono"),
    (np.zeros(0, np.float32), 16000, "empty"),
    (np.zeros(16000, np.float32), 16000, "all zeros"),
    (np.where(np.arange(16000) == 5, np.nan, tone()).astype(np.float32), 16000, "NaN"),
    (np.clip(tone(amp=2.0), -1, 1), 16000, "clipped"),
    (tone(amp=3.0), 16000, "clipped"),
])
def test_bad_audio_is_a_one_line_error(x, rate, match):
    with pytest.raises(CoupledError, match=match) as e:
        check_audio(x, rate, name="take.wav")
    assert "\n" not in str(e.value) and "take.wav" in str(e.value)


def test_good_audio_passes_and_other_rates_can_be_resampled():
    x = check_audio(tone(), 16000)
    assert x.dtype == np.float32 and x.shape == (16000,)
    y = check_audio(tone(rate=48000), 48000, resample_to=16000)
    assert y.shape == (16000,)
    assert np.abs(y[100:-100] - tone()[100:-100]).max() < 0.01
    assert check_audio((tone() * 32767).astype(np.int16), 16000).max() == pytest.approx(0.5, abs=1e-3)
    assert resample(tone(rate=22050), 22050).shape == (16000,)


def test_read_and_write_wav(tmp_path):
    write_wav(tmp_path / "a.wav", tone())
    np.testing.assert_allclose(read_audio(tmp_path / "a.wav"), tone(), atol=1 / 32768)
    wavfile.write(tmp_path / "b.wav", 44100, (tone(rate=44100) * 32767).astype(np.int16))
    assert read_audio(tmp_path / "b.wav").shape == (16000,)
    wavfile.write(tmp_path / "s.wav", 16000, np.stack([tone(), tone()], 1))
    with pytest.raises(CoupledError, match="mono"):
        read_audio(tmp_path / "s.wav")
    with pytest.raises(CoupledError, match="no such audio file"):
        read_audio(tmp_path / "missing.wav")
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    with pytest.raises(CoupledError, match="cannot read"):
        read_audio(tmp_path / "bad.wav")
