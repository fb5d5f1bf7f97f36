"""Issue 16, speech part 2: what the speech denoisers train on (babble and reverb with training's own talkers and
rooms, fixed-length crops), the fine-tuned recogniser's CTC loss, observation adding on the representations, the
reverb levels and the SI-SDR of resynthesised estimates."""

import numpy as np
import pytest
import torch

from coupled.config import make_config
from coupled.domains.speech.degrade import active_power, room_bank
from coupled.domains.speech.domain import SPEECH, TRAIN_ROOMS
from coupled.domains.speech.representation import CompressedSTFT, LogMel
from coupled.errors import CoupledError
from coupled.training.stages import TrainBatch, crop_batch

from .conftest import TINY


@pytest.fixture(scope="module")
def cfg(tiny_corpus):
    return make_config({"corpus": TINY.to_dict(), "data": {"root": str(tiny_corpus)}}, "speech")


def test_crop_batch_cuts_windows_inside_each_item_and_pads_short_ones_as_signal():
    s = torch.arange(1, 31, dtype=torch.float32).repeat(3, 1)
    s[1, 12:] = 0
    s[2, 5:] = 0
    batch = TrainBatch(s, ["a", "b", "c"], torch.tensor([30, 12, 5]))
    out = crop_batch(batch, 8, torch.Generator().manual_seed(0))
    assert out.signals.shape == (3, 8) and out.lengths is None and out.labels == ["a", "b", "c"]
    for i, n in enumerate((30, 12)):  # a window of consecutive samples inside the valid extent
        start = int(out.signals[i, 0]) - 1
        assert 0 <= start <= n - 8 and torch.equal(out.signals[i], torch.arange(start + 1, start + 9, dtype=torch.float32))
    assert torch.equal(out.signals[2], torch.tensor([1, 2, 3, 4, 5, 0, 0, 0], dtype=torch.float32))
    again = crop_batch(batch, 8, torch.Generator().manual_seed(0))
    assert torch.equal(out.signals, again.signals)  # the step's generator decides the windows
    assert crop_batch(TrainBatch(s, None, None), 40, torch.Generator()).signals.shape == (3, 40)


def test_training_babble_and_reverb_draw_from_trainings_own_talkers_and_rooms(cfg, speech_wave):
    wave = torch.from_numpy(speech_wave)[None]
    babble = SPEECH.training_corruption("babble_noise", cfg)(wave, 5.0, torch.Generator().manual_seed(1))
    noise = (babble - wave).numpy()[0]
    snr = 10 * np.log10(active_power(speech_wave) / np.mean(noise.astype(np.float64) ** 2))
    assert babble.shape == wave.shape and abs(snr - 5.0) < 0.5  # against the speech's active level
    reverb = SPEECH.training_corruption("reverb", cfg)
    a, b = (reverb(wave, 1.0, torch.Generator().manual_seed(k)) for k in (0, 0))
    assert a.shape == wave.shape and torch.equal(a, b) and not torch.allclose(a, wave)
    train_rooms = room_bank(TRAIN_ROOMS["rt60s"], TRAIN_ROOMS["per_rt60"], TRAIN_ROOMS["seed"])
    eval_rooms = room_bank(tuple(cfg["degradations"]["reverb"]["rt60"]), cfg["rooms"]["per_rt60"], cfg["rooms"]["seed"])
    eval_irs = {r.rir.tobytes() for r in eval_rooms}
    assert not any(r.rir.tobytes() in eval_irs for r in train_rooms)  # no evaluation room is heard in training
    assert set(cfg["corruptions"]["train_severity"]) == {"white_noise", "pink_noise", "babble_noise", "reverb"}
    with pytest.raises(CoupledError, match="train on"):
        SPEECH.corruption("reverb_noise")


