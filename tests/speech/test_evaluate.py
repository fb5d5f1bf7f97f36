import json

import numpy as np
import pytest
import yaml

from coupled.cli import main
from coupled.config import load_config
from coupled.domains.speech.config import make_speech_config
from coupled.domains.speech.evaluate import evaluate_speech, score
from coupled.domains.speech.recogniser import CTCRecogniser, RecogniserConfig, save_recogniser
from coupled.errors import CoupledError

from .conftest import TINY


@pytest.fixture(scope="module")
def speech_cfg(tiny_corpus, tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt")
    import torch

    torch.manual_seed(0)
    save_recogniser(CTCRecogniser(RecogniserConfig(channels=16, dilations=(1,), n_mels=32)), ckpt)
    user = {"domain": "speech", "output": str(ckpt), "corpus": TINY.to_dict(), "data": {"root": str(tiny_corpus)},
            "degradations": {"white_noise": {"snr": [0, 10]}, "babble_noise": {"snr": [5]},
                             "reverb": {"rt60": [0.7]}, "reverb_noise": {"rt60": [0.7], "snr": [5]}},
            "rooms": {"per_rt60": 2, "seed": 0},
            "evaluation": {"signal_metrics_items": 3, "examples": 1, "bootstrap": 50}}
    path = tmp_path_factory.mktemp("cfg") / "speech.yaml"
    path.write_text(yaml.safe_dump(user))
    return path


def test_score_hand_case():
    s = score(["one two", "three", "yes", "no"], ["one", "three", "yes", "go"], ["digits", "digits", "keywords", "keywords"],
              n_boot=200)
    assert s["wer"]["value"] == pytest.approx(1 / 3) and s["wer"]["n_words"] == 3
    assert s["accuracy"]["value"] == 0.5 and s["accuracy"]["ci95"][0] <= 0.5 <= s["accuracy"]["ci95"][1]


def test_noisy_sweep_writes_spec_shaped_results(speech_cfg, tmp_path, monkeypatch):
    """The noisy sweep part 1 published (evaluate_speech: both tasks, SI-SDR and ESTOI of the degraded input,
    example WAVs)."""
    monkeypatch.setenv("COUPLED_CACHE", str(tmp_path / "cache"))
    res = evaluate_speech(load_config(speech_cfg), out=tmp_path / "ev", progress=False, results_path=tmp_path / "copy.json")
    assert json.loads((tmp_path / "ev" / "results.json").read_text()) == json.loads((tmp_path / "copy.json").read_text())
    assert res["schema"] == "coupled-results/1" and res["domain"] == "speech" and res["split"] == "test"
    assert res["clean"]["metric"] == "wer" and 0 <= res["clean"]["accuracy"] <= 1
    rows = res["rows"]
    assert {r["metric"] for r in rows} == {"wer", "accuracy"}
    assert {r["corruption"] for r in rows} == {"white_noise", "babble_noise", "reverb", "reverb_noise"}
    for r in rows:
        assert {"method", "corruption", "severity", "metric", "readout", "value", "ci95", "calls", "seconds_per_item",
                "n_items", "seeds", "snr_db", "rt60"} <= set(r)
        assert r["method"] == "noisy" and r["readout"] == "classifier"
    rev = [r for r in rows if r["corruption"] == "reverb"][0]
    assert rev["snr_db"] is None and rev["rt60"] == pytest.approx(np.mean([m["rt60"] for m in res["rooms"]]), abs=1e-3)
    white = sorted((r for r in rows if r["corruption"] == "white_noise" and r["metric"] == "wer"), key=lambda r: r["snr_db"])
    assert [r["snr_db"] for r in white] == [0.0, 10.0]
    assert white[0]["si_sdr"] < white[1]["si_sdr"]  # SI-SDR tracks the SNR
    assert white[0]["estoi_n"] + white[0]["estoi_too_short"] == white[0]["n_signal_items"] == 3
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "wer_vs_snr.png" in report and "## white_noise" in report
    assert (tmp_path / "ev" / "wer_vs_snr.png").stat().st_size > 5000
    wavs = sorted(p.name for p in (tmp_path / "ev" / "examples").glob("*.wav"))
    # one item (examples: 1), clean and one condition per degradation: 0 dB, the longest reverberation
    assert len(wavs) == 1 + 4 and any("clean" in w for w in wavs) and any("white_noise_snr0" in w for w in wavs)


def test_evaluation_is_deterministic(speech_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("COUPLED_CACHE", str(tmp_path / "cache"))
    cfg = load_config(speech_cfg)
    cfg["degradations"] = {"white_noise": {"snr": [0]}}
    a = evaluate_speech(cfg, out=tmp_path / "a", progress=False, max_items=4)
    b = evaluate_speech(cfg, out=tmp_path / "b", progress=False, max_items=4)
    assert [r["value"] for r in a["rows"]] == [r["value"] for r in b["rows"]]
    assert [r["si_sdr"] for r in a["rows"]] == [r["si_sdr"] for r in b["rows"]]


def test_config_and_cli_errors(speech_cfg, tmp_path):
    with pytest.raises(CoupledError, match="valid keys there:.*degradations"):
        make_speech_config({"degradation": {}})
    with pytest.raises(CoupledError, match="valid: babble_noise"):
        make_speech_config({"degradations": {"brown_noise": {"snr": [0]}}})
    with pytest.raises(CoupledError, match="valid:.*digit_strings"):
        make_speech_config({"corpus": {"digits": 3}})
    with pytest.raises(CoupledError, match="valid keys there: root"):
        make_speech_config({"data": {"rot": "x"}})
    with pytest.raises(CoupledError, match="valid keys there:.*noise_snr"):
        make_speech_config({"recogniser": {"noise_snrr": [1, 2]}})
    assert make_speech_config({"recogniser": {"net": {"dropout": 0.2}}})["recogniser"]["net"] == {"dropout": 0.2}
    assert make_speech_config({"levels": {"white_noise": {"heavy": 3}}})["degradations"]["pink_noise"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("domain: sonar\n")
    with pytest.raises(CoupledError, match="valid: image, speech"):
        load_config(bad)
    cfg = load_config(speech_cfg)
    with pytest.raises(CoupledError, match="only the 'noisy' method"):
        evaluate_speech(cfg, methods=["parallel"], out=tmp_path)
    with pytest.raises(CoupledError, match="valid: babble_noise"):
        evaluate_speech(cfg, corruptions=["pink_noise"], out=tmp_path)
    cfg["data"]["root"] = str(tmp_path / "nowhere")
    with pytest.raises(CoupledError, match="coupled data speech"):
        evaluate_speech(cfg, out=tmp_path)


def test_coupled_data_speech_builds_the_configured_corpus(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"domain": "speech", "corpus": {"speakers": {"train": 1, "val": 1, "test": 1},
                                                                   "digit_strings": 1}}))
    assert main(["data", "speech", "--config", str(cfg), "--root", str(tmp_path / "corpus"), "--quiet"]) == 0
    m = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    assert len(m["items"]) == 3 * 22 and "speech corpus:" in capsys.readouterr().out


def test_crossing_hand_cases():
    from coupled.domains.speech.calibrate import crossing

    grid, wer = [0, 10, 20, 30], [0.9, 0.6, 0.2, 0.02]
    assert crossing(grid, wer, 0.5) == 12.5  # between 10 dB (0.6) and 20 dB (0.2)
    assert crossing(grid, wer, 0.1) == 25.5  # 20 + 10 * (0.2 - 0.1) / 0.18 = 25.56
    assert crossing(grid, wer, 0.95) == 0 and crossing(grid, wer, 0.01) == 30
    assert crossing(grid, [0.9, 0.3, 0.5, 0.02], 0.4) == 22.0  # the bump at 20 dB counts: 0.5 -> 0.02


def test_calibration_picks_an_snr_per_level_and_the_sweep_includes_it(speech_cfg, tmp_path, monkeypatch):
    from coupled.domains.speech.calibrate import calibrate_levels
    from coupled.domains.speech.evaluate import conditions

    cfg = load_config(speech_cfg)
    out = calibrate_levels(cfg, grid=(0, 20), max_items=3, progress=False,
                           targets={"light": 0.1, "heavy": 0.9})
    assert set(out["levels"]) == {"white_noise", "babble_noise"}
    for name, lv in out["levels"].items():
        assert 0 <= lv["heavy"] <= lv["light"] <= 20 and set(out["val_wer"][name]) == {0.0, 20.0}
    cfg["levels"] = {"white_noise": {"light": 12.5, "heavy": 0.0}}
    cfg["degradations"] = {"white_noise": {"snr": [0, 10]}}
    conds = [c for c in conditions(cfg, []) if c["corruption"] == "white_noise"]
    assert [(c["snr_db"], c.get("level")) for c in conds] == [(0.0, "heavy"), (10.0, None), (12.5, "light")]


@pytest.mark.slow
def test_published_noisy_rows_are_reproduced(tmp_path):
    """docs/results/speech_noisy.json: the white-noise rows and the clean figures, re-evaluated."""
    published = json.loads(open("docs/results/speech_noisy.json").read())
    cfg = load_config("configs/speech.yaml")
    res = evaluate_speech(cfg, out=tmp_path, corruptions=["white_noise"], progress=False)
    assert res["clean"]["value"] == pytest.approx(published["clean"]["value"])
    assert res["clean"]["accuracy"] == pytest.approx(published["clean"]["accuracy"])
    pub = {(r["snr_db"], r["metric"]): r["value"] for r in published["rows"] if r["corruption"] == "white_noise"}
    assert {(r["snr_db"], r["metric"]): r["value"] for r in res["rows"]} == pytest.approx(pub)


def test_evaluate_a_users_wav_folder(tmp_path, monkeypatch, capsys):
    """`coupled evaluate configs/speech.yaml --set data.wav_folder=DIR`: the recogniser on a user's own WAVs,
    no synthetic corpus needed; babble talkers are the folder's other recordings (issue 17)."""
    import torch
    from scipy.io import wavfile

    from .conftest import tone

    monkeypatch.setenv("COUPLED_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    ckpt = tmp_path / "ckpt"
    save_recogniser(CTCRecogniser(RecogniserConfig(channels=16, dilations=(1,), n_mels=32)), ckpt)
    wavs = tmp_path / "my_wavs"
    lines = []
    for i, (spk, text) in enumerate([("ann", "one two"), ("ann", "yes"), ("bob", "three oh seven"), ("bob", "no")]):
        path = wavs / spk / f"take{i}.WAV"
        path.parent.mkdir(parents=True, exist_ok=True)
        wavfile.write(path, 22050, (tone(0.6, 22050, 200.0 + 50 * i, 0.3) * 32767).astype(np.int16))
        lines.append(f"{spk}/take{i}.WAV {text}")
    (wavs / "said.txt").write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "speech.yaml"
    cfg.write_text(yaml.safe_dump({"domain": "speech", "output": str(ckpt),
                                   "degradations": {"white_noise": {"snr": [10]}, "babble_noise": {"snr": [5]},
                                                    "reverb": {"rt60": [0.7]}},
                                   "rooms": {"per_rt60": 1, "seed": 0}, "evaluation": {"bootstrap": 20}}))
    assert main(["evaluate", str(cfg), "--methods", "noisy", "--out", str(tmp_path / "ev"), "--quiet",
                 "--set", f"data.wav_folder={wavs}", "--set", "data.transcripts=said.txt"]) == 0
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert res["dataset"] == f"wav_folder {wavs}" and res["split"] == "all" and res["clean"]["metric"] == "wer"
    assert {r["corruption"] for r in res["rows"]} == {"white_noise", "babble_noise", "reverb"}
    assert {r["n_items"] for r in res["rows"]} == {2}  # the folder's two digit strings (evaluation.task: digits)
    assert "## white_noise" in capsys.readouterr().out


@pytest.mark.parametrize("task,metric", [("digits", "wer"), ("keywords", "accuracy")])
def test_coupled_evaluate_runs_the_generic_runner_and_reproduces_the_noisy_sweep(speech_cfg, tmp_path, task, metric):
    """`coupled evaluate configs/speech.yaml --methods noisy` goes through the generic runner (padded waveforms
    with their lengths, the recogniser as the bundle's classifier, labelled conditions) and gives the noisy
    sweep's figures: the same degraded items, the same transcripts, the same WER and accuracy."""
    assert main(["evaluate", str(speech_cfg), "--methods", "noisy", "--out", str(tmp_path / "g"), "--quiet",
                 "--set", f"evaluation.task={task}", "--set", "evaluation.batch_size=3"]) == 0
    generic = json.loads((tmp_path / "g" / "results.json").read_text())
    sweep = evaluate_speech(load_config(speech_cfg), out=tmp_path / "s", progress=False)
    assert generic["clean"]["metric"] == metric and generic["domain"] == "speech"
    assert generic["clean"]["value"] == pytest.approx(sweep["clean"]["value" if metric == "wer" else "accuracy"])
    want = {(r["corruption"], r["snr_db"], r.get("rt60_target")): r["value"] for r in sweep["rows"] if r["metric"] == metric}
    got = {(r["corruption"], r["snr_db"], r.get("rt60_target")): r["value"] for r in generic["rows"]}
    assert got == pytest.approx(want) and len(got) == 5
    assert all(r["metric"] == metric and r["method"] == "noisy" for r in generic["rows"])
    assert all(0 < r["seconds_per_signal_second"] < 10 * r["seconds_per_item"] + 1 for r in generic["rows"])


@pytest.mark.slow
def test_generic_runner_reproduces_the_published_noisy_rows(tmp_path):
    """docs/results/speech_noisy.json's white-noise WER rows and clean WER, through `coupled evaluate`."""
    published = json.loads(open("docs/results/speech_noisy.json").read())
    assert main(["evaluate", "configs/speech.yaml", "--methods", "noisy", "--corruptions", "white_noise",
                 "--out", str(tmp_path), "--quiet"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["clean"]["value"] == pytest.approx(published["clean"]["value"])
    pub = {r["snr_db"]: r["value"] for r in published["rows"] if r["corruption"] == "white_noise" and r["metric"] == "wer"}
    assert {r["snr_db"]: r["value"] for r in res["rows"]} == pytest.approx(pub)
