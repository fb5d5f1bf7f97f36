import numpy as np
import pytest
import torch

from coupled.domains.speech.metrics import (edit_distance, estoi, keyword_accuracy, normalise_text, pesq_wb, si_sdr,
                                            wer)
from coupled.domains.speech.recogniser import encode, greedy_decode
from coupled.errors import CoupledError


def test_edit_distance_hand_cases():
    assert edit_distance([], []) == 0
    assert edit_distance("a b c".split(), "a b c".split()) == 0
    assert edit_distance("a b c".split(), "a x c".split()) == 1  # substitution
    assert edit_distance("a b c".split(), "a c".split()) == 1  # deletion
    assert edit_distance("a b c".split(), "a b b c".split()) == 1  # insertion
    assert edit_distance("a b c".split(), []) == 3
    assert edit_distance([], "a b".split()) == 2
    assert edit_distance("one two three four".split(), "two three four five".split()) == 2


@pytest.mark.parametrize("backend", ["own", "jiwer"])
def test_corpus_wer_is_total_edits_over_total_words(backend):
    refs = ["one two three", "four", "five six"]
    hyps = ["one too three", "", "five six six"]  # 1 sub, 1 del, 1 ins over 6 words
    assert wer(refs, hyps, backend=backend) == pytest.approx(3 / 6)
    # not the mean of per-utterance rates (which would be (1/3 + 1 + 1/2) / 3)
    assert wer(["one two three four five six seven", "eight"], ["one two three four five six seven", "nine"],
               backend=backend) == pytest.approx(1 / 8)
    assert wer(["Three, OH 7!"], ["three oh seven"], backend=backend) == 0.0
    assert wer(["one", ""], ["one", "two"], backend=backend) == pytest.approx(1.0)


def test_own_and_jiwer_agree_on_random_strings():
    rng = np.random.default_rng(0)
    words = "zero one two three four five six seven eight nine oh".split()
    refs = [" ".join(rng.choice(words, rng.integers(1, 8))) for _ in range(200)]
    hyps = [" ".join(rng.choice(words, rng.integers(0, 9))) for _ in range(200)]
    assert wer(refs, hyps, "own") == pytest.approx(wer(refs, hyps, "jiwer"))


def test_normalisation_and_keyword_accuracy():
    assert normalise_text("  Yes!  ") == "yes"
    assert normalise_text("Call 911, don't") == "call nine one one dont"
    assert keyword_accuracy(["yes", "no", "up", "go"], ["Yes", "no no", "", "go"]) == 0.5
    with pytest.raises(CoupledError, match="as many"):
        wer(["a"], ["a", "b"])
    with pytest.raises(CoupledError, match="empty"):
        wer([""], ["a"])


def test_greedy_ctc_decode_hand_cases():
    vocab = ("a", "b", "c")

    def frames(tokens):
        x = torch.full((len(tokens), 4), -5.0)
        x[torch.arange(len(tokens)), torch.tensor(tokens)] = 5.0
        return x

    assert greedy_decode(frames([0, 1, 1, 0, 2, 2, 2, 0]), vocab=vocab) == ["a b"]
    assert greedy_decode(frames([1, 1, 0, 1]), vocab=vocab) == ["a a"]  # a blank separates a repeated word
    assert greedy_decode(frames([1, 1, 1]), vocab=vocab) == ["a"]
    assert greedy_decode(frames([0, 0, 0]), vocab=vocab) == [""]
    batch = torch.stack([frames([3, 0, 3, 1]), frames([2, 2, 0, 3])])
    assert greedy_decode(batch, lengths=[4, 2], vocab=vocab) == ["c c a", "b"]
    assert encode("one oh yes") == [2, 11, 12]
    with pytest.raises(CoupledError, match="vocabulary"):
        encode("one hundred")


def test_si_sdr():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(16000)
    assert si_sdr(0.3 * s, s) > 100  # scale-invariant
    n = rng.standard_normal(16000)
    n -= n @ s / (s @ s) * s  # orthogonal noise at exactly 10 dB
    n *= np.sqrt((s @ s) / (n @ n) / 10)
    assert si_sdr(s + n, s) == pytest.approx(10.0, abs=0.05)
    with pytest.raises(CoupledError, match="equal lengths"):
        si_sdr(s[:10], s)


def test_estoi_reports_short_utterances_as_such(speech_wave):
    value, why = estoi(speech_wave, speech_wave)
    assert value == pytest.approx(1.0, abs=1e-3) and why == ""
    noisy = speech_wave + 0.3 * np.random.default_rng(0).standard_normal(len(speech_wave)).astype(np.float32)
    assert estoi(noisy, speech_wave)[0] < 0.9
    value, why = estoi(speech_wave[:4000], speech_wave[:4000])
    assert value is None and "too short" in why


def test_pesq_is_optional(speech_wave):
    value, why = pesq_wb(speech_wave, speech_wave)
    try:
        import pesq  # noqa: F401
        assert value is not None and value > 4
    except ImportError:
        assert value is None and "pip install pesq" in why
