"""Issue 16, speech part 2: speech's coupled diffusion through the generic stages and evaluator. On the session's
tiny corpus, `coupled train --stages signal logits joint card sequential` writes tiny denoisers beside a tiny
recogniser (the chains run on the compressed STFT its signal.json records; the recogniser reads it through
`RecogniserOnRepresentation`), `coupled evaluate` gives a WER row for every method, and a padded batch gives
each utterance what it gets alone."""

import json

import numpy as np

import pytest
import torch
import yaml

from coupled.cli import main
from coupled.config import load_config
from coupled.domains.speech.domain import SPEECH
from coupled.evaluation.bench import NETWORKS
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


def test_the_same_transcripts_are_scored_by_wer_and_by_string_accuracy(bundle_cfg, tmp_path):
    """Issue 16 item 5: each readout's decoded strings scored twice, with no second sampling run: an utterance is
    right (string accuracy 1) exactly when it has no word error; results rows carry it under `secondary`."""
    from coupled.bundle import load_bundle
    from coupled.evaluation.report import summarise
    from coupled.evaluation.runner import evaluate, specs_from_methods

    path, ckpt = bundle_cfg
    cfg = load_config(path)
    bundle = load_bundle(ckpt, sampling=cfg["sampling"], domain="speech")
    data = SPEECH.load_splits(cfg)["test"].subset([0, 1, 2, 3])
    sev = {"white_noise": {"heavy": SPEECH.conditions(cfg, "test")["white_noise"]["snr 5"]}}
    records, _ = evaluate(bundle, data, sev, specs=specs_from_methods(["noisy", "parallel"], cfg["sampling"]["methods"]),
                          seeds_for_level=lambda lv: [0, 1], batch_size=2, progress=False, corruption_seed=0)
    for r in records:
        for ro in ("classifier", "logits"):
            if r[f"score_{ro}"] is None:
                assert r[f"secondary_{ro}"] is None
                continue
            hits = r[f"secondary_{ro}"]["accuracy"]
            assert hits.shape == (4,) and np.array_equal(hits, (r[f"score_{ro}"][:, 0] == 0).astype(float))
    rows = summarise(records, domain="speech", dataset="tiny", split="test", clean_accuracy=0.0, n_boot=20,
                     signal_metrics=tuple(SPEECH.signal_metrics))["rows"]
    assert {(r["method"], r["readout"]) for r in rows} == {("noisy", "classifier"), ("parallel", "classifier"),
                                                            ("parallel", "logits")}
    for r in rows:
        acc = r["secondary"]["accuracy"]
        assert 0 <= acc["ci95"][0] <= acc["value"] <= acc["ci95"][1] <= 1


