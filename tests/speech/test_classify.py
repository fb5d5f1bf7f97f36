"""`coupled classify FILE.wav --checkpoint checkpoints/speech`: the bundled recogniser transcribes a user's WAV
files through the domain's own reader; clipped audio is refused unless --allow-clipped."""

import numpy as np
import pytest
from scipy.io import wavfile

from coupled.cli import main
from coupled.domains.speech.corpus import load_split


@pytest.fixture(scope="module")
def wavs(tiny_corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("wavs")
    utts = load_split(tiny_corpus, "test")
    digits = next(u for u in utts if u.task == "digits" and len(u.text.split()) >= 3)
    word = next(u for u in utts if u.task == "keywords" and u.text == "yes")
    for name, u in (("digits.wav", digits), ("word.wav", word)):
        wavfile.write(folder / name, 16000, u.audio)
    loud = np.clip(digits.wave * 8, -1, 1)  # a third of the samples at full scale
    wavfile.write(folder / "clipped.wav", 16000, (loud * 32767).astype(np.int16))
    return folder, digits.text, word.text


def test_wav_files_are_transcribed_by_the_bundled_recogniser(wavs, capsys):
    folder, digits, word = wavs
    assert main(["classify", str(folder / "digits.wav"), str(folder / "word.wav"), "--checkpoint", "checkpoints/speech"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("# file\ttranscript")
    assert out[1] == f"{folder / 'digits.wav'}\t{digits}"
    assert out[2] == f"{folder / 'word.wav'}\t{word}\tkeyword={word}"


def test_clipped_audio_is_refused_unless_allowed(wavs, capsys):
    folder, digits, _ = wavs
    assert main(["classify", str(folder / "clipped.wav"), "--checkpoint", "checkpoints/speech"]) == 2
    assert "is clipped" in capsys.readouterr().out
    assert main(["classify", str(folder / "clipped.wav"), "--checkpoint", "checkpoints/speech", "--allow-clipped"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


@pytest.mark.parametrize("argv, message", [
    (["--method", "parallel"], "coupled classify runs the frozen recogniser alone"),
    (["--polarity", "invert"], "options of image files"),
    (["--corruption", "reverb", "--severity", "1"], "white_noise or pink_noise"),
])
def test_speech_classify_options_are_one_line_errors(wavs, capsys, argv, message):
    folder, _, _ = wavs
    assert main(["classify", str(folder / "digits.wav"), "--checkpoint", "checkpoints/speech", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_allow_clipped_is_refused_for_images(capsys, tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "d.png")
    assert main(["classify", str(tmp_path / "d.png"), "--checkpoint", "checkpoints/mnist", "--allow-clipped"]) == 2
    assert "--allow-clipped applies to audio files" in capsys.readouterr().err
