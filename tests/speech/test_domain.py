import numpy as np
import pytest
import torch

from coupled.domains.speech import SPEECH
from coupled.domains.speech.recogniser import CTCRecogniser
from coupled.errors import CoupledError

from .conftest import tone


def test_domain_interface(tiny_corpus, tmp_path):
    assert SPEECH.name == "speech" and SPEECH.sample_rate == 16000
    assert SPEECH.corruptions.names() == ["babble_noise", "pink_noise", "reverb", "reverb_noise", "white_noise"]
    assert SPEECH.networks["classifier"]["ctc_conv"] is CTCRecogniser
    net = SPEECH.build_network("classifier", "ctc_conv", channels=8, dilations=[1])
    assert net(torch.zeros(1, 8000) + 0.01).shape[-1] == 22
    with pytest.raises(CoupledError, match="valid: ctc_conv"):
        SPEECH.build_network("classifier", "transformer")
    with pytest.raises(CoupledError, match="valid: classifier"):
        SPEECH.build_network("signal_denoiser", "unet")
    logits = torch.full((1, 3, 22), -1.0)
    logits[0, 0, 2] = logits[0, 1, 0] = logits[0, 2, 11] = 1.0
    assert SPEECH.readout(logits) == ["one oh"]
    assert SPEECH.task_score("digits", ["one two"], ["one"]) == 0.5
    assert SPEECH.task_score("keywords", ["yes"], ["yes"]) == 1.0
    assert SPEECH.task_metric("digits") == "wer"
    with pytest.raises(CoupledError, match="valid: digits, keywords"):
        SPEECH.task_score("phones", [], [])
    assert set(SPEECH.signal_metrics) == {"si_sdr", "estoi", "pesq_wb"}
    assert len(SPEECH.load_split(tiny_corpus, "val", tasks=("keywords",))) == 2 * 21
    noisy = SPEECH.corrupt("white_noise", tone(), 10.0, 0)
    assert noisy.shape == (16000,) and not np.array_equal(noisy, tone())
    from scipy.io import wavfile

    wavfile.write(tmp_path / "x.wav", 8000, (tone(rate=8000) * 32767).astype(np.int16))
    assert SPEECH.read_input(tmp_path / "x.wav").shape == (16000,)
