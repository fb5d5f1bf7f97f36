"""The fault-injection table: bad inputs through the real `coupled` command, each one line on stderr, exit 2.

Most rows call `coupled.cli.main` in this process (every check runs before any training or evaluation
starts, so a row takes milliseconds); a few run the installed command in a subprocess to show the same
holds there. A failed `train` must leave no output folder behind.
"""

import shutil
import struct
import zlib

import numpy as np
import pytest
import yaml

from tests.image.conftest import TINY

from .conftest import BUNDLE, one_line_error, run, tiny_config

CONFIG_ROWS = {  # config override -> what the message must name
    "steps_abc": ({"classifier": {"steps": "abc"}}, "classifier.steps"),
    "steps_negative": ({"signal": {"steps": -5}}, "signal.steps"),
    "steps_fraction": ({"signal": {"steps": 2.7}}, "signal.steps"),
    "batch_size_0": ({"classifier": {"batch_size": 0}}, "classifier.batch_size"),
    "lr_negative": ({"classifier": {"lr": -1}}, "classifier.lr"),
    "lr_nan": ({"classifier": {"lr": float("nan")}}, "classifier.lr"),
    "checkpoint_every_0": ({"train": {"checkpoint_every": 0}}, "train.checkpoint_every"),
    "seed_string": ({"seed": "zero"}, "seed"),
    "seed_huge": ({"seed": 10**30}, "seed"),
    "seed_negative": ({"seed": -1}, "seed"),
    "eval_batch_size_0": ({"evaluation": {"batch_size": 0}}, "evaluation.batch_size"),
    "eval_seeds_int": ({"evaluation": {"seeds": 5}}, "evaluation.seeds"),
    "eval_seeds_empty": ({"evaluation": {"seeds": []}}, "evaluation.seeds"),
    "eval_max_items_negative": ({"evaluation": {"max_items": -990}}, "evaluation.max_items"),
    "eval_split": ({"evaluation": {"split": "dev"}}, "evaluation.split"),
    "device_tpu": ({"device": "tpu"}, "device"),
    "device_cuda": ({"device": "cuda"}, "device"),
    "data_unknown_key": ({"data": {"kind": "mnist5k", "path": "x"}}, "data.path"),
    "data_unknown_kind": ({"data": {"kind": "mnist6k"}}, "data.kind"),
    "ema_decay_1": ({"signal": {"ema_decay": 1.0}}, "signal.ema_decay"),
    "lambda_2": ({"joint": {"lambda": 2}}, "joint.lambda"),
    "signal_logits_string": ({"sampling": {"signal_logits": "yes"}}, "sampling.signal_logits"),
    "sampler_unknown": ({"sampling": {"signal": {"steps": 2, "sampler": "euler", "eta": 0.0}}}, "sampling.signal.sampler"),
    "sampling_steps_0": ({"sampling": {"logits": {"steps": 0, "sampler": "pc"}}}, "sampling.logits.steps"),
    "severity_negative": ({"corruptions": {"severities": {"pixel_noise": {"heavy": -1}}}}, "pixel_noise.heavy"),
    "train_severity_reversed": ({"corruptions": {"train_severity": {"pixel_noise": [0.6, 0.1]}}}, "pixel_noise"),
    "method_options_list": ({"sampling": {"methods": {"parallel": [1]}}}, "methods.parallel"),
    "unknown_key": ({"signal": {"stepz": 3}}, "signal.stepz"),
    "section_not_mapping": ({"signal": 5}, "signal"),
    "name_empty": ({"name": ""}, "name"),
    # your own classifier (classifier.factory + weights) and init weights (issue 8)
    "classifier_factory_number": ({"classifier": {"factory": 5, "weights": "w.safetensors"}},
                                  "classifier.factory must be null or a 'module.path:function' string"),
    "classifier_factory_no_colon": ({"classifier": {"factory": "mlp", "weights": "w.safetensors"}}, "module.path:function"),
    "classifier_factory_no_module": ({"classifier": {"factory": "no_such_module_xyz:f", "weights": "w.safetensors"}},
                                     "cannot import module 'no_such_module_xyz'"),
    "classifier_factory_no_function": ({"classifier": {"factory": "json:no_such_fn", "weights": "w.safetensors"}},
                                       "has no attribute 'no_such_fn'"),
    "classifier_factory_not_function": ({"classifier": {"factory": "math:pi", "weights": "w.safetensors"}}, "not a function"),
    "classifier_factory_without_weights": ({"classifier": {"factory": "json:dumps"}}, "classifier.weights is not set"),
    "classifier_weights_without_factory": ({"classifier": {"weights": "w.safetensors"}}, "needs classifier.factory"),
    "classifier_weights_empty": ({"classifier": {"factory": "json:dumps", "weights": " "}}, "classifier.weights"),
    "signal_init_number": ({"signal": {"init": 3}}, "signal.init must be null or the path of a .safetensors file"),
    "signal_init_missing": ({"signal": {"init": "nowhere/signal.safetensors"}}, "signal.init: no such file"),
    "signal_init_not_safetensors": ({"signal": {"init": "configs/mnist.yaml"}}, "must name a .safetensors file"),
    "signal_init_other_net": ({"signal": {**TINY["signal"], "init": str(BUNDLE / "signal_pretrained.safetensors")}},
                              "net.channels [16, 48] there, [8, 16] here"),
    "logits_init_signal_weights": ({"logits": {**TINY["logits"], "init": str(BUNDLE / "signal.safetensors")}},
                                   "not a logits network"),
    "card_init_other_net": ({"card": {**TINY["card"], "init": str(BUNDLE / "card.safetensors")}},
                            "card.init: " + str(BUNDLE / "card.safetensors") + " does not match"),
    # network configs are built before anything is written (issue 17): one line, no folder left behind
    "signal_net_unknown_key": ({"signal": {**TINY["signal"], "net": {**TINY["signal"]["net"], "depth": 3}}},
                               "config key signal.net: unknown SignalUNetConfig option(s) ['depth']"),
    "signal_net_time_scale_string": ({"signal": {**TINY["signal"], "net": {**TINY["signal"]["net"], "time_scale": "abc"}}},
                                     "config key signal.net: SignalUNetConfig.time_scale must be a finite number"),
    "logits_net_use_center_string": ({"logits": {**TINY["logits"], "net": {**TINY["logits"]["net"], "use_center": "maybe"}}},
                                     "config key logits.net: LogitNetConfig.use_center must be true or false"),
    "card_net_hidden_0": ({"card": {**TINY["card"], "net": {**TINY["card"]["net"], "hidden": 0}}}, "config key card.net"),
    "classifier_net_width_0": ({"classifier": {**TINY["classifier"], "steps": 8, "net": {"width": 0}}},
                               "config key classifier.net: ClassifierConfig.width"),
    # method option values are checked with the config, not when the method first runs
    "method_option_negative": ({"sampling": {"methods": {"alternating": {"rounds": -3}}}},
                               "sampling.methods.alternating.rounds must be an integer >= 1"),
    "method_window_reversed": ({"sampling": {"methods": {"nested": {"refresh_window": [0.9, 0.1]}}}},
                               "sampling.methods.nested.refresh_window"),
    # the predictive enhancer (issue 16): its stage's budget, and the options its own net cannot take
    "predictive_steps_0": ({"predictive": {"steps": 0}}, "predictive.steps"),
    "predictive_lr_string": ({"predictive": {"lr": "fast"}}, "predictive.lr"),
    "predictive_signal_net": ({"sampling": {"methods": {"predictive": {"signal_net": "joint"}}}},
                              "sampling.methods.predictive.signal_net: method 'predictive' runs its own net"),
    "predictive_observation_weight_2": ({"sampling": {"methods": {"predictive": {"observation_weight": 2}}}},
                                        "sampling.methods.predictive.observation_weight must lie in [0, 1]"),
}


