import json

import numpy as np
import pytest
from scipy.io import wavfile

from coupled.domains.speech.loaders import ears, speech_commands, voicebank_demand, wav_folder
from coupled.errors import CoupledError

from .conftest import tone


def _wav(path, rate=16000, seconds=0.5, f=300.0, amp=0.3):
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, rate, (tone(seconds, rate, f, amp) * 32767).astype(np.int16))


def test_speech_commands_layout(tmp_path):
    root = tmp_path / "speech_commands_v0.02"
    files = {"yes/aa11_nohash_0.wav", "yes/bb22_nohash_0.wav", "yes/cc33_nohash_1.wav", "no/aa11_nohash_0.wav",
             "no/dd44_nohash_0.wav", "go/ee55_nohash_0.wav"}
    for f in files:
        _wav(root / f)
    _wav(root / "_background_noise_" / "white_noise.wav", seconds=2.0)
    (root / "validation_list.txt").write_text("yes/bb22_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("yes/cc33_nohash_1.wav\nno/dd44_nohash_0.wav\n")
    test = speech_commands(root, "test")
    assert [(u.text, u.speaker, u.id) for u in test] == [("no", "dd44", "no/dd44_nohash_0"), ("yes", "cc33", "yes/cc33_nohash_1")]
    assert [u.id for u in speech_commands(root, "val")] == ["yes/bb22_nohash_0"]
    train = speech_commands(root, "train")
    assert {u.id for u in train} == {"go/ee55_nohash_0", "no/aa11_nohash_0", "yes/aa11_nohash_0"}
    assert all(u.task == "keywords" and u.wave.shape == (8000,) for u in train)
    assert [u.id for u in speech_commands(root, "train", words=["go"])] == ["go/ee55_nohash_0"]
    (root / "testing_list.txt").unlink()
    with pytest.raises(CoupledError, match="testing_list.txt is missing"):
        speech_commands(root, "test")


def test_voicebank_demand_layout(tmp_path):
    root = tmp_path / "VoiceBank-DEMAND"
    for spk, k in (("p232", "001"), ("p232", "002"), ("p257", "001")):
        _wav(root / "clean_testset_wav" / f"{spk}_{k}.wav", rate=48000)
        _wav(root / "noisy_testset_wav" / f"{spk}_{k}.wav", rate=48000, f=500.0)
        (root / "testset_txt").mkdir(parents=True, exist_ok=True)
        (root / "testset_txt" / f"{spk}_{k}.txt").write_text(f"Please call Stella {k}.\n")
    items = voicebank_demand(root, "test")
    assert [(u.id, u.speaker, u.text) for u in items][:2] == [("p232_001", "p232", "Please call Stella 001."),
                                                             ("p232_002", "p232", "Please call Stella 002.")]
    assert items[2].speaker == "p257"
    assert items[0].clean.shape == items[0].noisy.shape == (8000,)  # 48 kHz resampled to 16 kHz
    assert not np.allclose(items[0].clean, items[0].noisy)
    with pytest.raises(CoupledError, match="trainset_28spk"):
        voicebank_demand(root, "train")
    (root / "noisy_testset_wav" / "p257_001.wav").unlink()
    with pytest.raises(CoupledError, match="noisy counterpart"):
        voicebank_demand(root, "test")


def test_ears_layout(tmp_path):
    root = tmp_path / "EARS-WHAM"
    for spk, utt in (("p001", "rainbow_01_regular"), ("p001", "emo_joy_sentences"), ("p102", "rainbow_01_regular")):
        for kind in ("clean", "noisy"):
            _wav(root / "test" / kind / spk / f"{utt}.wav", rate=48000, f=300.0 if kind == "clean" else 700.0)
    (root / "transcripts.json").write_text(json.dumps({"rainbow_01_regular": "When the sunlight strikes",
                                                       "p001/emo_joy_sentences": "I am so happy"}))
    items = ears(root, "test")
    assert [(u.id, u.speaker, u.text) for u in items] == [
        ("p001/emo_joy_sentences", "p001", "I am so happy"), ("p001/rainbow_01_regular", "p001", "When the sunlight strikes"),
        ("p102/rainbow_01_regular", "p102", "When the sunlight strikes")]
    with pytest.raises(CoupledError, match="valid/clean"):
        ears(root, "val")


def test_plain_wav_folder(tmp_path):
    _wav(tmp_path / "take1.wav")
    _wav(tmp_path / "take2.wav", rate=22050)
    (tmp_path / "transcripts.txt").write_text("# file words\ntake1.wav three oh seven\ntake2\tyes\n")
    items = wav_folder(tmp_path)
    assert [(u.id, u.text) for u in items] == [("take1", "three oh seven"), ("take2", "yes")]
    assert items[1].wave.shape == (8000,)
    _wav(tmp_path / "take3.wav")
    with pytest.raises(CoupledError, match="take3.wav"):
        wav_folder(tmp_path)
    with pytest.raises(CoupledError, match="transcript file"):
        wav_folder(tmp_path, "nope.txt")
    wavfile.write(tmp_path / "take3.wav", 16000, np.zeros(100, np.int16))
    (tmp_path / "transcripts.txt").write_text("take1 one\ntake2 two\ntake3 three\n")
    with pytest.raises(CoupledError, match="take3.wav is all zeros"):
        wav_folder(tmp_path)


def test_wav_folder_reads_subfolders_any_case_of_wav_and_a_bom(tmp_path):
    """Issue 17: .WAV files and subfolders were skipped silently, and a byte-order mark hid the first line's file."""
    _wav(tmp_path / "alice" / "a1.WAV")
    _wav(tmp_path / "bob" / "b1.wav")
    _wav(tmp_path / "c.Wav")
    (tmp_path / "transcripts.txt").write_bytes("\ufeffalice/a1.WAV one two\nbob/b1 yes\nc.wav digits: seven\n".encode())
    items = wav_folder(tmp_path)
    assert [(u.id, u.speaker, u.text, u.task) for u in items] == [
        ("alice/a1", "alice", "one two", "digits"),  # several words: a string, scored by WER
        ("bob/b1", "bob", "yes", "keywords"),  # one word: a keyword, scored by accuracy
        ("c", "", "seven", "digits")]  # the line's own task wins over the inference
    assert all(u.wave.shape == (8000,) for u in items)
    assert [u.task for u in wav_folder(tmp_path, task="keywords")] == ["keywords", "keywords", "digits"]


@pytest.mark.parametrize("lines, message", [
    ("a.wav one\nb.wav two\na three\n", "transcripts.txt line 3: a.wav already has a transcript on line 1"),
    ("a.wav one\nb.wav two\nsub/z.wav nine\n", "transcripts.txt line 3: no WAV file sub/z.wav"),
    ("a.wav digitz: one\nb.wav two\n", "transcripts.txt line 1: unknown task 'digitz'"),
    ("a.wav\nb.wav two\n", "transcripts.txt line 1: expected '<file> <words>'"),
])
def test_wav_folder_refuses_duplicate_and_orphaned_lines(tmp_path, lines, message):
    _wav(tmp_path / "a.wav")
    _wav(tmp_path / "b.wav")
    (tmp_path / "transcripts.txt").write_text(lines)
    with pytest.raises(CoupledError) as e:
        wav_folder(tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_wav_folder_transcript_that_is_not_utf8(tmp_path):
    _wav(tmp_path / "a.wav")
    (tmp_path / "transcripts.txt").write_bytes(b"a.wav caf\xe9\n")
    with pytest.raises(CoupledError, match="not UTF-8"):
        wav_folder(tmp_path)