def test_the_recogniser_fine_tunes_on_ctc_against_the_transcripts():
    logits = torch.randn(2, 20, 22, requires_grad=True)
    loss, logs = SPEECH.classifier_loss(logits, ["one two", "oh"], frame_lengths=torch.tensor([20, 9]))
    loss.backward()
    assert torch.isfinite(loss) and logits.grad[1, 9:].abs().sum() == 0  # padded frames get no gradient
    assert 0 <= float(logs["exact"]) <= 1
    with pytest.raises(CoupledError, match="transcripts as labels"):
        SPEECH.classifier_loss(torch.randn(2, 22), torch.tensor([1, 2]))


def test_observation_adding_mixes_representations_as_the_waveforms_mix():
    g = torch.Generator().manual_seed(0)
    x, d = torch.randn(2, 16000, generator=g) * 0.1, torch.randn(2, 16000, generator=g) * 0.1
    lengths = torch.tensor([16000, 11000])
    rep = CompressedSTFT()
    rx, _ = rep.analyse(x, lengths)
    rd, _ = rep.analyse(d, lengths)
    want, _ = rep.analyse(x + 0.3 * (d - x), lengths)
    torch.testing.assert_close(rep.mix(rx, rd, 0.3), want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(rep.mix(rx, rd, 0.0), rx, atol=1e-5, rtol=1e-5)
    mel = LogMel()
    mx, _ = mel.analyse(x)
    md, _ = mel.analyse(d)
    torch.testing.assert_close(mel.mix(mx, md, 0.0), mx, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(mel.mix(mx, md, 1.0), md, atol=1e-4, rtol=1e-4)
    power = lambda r: torch.exp(mel.log_mel(r)) - mel.mel_floor  # noqa: E731
    torch.testing.assert_close(power(mel.mix(mx, md, 0.5)), 0.5 * (power(mx) + power(md)), atol=1e-3, rtol=1e-3)


def test_reverb_levels_name_the_sweeps_rooms(cfg):
    user = {"corpus": TINY.to_dict(), "data": {"root": cfg["data"]["root"]}, "levels": {"reverb": {"heavy": 1.0}}}
    conds = SPEECH.conditions(make_config(user, "speech"), "test")["reverb"]
    assert "heavy" in conds and conds["heavy"]["rt60_target"] == 1.0
    assert {"rt60 0.4", "rt60 0.7", "rt60 1.5"} <= set(conds)


def test_estimates_are_scored_by_the_si_sdr_of_their_audio(speech_wave):
    rep = CompressedSTFT()
    meta = {"representation": {"kind": "stft", **rep.to_dict()}}
    fn = SPEECH.estimate_metrics(meta)["si_sdr"]
    clean, _ = rep.analyse(torch.from_numpy(speech_wave)[None])
    noisy, _ = rep.analyse(torch.from_numpy(speech_wave)[None] + 0.05 * torch.randn(1, len(speech_wave)))
    assert fn(clean, clean)[0] > 40 and fn(noisy, clean)[0] < fn(clean, clean)[0]
    assert SPEECH.estimate_metrics({"representation": {"kind": "mel"}}) == {}  # log-mel audio needs the noisy STFT
    assert SPEECH.estimate_metrics(None) == {}


def test_estimates_are_scored_by_the_estoi_of_their_audio(speech_wave):
    rep = CompressedSTFT()
    fn = SPEECH.estimate_metrics({"representation": {"kind": "stft", **rep.to_dict()}})["estoi"]
    wave = torch.from_numpy(speech_wave)[None]
    clean, _ = rep.analyse(wave)
    noise, _ = rep.analyse(0.3 * torch.randn(1, wave.shape[-1], generator=torch.Generator().manual_seed(0)))
    noisy, _ = rep.analyse(wave + 0.05 * torch.randn(1, wave.shape[-1], generator=torch.Generator().manual_seed(1)))
    same, other, mixed = fn(clean, clean)[0], fn(noise, clean)[0], fn(noisy, clean)[0]
    assert same > 0.99 and other < 0.2 and other < mixed < same
    short = rep.analyse(wave[:, :4000])[0]  # a quarter second: too little speech for ESTOI, NaN (never a number)
    assert np.isnan(fn(short, short)[0])


def test_a_signal_metric_mean_leaves_out_items_it_cannot_score():
    from coupled.evaluation.report import _signal_mean

    assert _signal_mean(np.array([[0.5, np.nan, 0.7]])) == pytest.approx(0.6)
    assert _signal_mean(np.array([[np.nan, np.nan]])) is None
    assert _signal_mean(np.array([[1.0, np.inf]])) is None  # as before: an infinite mean is not JSON


@pytest.mark.parametrize("user,match", [
    ({"tuning": {"observation_weights": [0.5, -1]}}, "observation_weights must be a list of weights"),
    ({"tuning": {"grid": "huge"}}, "tuning.grid must be one of"),
    ({"train": {"crop": -5}}, "train.crop must lie in"),
    ({"corruptions": {"train_severity": {"reverb_noise": [0, 1]}}}, "valid keys there: babble_noise"),
])
def test_bad_speech_options_are_one_line_errors(user, match):
    with pytest.raises(CoupledError, match=match) as e:
        make_config(user, "speech")
    assert "\n" not in str(e.value)


def test_an_observation_weight_outside_0_1_is_one_line():
    from coupled.methods import check_method_settings

    with pytest.raises(CoupledError, match=r"observation_weight must lie in \[0, 1\]"):
        check_method_settings("nested", {"observation_weight": 2}, "picks ")


def test_tune_names_the_corruptions_it_can_tune(tmp_path, capsys):
    from coupled.cli import main

    code = main(["tune", "configs/speech.yaml", "--corruptions", "hail", "--max-items", "2", "--out", str(tmp_path / "p.json")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.count("\n") == 0 and "tune one of: white_noise" in err


def test_the_speech_demo_reads_the_speech_config_into_its_own_folder(monkeypatch):
    import coupled.commands as commands
    from coupled.cli import main

    seen = {}
    monkeypatch.setattr(commands, "run", lambda domain, command, **kw: seen.update(domain=domain.name, **kw) or "")
    main(["demo", "--domain", "speech", "--quiet"])
    assert seen["domain"] == "speech" and seen["config"] == "configs/speech.yaml" and seen["out"] == "runs/demo-speech"
    main(["demo", "--quiet"])
    assert seen["domain"] == "image" and seen["config"] == "configs/mnist.yaml" and seen["out"] == "runs/demo"


def test_example_rows_become_wavs_a_person_can_play(speech_wave, tmp_path):
    from scipy.io import wavfile

    rep = CompressedSTFT()
    meta = {"representation": {"kind": "stft", **rep.to_dict()}}
    spec, _ = rep.analyse(torch.from_numpy(speech_wave)[None])
    rows = [{"title": "item 7, label one", "panels": [], "signals": [("clean (one)", spec[0]), ("sequential: one", spec[0] * 3)]}]
    paths = SPEECH.example_files(rows, tmp_path, meta)
    assert [p.name for p in paths] == ["00_item7_0_clean_one.wav", "00_item7_1_sequential_one.wav"]
    rate, pcm = wavfile.read(paths[1])
    assert rate == 16000 and pcm.dtype == np.int16 and 0.85 < np.abs(pcm).max() / 32768 <= 0.9  # normalised, unclipped
    assert abs(len(pcm) - len(speech_wave)) < rep.hop
    panel = SPEECH.example_panel(spec[0])
    assert panel.shape == spec.shape[-2:] and panel.min() >= -1 and panel.max() <= 1


def test_headline_only_without_picks_is_one_line(capsys):
    from coupled.cli import main

    code = main(["evaluate", "configs/speech.yaml", "--headline-only", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "--headline-only needs the validation picks" in err