@pytest.mark.parametrize("row", sorted(CONFIG_ROWS))
def test_bad_config_value_is_one_line_and_writes_nothing(cli, tmp_path, row):
    override, key = CONFIG_ROWS[row]
    cfg = tiny_config(tmp_path, **override)
    code, _, err = cli("train", cfg, "--quiet", "--accelerator", "cpu")
    assert key in one_line_error(code, err)
    assert not (tmp_path / "ckpt").exists(), "a failed run left its output folder behind"


USER_CLASSIFIER = '''
from torch import nn


def mlp(hidden=8, outputs=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


def for_32px():
    return nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 10))


def raises():
    raise RuntimeError("no GPU here")


def not_a_module():
    return [1, 2]
'''

# a user's classifier whose problem shows only with its weights or its output: (classifier section, message);
# {w} is the weights of mlp(hidden=8), {w16} of mlp(hidden=16), {w7} of mlp(outputs=7), {w32} of for_32px()
BAD = "coupled_test_bad_classifier"
USER_CLASSIFIER_ROWS = {
    "weights_missing": ({"factory": f"{BAD}:mlp", "weights": "{dir}/none.safetensors"}, "none.safetensors does not exist"),
    "weights_corrupt": ({"factory": f"{BAD}:mlp", "weights": "{dir}/junk.safetensors"}, "not a readable safetensors file"),
    "weights_other_net": ({"factory": f"{BAD}:mlp", "weights": "{w16}"}, f"do not fit the network '{BAD}:mlp' builds"),
    "weights_nan": ({"factory": f"{BAD}:mlp", "weights": "{dir}/nan.safetensors"}, "NaN or infinite"),
    "net_kwargs_wrong": ({"factory": f"{BAD}:mlp", "net": {"width": 3}, "weights": "{w}"}, "failed when called with net="),
    "factory_raises": ({"factory": f"{BAD}:raises", "weights": "{w}"}, "RuntimeError: no GPU here"),
    "factory_not_module": ({"factory": f"{BAD}:not_a_module", "weights": "{w}"}, "not a torch.nn.Module"),
    "output_width": ({"factory": f"{BAD}:mlp", "net": {"outputs": 7}, "weights": "{w7}"},
                     "returns 7 logits per item but data set mnist5k has 10 classes"),
    "input_shape": ({"factory": f"{BAD}:for_32px", "weights": "{w32}"}, "failed on input of shape (4, 1, 28, 28)"),
}