def test_coupled_bench_measures_the_speech_bundle_in_its_own_section(bundle_cfg, tmp_path, monkeypatch):
    """Issue 16 item 7: `coupled bench` on a speech config (tiny bundle and corpus): WER rows per method, network
    shares, throughput with peak memory, one call of each network on a 2-second utterance and cost against length,
    written as the page's speech section beside what the page held. Timing is never asserted."""
    from coupled.domains.speech.domain import SpeechDomain

    quick = {**SpeechDomain.bench_profiles["quick"], "items": 2, "throughput_seconds": 0.0, "call_repeats": 1,
             "throughput_methods": ("parallel",), "length_sweep": {"per_group": 1, "methods": ("noisy", "parallel")}}
    monkeypatch.setattr(SpeechDomain, "bench_profiles", {"quick": quick, "full": quick})  # the least work it can do
    path, _ = bundle_cfg
    user = yaml.safe_load(path.read_text())
    user.update(degradations={"babble_noise": {"snr": [5], "talkers": 2}}, levels={"babble_noise": {"heavy": 5.0}})
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(yaml.safe_dump(user))
    out, doc = tmp_path / "bench_speech.json", tmp_path / "performance.md"
    doc.write_text("# Performance\n\nthe image bench's page\n")
    assert main(["bench", str(cfg), "--quick", "--out", str(out), "--doc", str(doc), "--threads", "1",
                 "--batch-sizes", "2", "--quiet"]) in (0, None)
    res = json.loads(out.read_text())
    assert res["domain"] == "speech" and res["metric"] == "wer" and res["picks"] is None  # no picks: the config's steps
    (run,) = res["accuracy_runs"]
    assert run["corruption"] == "babble_noise" and run["condition"]["snr_db"] == 5.0 and run["items"] == 2
    rows = {r["label"]: r for r in run["rows"]}
    assert {"noisy", "sequential@2", "parallel@2", "nested@2", "card@2"} <= set(rows)
    for r in rows.values():
        assert set(r["wer"]) == set(r["readouts"]) and all(v >= 0 for v in r["wer"].values())
        assert r["seconds_per_item"] > 0 and r["seconds_per_signal_second"] > 0
        assert sum(r["network_seconds"].values()) <= r["wall_seconds"]
    assert set(rows["parallel@2"]["wer"]) == {"classifier", "logits"}
    assert [(t["method"], t["batch_size"]) for t in res["throughput"]] == [("parallel", 2)]
    assert all(t["cpu_sampling_peak_rss_mb"] is None or t["cpu_sampling_peak_rss_mb"] > 0 for t in res["throughput"])
    calls = res["network_calls"]
    assert calls["seconds"] == 2.0 and calls["item_frames"] == 2 * 16000 // 128 + 1
    assert all(calls["ms_per_call"][k] > 0 for k in NETWORKS)
    sweep = res["length_sweep"]["rows"]
    groups = list(dict.fromkeys(r["group"] for r in sweep))
    assert groups == sorted(groups, key=lambda g: int(g.split()[0])) and {r["label"] for r in sweep} == {"noisy", "parallel@2"}
    text = doc.read_text()
    assert text.startswith("# Performance\n\nthe image bench's page\n")  # the default domain's part is kept
    assert "<!-- coupled bench, domain speech" in text and "## Performance: speech" in text
    for section in ("Network shares", "One call of each network on a 2-second utterance", "Cost against utterance length"):
        assert section in text
    for png in ("performance_speech_accuracy_seconds.png", "performance_speech_length.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png in text


def test_each_domains_bench_rewrites_only_its_own_part_of_the_page(tmp_path):
    from coupled.evaluation.bench import SECTION, _merge_section

    doc = tmp_path / "performance.md"
    assert _merge_section(doc, None, "# image v1\n") == "# image v1\n"  # alone, the page is the image bench's text
    doc.write_text(_merge_section(doc, "speech", "## speech v1"))
    doc.write_text(_merge_section(doc, None, "# image v2\n"))
    doc.write_text(_merge_section(doc, "speech", "## speech v2"))
    doc.write_text(_merge_section(doc, "toy", "## toy v1"))
    assert doc.read_text() == (f"# image v2\n\n{SECTION.format('speech')}\n\n## speech v2\n"
                               f"\n{SECTION.format('toy')}\n\n## toy v1\n")


def test_reproduce_synthesises_the_corpus_trains_the_recogniser_and_every_stage_then_evaluates(bundle_cfg, tmp_path):
    """`coupled reproduce configs/speech.yaml` (issue 16, item 8): the corpus (into a new folder), the recogniser
    (speech's own classifier stage) and every generic stage from scratch, then the evaluation with `evaluate`'s
    selection flags; reproduce_timing.json names each stage of train.stages with its seconds, written before the
    evaluation."""
    path, _ = bundle_cfg
    user = yaml.safe_load(path.read_text())
    user["data"]["root"] = str(tmp_path / "corpus")  # not built yet: training builds it
    user["recogniser"] = {"net": {"channels": 16, "dilations": [1], "n_mels": 32}, "steps": 2, "batch_size": 4,
                          "eval_every": 2, "warmup": 1}
    # train.stages: the stages the bundle is built from (configs/speech.yaml leaves out sequential)
    user["train"]["stages"] = ["classifier", "signal", "logits", "joint", "card", "predictive"]
    cfg = tmp_path / "speech.yaml"
    cfg.write_text(yaml.safe_dump(user))
    out, ckpt = tmp_path / "ev", tmp_path / "ckpt"
    assert main(["reproduce", str(cfg), "--output", str(ckpt), "--out", str(out), "--methods", "noisy", "sequential",
                 "--max-items", "3", "--accelerator", "cpu", "--quiet"]) in (0, None)
    assert (tmp_path / "corpus" / "manifest.json").is_file()
    timing = json.loads((ckpt / "reproduce_timing.json").read_text())
    assert [s["stage"] for s in timing["stages"]] == user["train"]["stages"]
    assert timing["stages"][0]["wall_seconds"] > 0 and timing["evaluate_seconds"] > 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"noisy", "sequential"} and all(r["n_items"] == 3 for r in rows)
    # --resume keeps what is done: the recogniser and every finished stage are skipped, with their recorded seconds
    weights = (ckpt / "classifier.safetensors").read_bytes()
    assert main(["reproduce", str(cfg), "--output", str(ckpt), "--out", str(out), "--methods", "noisy",
                 "--max-items", "3", "--accelerator", "cpu", "--quiet", "--resume"]) in (0, None)
    again = json.loads((ckpt / "reproduce_timing.json").read_text())["stages"]
    assert all(s["skipped"] for s in again) and again[1]["wall_seconds"] == timing["stages"][1]["wall_seconds"]
    assert (ckpt / "classifier.safetensors").read_bytes() == weights


def test_the_mel_representation_trains_and_evaluates_through_the_same_stages(bundle_cfg, tmp_path, capsys):
    """`--set 'representation={kind: mel}'` (docs/speech.md): the chains run on the recogniser's log-mel, recorded
    in signal.json, and the methods read it (the recogniser without resynthesis)."""
    import shutil

    path, ckpt = bundle_cfg
    mel = tmp_path / "mel"
    mel.mkdir()
    for f in ("classifier.json", "classifier.safetensors"):
        shutil.copy(ckpt / f, mel / f)
    # the tiny recogniser hears 32 mel bands: a config that leaves the default 64 is told which keys to set
    assert main(["train", str(path), "--output", str(mel), "--stages", "signal", "--accelerator", "cpu", "--quiet",
                 "--set", "representation={kind: mel}"]) == 2
    assert "{kind: mel, n_mels: 32}" in capsys.readouterr().err
    sets = ["--set", "representation={kind: mel, n_mels: 32}"]
    assert main(["train", str(path), "--output", str(mel), "--stages", "signal", "logits", "joint", "--accelerator",
                 "cpu", "--quiet", *sets]) in (0, None)
    signal = json.loads((mel / "signal.json").read_text())
    assert signal["representation"]["kind"] == "mel" and signal["net"]["in_channels"] == 1
    out = tmp_path / "ev"
    assert main(["evaluate", str(path), "--checkpoint", str(mel), "--methods", "noisy", "sequential", "parallel",
                 "--max-items", "3", "--out", str(out), "--quiet", *sets]) in (0, None)
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"noisy", "sequential", "parallel"} and all(r["value"] >= 0 for r in rows)
