import json
from pathlib import Path

import numpy as np
import pytest
import torch

from coupled.domains.speech.corpus import WORDS, load_split
from coupled.domains.speech.recogniser import (CTCRecogniser, RecogniserConfig, collate, load_recogniser,
                                               save_recogniser, transcribe)
from coupled.domains.speech.train import train_recogniser
from coupled.errors import CoupledError

TINY_NET = {"channels": 24, "dilations": [1, 2], "n_mels": 32}
BUNDLED = Path(__file__).parents[2] / "checkpoints" / "speech"


def test_shapes_and_batch_independence():
    torch.manual_seed(0)
    m = CTCRecogniser(RecogniserConfig(**{**TINY_NET, "dilations": (1, 2)})).eval()
    with torch.no_grad():  # LayerNorm starts with bias 0, which hides padding that leaks through a norm (issue 21)
        for p in m.parameters():
            if p.dim() == 1:
                p.normal_(0, 1)
    g = torch.Generator().manual_seed(0)
    waves = [0.1 * torch.randn(n, generator=g).numpy() for n in (16000, 9000, 30000)]
    x, n = collate(waves)
    with torch.no_grad():
        logits = m(x, n)
        assert logits.shape == (3, int(m.frames(n).max()), len(WORDS) + 1)
        for i, w in enumerate(waves):  # an utterance's logits do not depend on its batch
            alone = m(torch.as_tensor(w)[None])
            torch.testing.assert_close(logits[i, : alone.shape[1]], alone[0], atol=1e-4, rtol=1e-4)
        # scale-invariant front end
        torch.testing.assert_close(m(x[:1] * 0.1, n[:1]), m(x[:1], n[:1]), atol=1e-3, rtol=1e-3)


def test_bundled_recogniser_logits_do_not_depend_on_the_batch(tiny_corpus):
    """Issue 21: every test utterance gives the same logits alone and batched beside a much longer one."""
    m = load_recogniser(BUNDLED)
    waves = [u.wave for u in load_split(tiny_corpus, "test")]
    longer = np.concatenate(sorted(waves, key=len)[-4:])  # real speech, longer than twice any one utterance
    assert len(longer) > 2 * max(len(w) for w in waves)
    texts, logits = transcribe(m, waves, return_logits=True)  # all in one batch too, padded to the longest
    for w, text, in_batch in zip(waves, texts, logits):
        [alone_text], [alone] = transcribe(m, [w], return_logits=True)
        _, [beside_longer, _] = transcribe(m, [w, longer], return_logits=True)
        assert text == alone_text and beside_longer.shape == in_batch.shape == alone.shape
        torch.testing.assert_close(beside_longer, alone, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(in_batch, alone, atol=1e-4, rtol=1e-4)


def test_config_round_trip_and_unknown_option(tmp_path):
    cfg = RecogniserConfig(channels=16, dilations=(1,))
    m = CTCRecogniser(cfg)
    save_recogniser(m, tmp_path, extra={"note": "x"})
    meta = json.loads((tmp_path / "classifier.json").read_text())
    assert meta["net"]["channels"] == 16 and meta["note"] == "x" and meta["domain"] == "speech"
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))
    back = load_recogniser(tmp_path)
    assert back.cfg == cfg and not any(p.requires_grad for p in back.parameters())
    for k, v in m.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v)
    with pytest.raises(CoupledError, match="valid:.*channels"):
        RecogniserConfig.from_dict({"chanels": 3})
    with pytest.raises(CoupledError, match="no speech recogniser"):
        load_recogniser(tmp_path / "nothing")


def test_a_short_training_learns_and_bundles(tiny_corpus, tmp_path):
    res = train_recogniser(tiny_corpus, tmp_path, {"net": TINY_NET, "steps": 40, "batch_size": 8, "eval_every": 40,
                                                   "warmup": 5, "lr": 3e-3}, progress=False)
    log = [json.loads(line) for line in (tmp_path / "training_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 40 and "val_digit_wer" in log[-1]
    assert log[0]["step"] == 1 and log[-1]["loss"] < 0.5 * log[0]["loss"]
    assert {"digit_wer", "keyword_accuracy", "train_seconds"} <= set(res)
    m = load_recogniser(tmp_path)
    assert json.loads((tmp_path / "classifier.json").read_text())["training"]["steps"] == 40
    hyps = transcribe(m, [u.wave for u in load_split(tiny_corpus, "test", max_items=3)])
    assert len(hyps) == 6 and all(isinstance(h, str) for h in hyps)
    with pytest.raises(CoupledError, match="valid:.*noise_snr"):
        train_recogniser(tiny_corpus, tmp_path, {"noise_snrr": [1, 2]}, progress=False)


@pytest.mark.slow
def test_bundled_recogniser_meets_the_clean_targets():
    """Clean held-out speakers (the test split): digit WER <= 3%, keyword accuracy >= 97%."""
    from coupled.config import load_config
    from coupled.domains.speech.corpus import build_corpus, corpus_root, CorpusConfig
    from coupled.domains.speech.train import evaluate_clean

    cfg = load_config("configs/speech.yaml")
    root = build_corpus(CorpusConfig.from_dict(cfg["corpus"]), corpus_root(cfg), progress=False)
    scores = evaluate_clean(load_recogniser("checkpoints/speech"), load_split(root, "test"))
    assert scores["digit_wer"] <= 0.03 and scores["keyword_accuracy"] >= 0.97, scores


def test_a_bad_recogniser_net_is_refused_with_the_config():
    """Issue 17: a recogniser.net value is checked when the config is read, not deep in training."""
    from coupled.domains.speech.config import make_speech_config

    for net, message in (({"channels": 0}, "RecogniserConfig.channels"), ({"dilations": [1, -2]}, "dilations"),
                         ({"dropout": 1.5}, "dropout"), ({"mel_floor": "x"}, "mel_floor"), ({"depth": 3}, "depth")):
        with pytest.raises(CoupledError, match="config key recogniser.net") as e:
            make_speech_config({"recogniser": {"net": net}})
        assert message in str(e.value)