@pytest.mark.parametrize("row", sorted(USER_CLASSIFIER_ROWS))
def test_bad_user_classifier_is_one_line_and_writes_nothing(cli, tmp_path, monkeypatch, row):
    import importlib

    import torch
    from safetensors.torch import save_file

    (tmp_path / "code").mkdir()
    (tmp_path / "code" / f"{BAD}.py").write_text(USER_CLASSIFIER)
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    m = importlib.import_module(BAD)
    paths = {"{dir}": str(tmp_path)}
    for key, net in {"{w}": m.mlp(), "{w16}": m.mlp(hidden=16), "{w7}": m.mlp(outputs=7), "{w32}": m.for_32px()}.items():
        paths[key] = str(tmp_path / f"{key[1:-1]}.safetensors")
        save_file(net.state_dict(), paths[key])
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 40)
    save_file({k: torch.full_like(v, float("nan")) for k, v in m.mlp().state_dict().items()}, tmp_path / "nan.safetensors")
    section, message = USER_CLASSIFIER_ROWS[row]
    weights = section["weights"]
    for key, path in paths.items():
        weights = weights.replace(key, path)
    cfg = tiny_config(tmp_path, classifier={"steps": 8, "batch_size": 32, **section, "weights": weights})
    code, _, err = cli("train", cfg, "--quiet", "--accelerator", "cpu")
    assert message in one_line_error(code, err)
    assert not (tmp_path / "ckpt").exists(), "a failed run left its output folder behind"


