"""The Whisper adapter on a tiny randomly initialised Whisper built from a config (no download)."""

import numpy as np
import pytest
import torch

from coupled.domains.speech.corpus import WORDS
from coupled.errors import CoupledError

transformers = pytest.importorskip("transformers")

from coupled.domains.speech.whisper import EOT, WhisperAdapter, decode_steps  # noqa: E402

WORD_TOKENS = {w: 10 + i for i, w in enumerate(WORDS)}


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.WhisperConfig(vocab_size=64, num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
                                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                                     decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=32,
                                     decoder_start_token_id=1, pad_token_id=2, eos_token_id=2, bos_token_id=2)
    folder = tmp_path_factory.mktemp("whisper")
    transformers.WhisperForConditionalGeneration(cfg).save_pretrained(folder)
    transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    assert list(folder.glob("*.safetensors"))
    return WhisperAdapter.from_pretrained(folder, word_tokens=WORD_TOKENS, prompt=[1, 3], eot=2)


def test_shapes_causality_and_scale(adapter, speech_wave):
    waves = [speech_wave, speech_wave[: len(speech_wave) // 2]]
    logits = adapter.step_logits(waves, [[2, 3, 4], [5]])
    assert logits.shape == (2, 4, len(WORDS) + 1)
    # step s depends on the prefix up to s only: changing later words leaves earlier steps alone
    other = adapter.step_logits(waves, [[2, 9, 9], [5]])
    torch.testing.assert_close(other[0, :2], logits[0, :2])
    assert not torch.allclose(other[0, 2:], logits[0, 2:])
    # the front end sees peak-normalised audio: a quieter copy gives the same logits (spec 7.8)
    torch.testing.assert_close(adapter.step_logits([0.1 * speech_wave], [[2]]), adapter.step_logits([speech_wave], [[2]]))


def test_clean_and_degraded_logits_share_one_prefix(adapter, speech_wave):
    rng = np.random.default_rng(0)
    noisy = (speech_wave + 0.3 * rng.standard_normal(len(speech_wave))).astype(np.float32)
    clean_l, noisy_l, prefix = adapter.aligned_logits([speech_wave], [noisy])
    assert clean_l.shape == noisy_l.shape == (1, len(prefix[0]) + 1, len(WORDS) + 1)
    # the greedy prefix is what the clean logits say, step by step, then end-of-text
    steps = clean_l[0].argmax(-1).tolist()
    assert steps[: len(prefix[0])] == prefix[0] and (len(prefix[0]) == 8 or steps[-1] == EOT)
    assert not torch.allclose(clean_l, noisy_l)
    text = adapter.transcribe([speech_wave])[0]
    assert text == " ".join(WORDS[c - 1] for c in prefix[0])
    assert decode_steps(clean_l)[0].startswith(text)
    with pytest.raises(CoupledError, match="prefix_from"):
        adapter.aligned_logits([speech_wave], [noisy], prefix_from="both")


def test_missing_words_and_folder(adapter, tmp_path):
    with pytest.raises(CoupledError, match="word_tokens lacks"):
        WhisperAdapter(adapter.model, adapter.fe, {"one": 3}, [1], 2)
    with pytest.raises(CoupledError, match="no Whisper model folder"):
        WhisperAdapter.from_pretrained(tmp_path / "none", word_tokens=WORD_TOKENS, prompt=[1], eot=2)
    assert decode_steps(torch.eye(len(WORDS) + 1)[[3, 1, 0, 5]][None]) == ["two zero"]
