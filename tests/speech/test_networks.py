"""The speech representations (compressed STFT, log-mel) and the speech denoisers (signal U-Net, logit net)."""

import json

import numpy as np
import pytest
import torch

from coupled.domains.speech.frontend import mel_filterbank, mel_to_linear
from coupled.domains.speech.networks import (SIGNAL_UNET_PRESETS, SpeechLogitNet, SpeechLogitNetConfig,
                                             SpeechSignalUNet, SpeechSignalUNetConfig, align_logits, count_parameters,
                                             logit_frame_index, logit_net_config, signal_unet_config)
from coupled.domains.speech.recogniser import CTCRecogniser, RecogniserConfig, collate
from coupled.domains.speech.representation import (CompressedSTFT, LogMel, RecogniserOnRepresentation,
                                                   representation_from_dict, representation_to_dict)
from coupled.engine.classifier import FrozenClassifier
from coupled.errors import CoupledError

REPS = {"stft": CompressedSTFT(), "mel": LogMel()}
K = 22


def _signals(lengths, seed=0):
    """Chirps in noise with silent gaps (digital zeros), one per length, as [B, N] with lengths [B]."""
    g = np.random.default_rng(seed)
    waves = []
    for n in lengths:
        t = np.arange(n) / 16000
        w = 0.5 * np.sin(2 * np.pi * (200 + 1500 * t) * t) + 0.05 * g.standard_normal(n)
        w[n // 3: n // 3 + 800] = 0.0
        waves.append(w.astype(np.float32))
    return collate(waves)


def _max_abs(x):
    return float(x.abs().max()) if x.numel() else 0.0


def _rel_err(a, b):
    return float((a - b).norm() / b.norm())


# ----------------------------------------------------------------------------------------------- representations


@pytest.mark.parametrize("kind", ["stft", "mel"])
def test_round_trip_on_real_speech_and_padding(kind, speech_wave):
    rep = REPS[kind]
    noisy = speech_wave + 0.05 * np.random.default_rng(1).standard_normal(len(speech_wave)).astype(np.float32)
    x, n = collate([noisy, noisy[:7000], noisy[:20000]])
    r, frames = rep.analyse(x, n)
    assert r.dtype == torch.float32 and not r.is_complex()
    assert r.shape == (3, rep.channels, rep.bins, len(noisy) // rep.hop + 1)
    assert frames.tolist() == [int(v) // rep.hop + 1 for v in n]
    y = rep.synthesise(r, n, reference=x)  # the mel resynthesises its own mel: gain 1
    assert y.shape == x.shape
    assert float((y - x).abs().max()) < 1e-5 * float(x.abs().max())
    for b in (1, 2):  # a padded item is what it is alone, and zero past its end
        alone, f = rep.analyse(x[b:b + 1, : n[b]])
        torch.testing.assert_close(r[b, ..., : f[0]], alone[0], atol=1e-6, rtol=0)
        assert float(r[b, ..., f[0]:].abs().max()) == 0.0
        back = rep.synthesise(alone, n[b:b + 1], reference=x[b:b + 1, : n[b]])
        torch.testing.assert_close(back[0], y[b, : n[b]], atol=1e-6, rtol=0)
        assert float(y[b, n[b]:].abs().max()) == 0.0


def test_compressed_stft_is_the_paper_s_transform():
    rep = CompressedSTFT()
    assert (rep.n_fft, rep.hop, rep.alpha, rep.bins) == (510, 128, 0.5, 256)
    x, n = _signals([16000, 5000])
    r, _ = rep.analyse(x, n)
    r4, _ = rep.analyse(4 * x, n)
    torch.testing.assert_close(r4, 2 * r, atol=1e-5, rtol=1e-5)  # |X|^0.5: 4x the audio is 2x the values
    # magnitude beta |X|^alpha with the phase kept, against a plain periodic-Hann STFT of frame 20
    seg = torch.nn.functional.pad(x[0], (255, 255))[20 * 128: 20 * 128 + 510] * torch.hann_window(510)
    X = torch.fft.rfft(seg)
    want = rep.beta * X.abs() ** 0.5 * torch.exp(1j * X.angle())
    torch.testing.assert_close(torch.complex(r[0, 0, :, 20], r[0, 1, :, 20]), want.to(torch.complex64),
                               atol=1e-4, rtol=1e-4)
    y = rep.synthesise(r, n)
    assert _rel_err(y, x) < 1e-6


def test_log_mel_is_the_recogniser_s_input():
    torch.manual_seed(0)
    m = CTCRecogniser(RecogniserConfig(channels=16, dilations=(1, 2))).eval()
    rep = LogMel.for_recogniser(m.cfg)
    assert rep == LogMel()
    x, n = _signals([16000, 9000, 3000])
    r, frames = rep.analyse(x, n)
    with torch.no_grad():
        torch.testing.assert_close(m.forward_features(rep.log_mel(r), frames), m(x, n), atol=1e-5, rtol=1e-5)
    # the value scale is the recogniser's own affine: digital silence at -1
    silent, _ = rep.analyse(torch.zeros(1, 4000))
    assert float(silent.min()) == pytest.approx(-1.0, abs=1e-4)


def test_log_mel_resynthesis_applies_a_known_gain():
    rep = LogMel()
    t = np.arange(16000) / 16000
    low, high = 0.3 * np.sin(2 * np.pi * 300 * t), 0.3 * np.sin(2 * np.pi * 4000 * t)
    x, n = collate([(low + high).astype(np.float32)])
    power, frames = rep.mel_power(x, n)
    # a uniform power gain of 1/4 is an amplitude gain of 1/2
    half = rep.synthesise(rep.from_power(0.25 * power, frames), n, reference=x)
    assert _rel_err(half, 0.5 * x) < 1e-4
    # keep the bands below 1.5 kHz, drop the rest: the 4 kHz tone goes, the 300 Hz tone stays
    fb = mel_filterbank(rep.n_mels, rep.n_fft, rep.sample_rate)
    centre = fb.argmax(1) * 8000 / (fb.shape[1] - 1)
    keep = (centre < 1500).float()[None, :, None]
    out = rep.synthesise(rep.from_power(power * keep, frames), n, reference=x)
    mid = slice(2000, 14000)  # away from the utterance's edges
    assert _rel_err(out[0, mid], torch.as_tensor(low[mid], dtype=torch.float32)) < 1e-3
    # a gain is capped at max_gain
    loud = rep.synthesise(rep.from_power(1e6 * power, frames), n, reference=x)
    assert _rel_err(loud, rep.max_gain * x) < 1e-4
    # a gain of 1 in every band is exactly 1 in every bin
    torch.testing.assert_close(mel_to_linear(fb).sum(1), torch.ones(fb.shape[1]))


@pytest.mark.parametrize("kind", ["stft", "mel"])
def test_the_recogniser_reads_a_representation_as_it_hears_the_audio(kind):
    """RecogniserOnRepresentation is f for the engine when the signals are representations with frame lengths."""
    torch.manual_seed(0)
    m = CTCRecogniser(RecogniserConfig(channels=16, dilations=(1, 2))).eval()
    rep = REPS[kind]
    f = RecogniserOnRepresentation(m, rep)
    x, n = _signals([16000, 5000, 9999])
    r, frames = rep.analyse(x, n)
    with torch.no_grad():
        logits = f(r, frames)
    valid = FrozenClassifier(f).frame_lengths(frames, logits.shape[1])
    assert valid.tolist() == f.output_lengths(frames).tolist()
    for b in range(3):
        # the mel is read as is; the STFT is heard as its resynthesis, hop * (T - 1) samples long
        heard = int(n[b]) if kind == "mel" else int(f.samples(frames[b]))
        with torch.no_grad():
            alone = m(x[b:b + 1, :heard])
        assert alone.shape[1] == valid[b]
        torch.testing.assert_close(logits[b, : valid[b]], alone[0], atol=1e-5, rtol=1e-5)
    # the message names the keys that differ with the recogniser's values, and the Python fix
    with pytest.raises(CoupledError, match=r"differs from the recogniser's front end in n_mels; .*\{kind: mel, n_mels: 64\}"
                                           r".*LogMel.for_recogniser"):
        RecogniserOnRepresentation(m, LogMel(n_mels=40))


def test_representation_configs_round_trip_through_json():
    for rep in (CompressedSTFT(), LogMel(), CompressedSTFT(alpha=0.667, beta=1.2), LogMel(max_gain=3.0)):
        d = json.loads(json.dumps(representation_to_dict(rep)))
        assert representation_from_dict(d) == rep
    with pytest.raises(CoupledError, match="valid: alpha, beta"):
        CompressedSTFT.from_dict({"alpah": 0.5})
    with pytest.raises(CoupledError, match="valid: stft, mel"):
        representation_from_dict({"kind": "mfcc"})
    with pytest.raises(CoupledError, match="twice the hop"):
        CompressedSTFT(n_fft=200)


def test_representation_errors_are_one_line():
    rep = CompressedSTFT()
    with pytest.raises(CoupledError, match=r"\[B, N\].*collate"):
        rep.analyse(torch.zeros(16000))
    with pytest.raises(CoupledError, match="lengths must be"):
        rep.analyse(torch.zeros(2, 100), torch.tensor([100, 200]))
    with pytest.raises(CoupledError, match=r"\[B, 2, 256, T\]"):
        rep.synthesise(torch.zeros(1, 1, 64, 10), torch.tensor([1000]))
    with pytest.raises(CoupledError, match="real"):
        rep.synthesise(torch.zeros(1, 2, 256, 10, dtype=torch.complex64), torch.tensor([1000]))
    r, _ = LogMel().analyse(torch.ones(1, 1000))
    with pytest.raises(CoupledError, match="reference= the degraded waveform"):
        LogMel().synthesise(r, torch.tensor([1000]))
    with pytest.raises(CoupledError) as err:
        rep.analyse(torch.zeros(16000))
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------------------------- frame alignment


@pytest.mark.parametrize("hop", [128, 160])
def test_a_logit_frame_reaches_the_signal_frames_of_its_40_ms(hop):
    T_l, T = 30, (29 * 640) // hop + 1  # a signal long enough for every logit frame
    for j in (0, 1, 7, 13):
        logits = torch.zeros(1, T_l, K)
        logits[0, j, 5] = 1.0
        aligned = align_logits(logits, T, hop)
        hit = torch.nonzero(aligned[0, :, 5]).flatten().tolist()
        want = [i for i in range(T) if 640 * j - 320 <= hop * i < 640 * j + 320]
        assert hit == want and aligned[0, hit, 5].eq(1).all() and aligned.sum() == len(want)
    # an item never reads past the last logit frame centred at or before its last signal frame
    lengths = torch.tensor([T, 40, 7])
    idx = logit_frame_index(T, hop, lengths, T_l)
    for b, n in enumerate(lengths.tolist()):
        assert int(idx[b, :n].max()) == (hop * (n - 1)) // 640


def test_the_mel_unet_sees_logit_frame_k_at_its_middle_frame_k():
    """Mel frames are 10 ms and the U-Net's middle level is 4 frames: middle frame k is logit frame k."""
    torch.manual_seed(0)
    net = SpeechSignalUNet(signal_unet_config(LogMel(), "tiny")).eval()
    T, T_l = 201, 51
    logits = torch.randn(2, T_l, K)
    lengths = torch.tensor([201, 93])
    mid = -(-lengths // 4)
    with torch.no_grad():
        cond = net.logit_conditioning(logits, None, 2, T, lengths, int(mid.max()), mid)
        emb = net.logit_mlp(logits).transpose(1, 2)
    for b in range(2):
        torch.testing.assert_close(cond[b, :, : mid[b]], emb[b, :, : mid[b]], atol=1e-6, rtol=0)
        assert _max_abs(cond[b, :, mid[b]:]) == 0.0


# ----------------------------------------------------------------------------------------------- signal U-Net


def _randomise_output(net):
    """Non-zero output layer and gate, so the padding tests compare something other than zeros."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        net.conv_out.weight.copy_(0.05 * torch.randn(net.conv_out.weight.shape, generator=g))
        net.logit_gate.copy_(torch.randn(net.logit_gate.shape, generator=g))
    return net


@pytest.mark.parametrize("kind", ["stft", "mel"])
def test_signal_unet_padding_invariance(kind):
    """Three items of 2 s, 0.15 s and 1.1 s batched with garbage in the padding give what they give alone."""
    rep = REPS[kind]
    torch.manual_seed(0)
    net = _randomise_output(SpeechSignalUNet(signal_unet_config(rep))).eval()
    seconds = (2.0, 0.15, 1.1)
    frames = [rep.frames(int(16000 * s)) for s in seconds]
    logit_frames = [-(-(int(16000 * s) // 160 + 1) // 4) for s in seconds]
    B, T, T_l = 3, max(frames), max(logit_frames)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(B, rep.channels, rep.bins, T, generator=g)  # padding is noise, not zeros
    obs = torch.randn(B, rep.channels, rep.bins, T, generator=g)
    logits = torch.randn(B, T_l, K, generator=g)
    t = torch.tensor([0.2, 0.6, 0.95])
    use = torch.tensor([True, True, False])
    lengths = torch.tensor(frames)
    with torch.no_grad():
        batched = net(x, t, obs, logits=logits, logits_mask=use, lengths=lengths)
        assert batched.shape == x.shape
        for b in range(B):
            n, m = frames[b], logit_frames[b]
            alone = net(x[b:b + 1, ..., :n], t[b:b + 1], obs[b:b + 1, ..., :n], logits=logits[b:b + 1, :m],
                        logits_mask=use[b:b + 1])
            assert float(alone.abs().max()) > 1e-2
            torch.testing.assert_close(batched[b, ..., :n], alone[0], atol=1e-5, rtol=1e-5)
            assert _max_abs(batched[b, ..., n:]) == 0.0


def test_the_stft_unet_folds_adjacent_bins_into_channels():
    net = SpeechSignalUNet(signal_unet_config(REPS["stft"], "tiny"))
    assert (net.cfg.freq_patch, net.cfg.bins) == (4, 256)
    x = torch.randn(2, 4, 256, 9)
    folded = net._fold(x)
    assert folded.shape == (2, 16, 64, 9)
    torch.testing.assert_close(folded[:, 1 * 4 + 3, 10], x[:, 1, 4 * 10 + 3], atol=0, rtol=0)  # channel 1, bin 43
    torch.testing.assert_close(net._unfold(folded), x, atol=0, rtol=0)


def test_signal_unet_gradients_ignore_padding():
    rep = REPS["mel"]
    torch.manual_seed(0)
    net = _randomise_output(SpeechSignalUNet(signal_unet_config(rep, "tiny")))
    x = torch.randn(2, 1, 64, 60, requires_grad=True)
    lengths = torch.tensor([60, 23])
    out = net(x, torch.tensor([0.3, 0.7]), torch.randn(2, 1, 64, 60), logits=torch.randn(2, 15, K), lengths=lengths)
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all() and float(x.grad[1, ..., 23:].abs().max()) == 0.0
    assert net.logit_gate.grad is not None and float(net.logit_gate.grad.abs().max()) > 0


def test_untrained_signal_unet_outputs_zero_and_ignores_logits():
    rep = REPS["stft"]
    torch.manual_seed(0)
    net = SpeechSignalUNet(signal_unet_config(rep, "tiny")).eval()
    x, t = torch.randn(2, 2, 256, 40), torch.tensor([0.5, 0.9])
    a, b = torch.randn(2, 11, K), 10 * torch.randn(2, 11, K)
    with torch.no_grad():
        assert float(net(x, t, x, logits=a).abs().max()) == 0.0  # zero-initialised last conv
        with torch.no_grad():
            net.conv_out.weight.normal_(0, 0.05)  # the gate alone must keep the logits out
        ref = net(x, t, x)
        assert float(ref.abs().max()) > 1e-2
        for logits, mask in ((a, None), (b, None), (a, torch.tensor([True, False]))):
            torch.testing.assert_close(net(x, t, x, logits=logits, logits_mask=mask), ref, atol=0, rtol=0)
        net.logit_gate.data.fill_(1.0)  # once the gate opens, the logits (and the null token's absence) matter
        assert _rel_err(net(x, t, x, logits=a), net(x, t, x, logits=b)) > 1e-3
        with_mask = net(x, t, x, logits=a, logits_mask=torch.tensor([True, False]))
        torch.testing.assert_close(with_mask[1], net(x, t, x)[1])
        torch.testing.assert_close(with_mask[0], net(x, t, x, logits=a)[0])


def test_parameter_counts_are_under_the_cap():
    counts = {}
    for kind, rep in REPS.items():
        for size in SIGNAL_UNET_PRESETS:
            counts[kind, size] = count_parameters(SpeechSignalUNet(signal_unet_config(rep, size)))
        assert count_parameters(SpeechLogitNet(logit_net_config(rep))) < 1_000_000
    assert all(c < 2_000_000 for c in counts.values()), counts
    assert 800_000 < counts["stft", "small"] < 1_500_000, counts  # the default: about 1 M
    assert counts["stft", "tiny"] < counts["stft", "small"] < counts["stft", "base"]


def test_network_configs_round_trip_through_json_and_reject_bad_values():
    for cfg in (signal_unet_config(REPS["stft"]), signal_unet_config(REPS["mel"], "base", dropout=0.1),
                SpeechLogitNetConfig(), logit_net_config(None, hidden=64, dilations=(1, 3))):
        back = type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert back == cfg
    net = SpeechSignalUNet(signal_unet_config(REPS["mel"], "tiny"))
    assert SpeechSignalUNet(SpeechSignalUNetConfig.from_dict(net.cfg.to_dict())).cfg == net.cfg
    with pytest.raises(CoupledError, match="valid:.*channels"):
        SpeechSignalUNetConfig.from_dict({"chanels": [8]})
    with pytest.raises(CoupledError, match=r"time_strides must be a non-empty list of values in \[1, 2\]"):
        SpeechSignalUNetConfig(time_strides=(3, 2, 1))
    with pytest.raises(CoupledError, match="one entry .* per channels entry"):
        SpeechSignalUNetConfig(time_strides=(2, 2))
    with pytest.raises(CoupledError, match="multiple of 2\\^3"):
        SpeechSignalUNetConfig(bins=257)
    with pytest.raises(CoupledError, match="kernel must be odd"):
        SpeechLogitNetConfig(kernel=4)
    with pytest.raises(CoupledError, match="unknown speech U-Net size 'huge'; valid: tiny, small, base"):
        signal_unet_config(REPS["stft"], "huge")


def test_signal_unet_shape_errors_are_one_line():
    net = SpeechSignalUNet(signal_unet_config(REPS["stft"], "tiny"))
    x, t = torch.zeros(2, 2, 256, 30), torch.tensor([0.1, 0.2])
    cases = [
        (dict(x_t=torch.zeros(2, 1, 256, 30)), r"x_t must have shape \[2, 2, 256, T\]"),
        (dict(observation=torch.zeros(2, 2, 256, 31)), r"observation must have shape \[2, 2, 256, 30\]"),
        (dict(logits=torch.zeros(2, 8, 10)), r"logits must have shape \[2, T, 22\]"),
        (dict(logits=torch.zeros(2, 8, K), logits_mask=torch.ones(2)), "logits_mask must be a bool tensor"),
        (dict(lengths=torch.tensor([30, 31])), r"lengths must lie in 1..30"),
        (dict(lengths=torch.tensor([3.0, 4.0])), "lengths must be an integer tensor"),
        (dict(t=torch.zeros(3)), r"t must have shape \[2\]"),
        (dict(x_t=torch.zeros(2, 2, 256, 30, dtype=torch.complex64)), "x_t must be real"),
    ]
    for change, message in cases:
        args = {"x_t": x, "t": t, "observation": x, **change}
        if "x_t" in change and "observation" not in change:
            args["observation"] = change["x_t"] if change["x_t"].is_complex() else x
        with pytest.raises(CoupledError, match=message) as err:
            net(**args)
        assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------------------------- logit net


def test_logit_net_padding_invariance():
    rep = REPS["stft"]
    torch.manual_seed(0)
    net = SpeechLogitNet(logit_net_config(rep)).eval()
    with torch.no_grad():
        net.out.weight.normal_(0, 0.1)
    seconds = (2.0, 0.15, 1.1)
    samples = [int(16000 * s) for s in seconds]
    logit_frames = [-(-(n // 160 + 1) // 4) for n in samples]
    signal_frames = [rep.frames(n) for n in samples]
    B, T, Ts = 3, max(logit_frames), max(signal_frames)
    g = torch.Generator().manual_seed(3)
    y, ev, centre = (torch.randn(B, T, K, generator=g) for _ in range(3))
    signal = torch.randn(B, 2, 256, Ts, generator=g)
    t = torch.tensor([0.1, 0.5, 0.8])
    with torch.no_grad():
        for kwargs in ({"signal": signal, "center": centre}, {}):
            batched = net(y, t, ev, lengths=torch.tensor(logit_frames), signal_lengths=torch.tensor(signal_frames),
                          **kwargs)
            for b in range(B):
                n, m = logit_frames[b], signal_frames[b]
                one = {k: (v[b:b + 1, ..., :m] if k == "signal" else v[b:b + 1, :n]) for k, v in kwargs.items()}
                alone = net(y[b:b + 1, :n], t[b:b + 1], ev[b:b + 1, :n], **one)
                assert float(alone.abs().max()) > 1e-2
                torch.testing.assert_close(batched[b, :n], alone[0], atol=1e-5, rtol=1e-5)
                assert _max_abs(batched[b, n:]) == 0.0
        # the signal features and the centre are inputs
        assert _rel_err(net(y, t, ev, signal=signal), net(y, t, ev)) > 1e-4
        assert _rel_err(net(y, t, ev, center=centre), net(y, t, ev)) > 1e-4


def test_logit_net_starts_at_zero_and_checks_shapes():
    net = SpeechLogitNet(logit_net_config(REPS["mel"]))
    y = torch.randn(2, 12, K)
    with torch.no_grad():
        assert _max_abs(net(y, torch.tensor([0.2, 0.4]), y, signal=torch.randn(2, 1, 64, 46))) == 0.0
    cases = [
        (dict(y_t=torch.zeros(2, 12, 10)), r"y_t must have shape \[2, T, 22\]"),
        (dict(evidence=torch.zeros(2, 11, K)), r"evidence must have shape \[2, 12, 22\]"),
        (dict(center=torch.zeros(2, 12, 3)), r"center must have shape \[2, 12, 22\]"),
        (dict(signal=torch.zeros(2, 2, 256, 46)), r"signal must have shape \[2, 1, 64, T\]"),
        (dict(signal=torch.zeros(2, 1, 64, 46), signal_lengths=torch.tensor([47, 3])), "signal_lengths must lie in"),
        (dict(lengths=torch.tensor([0, 12])), r"lengths must lie in 1..12"),
    ]
    for change, message in cases:
        args = {"y_t": y, "t": torch.tensor([0.2, 0.4]), "evidence": y, **change}
        if "y_t" in change:
            args["evidence"] = change["y_t"]
        with pytest.raises(CoupledError, match=message) as err:
            net(**args)
        assert "\n" not in str(err.value)
