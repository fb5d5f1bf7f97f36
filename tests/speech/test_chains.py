"""Issue 16, speech part 2: speech's coupled diffusion through the generic stages and evaluator. On the session's
tiny corpus, `coupled train --stages signal logits joint card sequential` writes tiny denoisers beside a tiny
recogniser (the chains run on the compressed STFT its signal.json records; the recogniser reads it through
`RecogniserOnRepresentation`), `coupled evaluate` gives a WER row for every method, and a padded batch gives
each utterance what it gets alone."""

import json

import pytest
import torch
import yaml

from coupled.cli import main
from coupled.config import load_config
from coupled.domains.speech.domain import SPEECH
from coupled.domains.speech.recogniser import CTCRecogniser, RecogniserConfig, save_recogniser
from coupled.domains.speech.representation import CompressedSTFT, RecogniserOnRepresentation

from .conftest import TINY
from tests.padding import assert_padded_batch_is_each_item_alone

STAGES = ["signal", "logits", "joint", "card", "sequential", "predictive"]
METHODS = ["noisy", "sequential", "one_step", "predictive", "parallel", "alternating", "nested", "logits_only"]
SIGNAL_NET = {"size": "tiny", "channels": [8, 16, 32], "mid_blocks": 1, "time_dim": 32, "groups": 4}
LOGIT_NET = {"hidden": 16, "dilations": [1, 2], "time_dim": 16, "encoder_channels": [4, 8], "feature_dim": 8}


@pytest.fixture(scope="module")
def bundle_cfg(tiny_corpus, tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("chains")
    torch.manual_seed(0)
    save_recogniser(CTCRecogniser(RecogniserConfig(channels=16, dilations=(1,), n_mels=32)), ckpt)
    user = {"domain": "speech", "output": str(ckpt), "corpus": TINY.to_dict(), "data": {"root": str(tiny_corpus)},
            "degradations": {"white_noise": {"snr": [5]}},
            "evaluation": {"bootstrap": 20, "seeds": [0], "heavy_seeds": 1, "other_seeds": 1, "batch_size": 4},
            "signal": {"net": SIGNAL_NET, "steps": 3, "batch_size": 4},
            "logits": {"net": LOGIT_NET, "steps": 3, "batch_size": 4},
            "joint": {"steps": 2, "batch_size": 4},
            "card": {"net": LOGIT_NET, "steps": 2, "batch_size": 4},
            "sequential": {"steps": 2, "batch_size": 4},
            "predictive": {"steps": 2, "batch_size": 4},
            "train": {"checkpoint_every": 100, "log_every": 1},
            "sampling": {"signal": {"steps": 2, "sampler": "pc", "corrector_steps": 1, "snr": 0.5},
                         "logits": {"steps": 2, "sampler": "pc", "corrector_steps": 1, "snr": 0.5},
                         "methods": {"parallel": {"switch_fraction": 0.5}, "alternating": {"rounds": 1},
                                     "nested": {"refresh_every": 1, "refresh_window": [0.5, 1.0]}}}}
    path = tmp_path_factory.mktemp("cfg") / "speech.yaml"
    path.write_text(yaml.safe_dump(user))
    assert main(["train", str(path), "--stages", *STAGES, "--accelerator", "cpu", "--quiet"]) in (0, None)
    return path, ckpt


def test_the_generic_stages_write_a_speech_bundle_that_records_its_representation(bundle_cfg):
    _, ckpt = bundle_cfg
    log = [json.loads(line) for line in (ckpt / "training_log.jsonl").read_text().splitlines()]
    assert [s["stage"] for s in log] == STAGES
    signal, logits = (json.loads((ckpt / f"{n}.json").read_text()) for n in ("signal", "logits"))
    assert signal["arch"] == "speech_unet" and logits["arch"] == "speech_logit_net"
    assert signal["representation"] == logits["representation"] == {"kind": "stft", **CompressedSTFT().to_dict()}
    assert signal["process"]["kind"] == "centred" and signal["clip"] is None  # OU-VE on the spectrogram, unclipped
    assert signal["net"]["in_channels"] == 2 and signal["net"]["bins"] == 256 and logits["net"]["num_classes"] == 22
    from coupled.bundle import load_bundle

    bundle = load_bundle(ckpt, domain="speech")
    assert isinstance(bundle.coupling.classifier.module, RecogniserOnRepresentation)


def test_every_method_gives_a_wer_row(bundle_cfg, tmp_path):
    path, _ = bundle_cfg
    out = tmp_path / "ev"
    assert main(["evaluate", str(path), "--methods", *METHODS, "--max-items", "4", "--out", str(out), "--quiet"]) in (0, None)
    results = json.loads((out / "results.json").read_text())
    assert results["domain"] == "speech" and results["clean"]["metric"] == "wer"
    rows = results["rows"]
    assert {r["method"] for r in rows} == set(METHODS)
    for r in rows:
        assert r["metric"] == "wer" and r["n_items"] == 4 and r["value"] >= 0, r["method"]
        assert r["corruption"] == "white_noise" and r["snr_db"] == 5
        assert r["seconds_per_signal_second"] > 0  # per second of audio, not per frame
    readouts = {(r["method"], r["readout"]) for r in rows}
    for m in ("parallel", "alternating", "nested", "logits_only"):
        assert (m, "logits") in readouts


def test_a_padded_batch_gives_each_utterance_its_result_alone(bundle_cfg):
    from coupled.bundle import load_bundle
    from coupled.evaluation.runner import represent, represent_split, run_specs, specs_from_methods

    path, ckpt = bundle_cfg
    cfg = load_config(path)
    bundle = load_bundle(ckpt, sampling=cfg["sampling"], domain="speech")
    data = SPEECH.load_splits(cfg)["test"].subset([0, 1, 2])
    assert len(set(data.lengths.tolist())) == 3  # utterances of different lengths
    cond = next(iter(SPEECH.conditions(cfg, "test")["white_noise"].values()))
    degraded = SPEECH.corrupt_set(data.signals, "white_noise", cond, 0, lengths=data.lengths, indices=data.ids)
    degraded, frames = represent(bundle, degraded, data.lengths)
    rep = represent_split(bundle, data)
    assert torch.equal(frames, rep.lengths) and degraded.dim() == 4
    specs = specs_from_methods(METHODS, cfg["sampling"]["methods"])
    run = lambda batch: run_specs(bundle, rep.signals, rep.labels, degraded, specs, seed=3,  # noqa: E731
                                  batch_size=batch, device=torch.device("cpu"), keep_x_hat=True, lengths=rep.lengths,
                                  task=rep.task)
    assert_padded_batch_is_each_item_alone(run, len(data), rep.lengths, atol=1e-4)