@pytest.mark.parametrize("text, message", [
    (b"seed: 0\nname: caf\xe9\n", "not UTF-8"),
    (b"signal: {steps: [\n", "cannot parse"),
    (b"- a\n- b\n", "must hold a mapping"),
    (b"", "is empty"),  # issue 17: an empty file was every default, silently
    (b"# only a comment\n", "is empty"),
])
def test_unreadable_config_file_is_one_line(cli, tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(text)
    code, _, err = cli("evaluate", path, "--quiet")
    assert message in one_line_error(code, err)


def _existing_file(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    return f


# (argv builder, what the message must name); {cfg} is a valid tiny config, {file} an existing file, {dir} a folder
OPTION_ROWS = [
    (["train", "{cfg}", "--devices", "0"], "--devices"),
    (["train", "{cfg}", "--devices", "-1"], "--devices"),
    (["train", "{cfg}", "--devices", "two"], "--devices"),
    (["train", "{cfg}", "--accelerator", "tpu"], "--accelerator"),
    (["train", "{cfg}", "--accelerator", "gpu"], "--accelerator"),
    (["reproduce", "{cfg}", "--accelerator", "cuda"], "--accelerator"),
    (["reproduce", "{cfg}", "--set", "train.stages=[signal, nope]"], "config key train.stages must list distinct"),
    (["reproduce", "{cfg}", "--set", "train.stages=[signal, signal]"], "config key train.stages must list distinct"),
    (["reproduce", "{cfg}", "--set", "train.stages=signal"], "config key train.stages must be a list"),
    (["train", "{cfg}", "--max-steps", "0"], "--max-steps"),
    (["train", "{cfg}", "--max-steps", "-1"], "--max-steps"),
    (["train", "{cfg}", "--max-steps", "2.7"], "--max-steps"),
    (["train", "{cfg}", "--output", "{file}"], "--output"),
    (["train", "{cfg}", "--output", "{file}/sub"], "--output"),
    (["train", "{cfg}", "--stages", "joint"], "classifier.safetensors"),
    (["train", "{cfg}", "--stages", "pretrain"], "--stages"),
    (["train", "{cfg}", "--stages", "predictive"], "train stage 'signal' first"),
    # the bundled image models hold no predictive enhancer: its method names the stage that trains it
    (["evaluate", "configs/mnist.yaml", "--methods", "predictive", "--max-items", "4", "--levels", "heavy",
      "--corruptions", "pixel_noise", "--seeds", "0", "--out", "{dir}/ev", "--quiet"],
     "has no signal_predictive.safetensors; train it with `coupled train CONFIG --stages predictive`"),
    (["train", "{dir}/missing.yaml"], "no such config file"),
    (["evaluate", "{cfg}", "--max-items", "-5"], "--max-items"),
    (["evaluate", "configs/mnist.yaml", "--picks", "{dir}/missing.json"], "no such picks file"),
    (["evaluate", "configs/mnist.yaml", "--picks", "{file}"], "as JSON"),
    (["evaluate", "configs/mnist.yaml", "--picks", "{file}", "--methods", "noisy"], "drop --methods"),
    (["data", "speech", "--workers", "0"], "--workers"),
    (["data", "speech", "--workers", "-2"], "--workers"),
    (["evaluate", "{cfg}", "--max-items", "0"], "--max-items"),
    (["evaluate", "{cfg}", "--results", "{dir}"], "--results"),
    (["evaluate", "{cfg}", "--out", "{file}"], "--out"),
    (["evaluate", "{cfg}", "--split", "dev"], "--split"),
    (["evaluate", "{cfg}", "--levels", "extreme"], "--levels"),
    (["evaluate", "{cfg}", "--checkpoint", "{dir}/none"], "no such checkpoint folder"),
    (["classify", "x.png", "--checkpoint", "{bundle}", "--severity", "1e308", "--corruption", "gaussian_blur"], "--severity"),
    (["classify", "x.png", "--checkpoint", "{bundle}", "--severity", "nan", "--corruption", "gaussian_blur"], "--severity"),
    (["classify", "x.png", "--checkpoint", "{bundle}", "--severity", "0.5"], "--corruption and --severity"),
    (["classify", "x.png", "--checkpoint", "{bundle}", "--seed", "1e30"], "--seed"),
    (["classify", "x.png", "--checkpoint", "{bundle}", "--seed", "-1"], "--seed"),
    (["classify", "x.png", "--checkpoint", "{bundle}", "--seed", "1.5"], "--seed"),
    (["classify", "x.png", "--checkpoint", "{bundle}", "--seed", str(2**64)], "--seed"),
    (["classify", "x.png", "--checkpoint", "{bundle}", "--input-range", "0..x"], "input_range"),
    (["classify", "x.png", "--checkpoint", "{bundle}", "--method", "magic"], "--method"),
    (["classify", "x.png", "--checkpoint", "{dir}/none"], "no such checkpoint folder"),
    (["classify", "x.png", "--checkpoint", "{bundle}", "--allow-clipped"], "--allow-clipped applies to audio files"),
    (["evaluate", "configs/speech.yaml", "--set", "evaluation.corruption_seed=-1"], "config key evaluation.corruption_seed must lie in"),
    # a generic key now (the generic evaluator reads it): every domain's config takes it and checks it
    (["evaluate", "configs/ecg.yaml", "--set", "evaluation.corruption_seed=-1"], "config key evaluation.corruption_seed must lie in"),
    (["evaluate", "configs/mnist.yaml", "--set", "evaluation.corruption_seed=abc"], "config key evaluation.corruption_seed must be an integer"),
    (["evaluate", "configs/mnist.yaml", "--set", "sampling.signal.timesteps=abc"], "sampling.signal.timesteps must be null or a list"),
    (["evaluate", "configs/mnist.yaml", "--set", "sampling.signal.timesteps=[5, 900, -1]"], "a grid's times must strictly descend"),
    (["evaluate", "configs/speech.yaml", "--set", "evaluation.task=phones"], "evaluation.task must be digits or keywords"),
    (["classify", "x.png", "--checkpoint", "{bundle}", "--pick-for", "pixel_noise"], "--pick-for goes with --picks FILE"),
    (["classify", "x.png", "--checkpoint", "{bundle}", "--picks", "{dir}/none.json"], "no such picks file"),
    (["tune", "{cfg}", "--budget-ms", "-3"], "--budget-ms"),
    (["tune", "{cfg}", "--budget-ms", "inf"], "--budget-ms"),
    (["tune", "{cfg}", "--nets", "bogus"], "--nets"),
    (["classify", "{dir}/missing.png", "--checkpoint", "{bundle}"], "none of the 1 file"),
    (["demo", "--out", "{file}"], "--out"),
    (["demo", "--items", "-995"], "--items"),
    (["demo", "--items", "0"], "--items"),
    (["demo", "--seed", "1e30"], "--seed"),
    (["demo", "--domain", "gaussian", "--items", "-5"], "--items"),
    (["demo", "--domain", "gaussian", "--steps", "0"], "--steps"),
    (["demo", "--domain", "tpu"], "--domain"),
    (["demo", "--no-such-option"], "unrecognized"),
    (["manifest", "{dir}/none"], "no such checkpoint folder"),
    # issue 17: --device, one name per folder flag, bench --publish, a blur severity too large to build
    (["evaluate", "{cfg}", "--device", "tpu"], "--device"),
    (["evaluate", "{cfg}", "--device", "cuda"], "--device"),
    (["demo", "--device", "cuda:x"], "--device"),
    (["classify", "x.png", "--checkpoint", "{bundle}", "--device", "mps"], "--device"),
    (["evaluate", "{cfg}", "--checkpoint", "{dir}/a", "--output", "{dir}/b"], "--output"),
    (["calibrate", "{cfg}", "--checkpoint", "{dir}/none"], "no such checkpoint folder"),
    (["calibrate", "{cfg}", "--checkpoint", "{dir}"], "classifier.json; pass a checkpoint folder"),
    (["bench", "--publish", "--out", "{dir}/bench.json"], "--publish"),
    (["bench", "--publish", "--doc", "{dir}/performance.md"], "--publish"),
    # issue 16 item 7: coupled bench --domain
    (["bench", "--domain", "tpu"], "--domain"),
    (["bench", "configs/mnist.yaml", "--domain", "speech", "--quick"], "--domain speech but configs/mnist.yaml is a image config"),
    (["evaluate", "configs/mnist.yaml", "--out", "{dir}/ev", "--set",
      "corruptions.severities.gaussian_blur.heavy=1e308", "--corruptions", "gaussian_blur", "--levels", "heavy",
      "--methods", "noisy", "--max-items", "4", "--seeds", "0", "--quiet"], "gaussian_blur"),
    # a speech evaluation on a user's folder of WAVs (data.wav_folder, data.transcripts)
    (["evaluate", "configs/speech.yaml", "--set", "data.wav_folder={dir}/none", "--out", "{dir}/ev"], "no such folder"),
    (["evaluate", "configs/speech.yaml", "--set", "data.wav_folder=5", "--out", "{dir}/ev"], "data.wav_folder"),
    (["evaluate", "configs/speech.yaml", "--set", "data.wav_folder={dir}", "--split", "val", "--out", "{dir}/ev"],
     "unknown split 'val'; choose one of: all"),
    (["evaluate", "configs/speech.yaml", "--set", "data.transcripts=", "--out", "{dir}/ev"], "data.transcripts"),
    # speech's coupled diffusion (issue 16): its representation, and the network keys taken from it
    (["train", "configs/speech.yaml", "--set", "representation.kind=wav", "--stages", "signal"],
     "config key representation: unknown speech representation kind 'wav'"),
    (["train", "configs/speech.yaml", "--set", "signal.net.bins=64", "--stages", "signal"], "signal.net.bins"),
    (["train", "configs/speech.yaml", "--set", "corruptions.train_severity.reverb_noise=[0.4,1.0]", "--stages", "signal"],
     "corruptions.train_severity.reverb_noise"),
    # the ECG domain (issue 19): its data kinds and its networks' options
    (["train", "configs/ecg.yaml", "--set", "data.kind=physionet", "--stages", "classifier"], "data.kind must be one of synthetic, cinc2017, wfdb"),
    (["train", "configs/ecg.yaml", "--set", "data.root=x", "--stages", "classifier"], "data.root"),
    (["train", "configs/ecg.yaml", "--set", "signal.net.widht=3", "--stages", "signal"], "unknown SignalUNetConfig option(s) ['widht']"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
]


@pytest.mark.parametrize("argv, key", OPTION_ROWS, ids=[" ".join(a[:1] + a[2:] if len(a) > 1 else a) for a, _ in OPTION_ROWS])
def test_bad_option_is_one_line(cli, tmp_path, argv, key):
    cfg = tiny_config(tmp_path)
    subs = {"{cfg}": str(cfg), "{file}": str(_existing_file(tmp_path)), "{dir}": str(tmp_path), "{bundle}": str(BUNDLE)}
    args = []
    for a in argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        args.append(a)
    code, _, err = cli(*args)
    assert key in one_line_error(code, err)
    assert not (tmp_path / "ckpt").exists()


def _png_header_only(path, width, height):
    """A PNG whose header declares width x height pixels (a decompression bomb if it were decoded)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _npy_header_only(path, shape):
    """A .npy file whose header declares `shape` but holds no data."""
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': %r, }" % (shape,)
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())


BAD_FILES = {
    "empty_npy": (lambda p: p.write_bytes(b""), ".npy", "not a readable .npy"),
    "zero_items_npy": (lambda p: np.save(p, np.zeros((0, 28, 28), np.float32)), ".npy", "shape (0, 28, 28)"),
    "huge_header_npy": (lambda p: _npy_header_only(p, (1_000_000, 1_000_000)), ".npy", "shape (1000000, 1000000)"),
    "truncated_npy": (lambda p: p.write_bytes(open_npy_bytes()[:100]), ".npy", "not a readable .npy"),
    "object_npy": (lambda p: np.save(p, np.array([None] * 784, dtype=object).reshape(28, 28), allow_pickle=True),
                   ".npy", "unsupported dtype"),
    "float_0_255_npy": (lambda p: np.save(p, np.full((28, 28), 200.0, np.float32)), ".npy", "--input-range 0..255"),
    "nan_npy": (lambda p: np.save(p, np.full((28, 28), np.nan, np.float32)), ".npy", "NaN"),
    "bomb_png": (lambda p: _png_header_only(p, 100_000, 100_000), ".png", "decompression bomb"),
    "big_png": (lambda p: _png_header_only(p, 5000, 5000), ".png", "5000x5000 pixels"),
    "wrong_size_png": (lambda p: _png_header_only(p, 32, 32), ".png", "32x32 pixels"),
    "junk_png": (lambda p: p.write_bytes(b"not a png at all"), ".png", "not a readable image"),
}


def open_npy_bytes():
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros((28, 28), np.float32))
    return buf.getvalue()


@pytest.mark.parametrize("row", sorted(BAD_FILES))
def test_bad_file_to_classify_is_refused_before_decoding(cli, tmp_path, row):
    make, suffix, message = BAD_FILES[row]
    path = tmp_path / f"input{suffix}"
    make(path)
    code, out, err = cli("classify", path, "--checkpoint", BUNDLE, "--method", "noisy")
    one_line_error(code, err)
    assert message in out, out


def test_float_0_255_npy_classifies_with_input_range(cli, tmp_path):
    from coupled.domains.image.data import load_mnist5k

    digit = load_mnist5k()["test"].signals[0, 0].numpy()
    np.save(tmp_path / "d255.npy", ((digit + 1) * 127.5).astype(np.float32))
    np.save(tmp_path / "d01.npy", ((digit + 1) / 2).astype(np.float32))
    code, out, err = cli("classify", tmp_path / "d255.npy", "--checkpoint", BUNDLE, "--method", "noisy",
                         "--input-range", "0..255")
    code2, out2, _ = cli("classify", tmp_path / "d01.npy", "--checkpoint", BUNDLE, "--method", "noisy")
    assert code == code2 == 0, err
    assert out.strip().splitlines()[-1].split("\t")[1:] == out2.strip().splitlines()[-1].split("\t")[1:]  # after the header


def test_corrupt_bundle_through_classify_is_one_line(cli, tmp_path):
    bundle = tmp_path / "mnist"
    shutil.copytree(BUNDLE, bundle, ignore=shutil.ignore_patterns("logs"))
    w = bundle / "signal.safetensors"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0x40
    w.write_bytes(bytes(data))
    np.save(tmp_path / "x.npy", np.zeros((28, 28), np.float32))
    code, _, err = cli("classify", tmp_path / "x.npy", "--checkpoint", bundle)
    assert "signal.safetensors: it does not match its sha256" in one_line_error(code, err)


@pytest.mark.parametrize("argv", [
    ["train", "{cfg}", "--devices", "0"],
    ["train", "{bad}", "--quiet"],
    ["classify", "x.png", "--checkpoint", str(BUNDLE), "--seed", "1e30"],
])
def test_the_installed_command_gives_the_same_one_line(tmp_path, argv):
    cfg = tiny_config(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**yaml.safe_load(cfg.read_text()), "classifier": {"steps": "abc"}}))
    proc = run(*[a.replace("{cfg}", str(cfg)).replace("{bad}", str(bad)) for a in argv])
    one_line_error(proc.returncode, proc.stderr)
    assert not (tmp_path / "ckpt").exists()
