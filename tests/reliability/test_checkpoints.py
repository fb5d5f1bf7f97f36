"""Checkpoint integrity: digests checked on load, one-line refusals, atomic train state, stale temporaries."""

import json
import shutil

import pytest
import torch

from coupled.errors import CoupledError
from coupled import atomic
from coupled import checkpoint as bc
from coupled.training import checkpoint as ck

from .conftest import BUNDLE


@pytest.fixture
def bundle(tmp_path):
    dest = tmp_path / "mnist"
    shutil.copytree(BUNDLE, dest, ignore=shutil.ignore_patterns("logs"))
    return dest


def _load(folder):
    from coupled.bundle import load_bundle

    return load_bundle(folder)


def test_bundle_is_sealed_and_loads():
    files = json.loads((BUNDLE / bc.MANIFEST).read_text())["files"]
    assert {"classifier.safetensors", "signal.safetensors", "logits.safetensors", "pipeline.json"} <= set(files)
    for name, digest in files.items():
        assert bc.sha256_file(BUNDLE / name) == digest, f"{name} differs from the manifest: re-run `coupled manifest`"
    _load(BUNDLE)


@pytest.mark.parametrize("name", ["signal.safetensors", "classifier.safetensors", "logits.json", "pipeline.json"])
def test_flipped_byte_is_refused_with_one_line(bundle, name):
    path = bundle / name
    data = bytearray(path.read_bytes())
    data[len(data) * 2 // 3] ^= 0x01  # inside a tensor (or the JSON text): the file still parses
    path.write_bytes(bytes(data))
    with pytest.raises(CoupledError, match=f"{name}: it does not match its sha256") as e:
        _load(bundle)
    assert "\n" not in str(e.value) and "--resume" in str(e.value)


def test_truncated_weights_are_refused_with_one_line(bundle):
    path = bundle / "logits.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CoupledError, match="logits.safetensors: it does not match"):
        _load(bundle)
    (bundle / bc.MANIFEST).unlink()  # without a manifest the parser still refuses in one line
    with pytest.raises(CoupledError, match="corrupt weights file .*logits.safetensors"):
        _load(bundle)


def test_flipped_byte_without_manifest_still_loads_and_can_be_sealed(bundle):
    (bundle / bc.MANIFEST).unlink()
    _load(bundle)  # folders written before manifests keep working, unchecked
    bc.seal(bundle)
    assert json.loads((bundle / bc.MANIFEST).read_text())["files"] == json.loads((BUNDLE / bc.MANIFEST).read_text())["files"]


def test_unlisted_file_and_corrupt_manifest_are_refused(bundle):
    files = json.loads((bundle / bc.MANIFEST).read_text())
    del files["files"]["signal.json"]
    (bundle / bc.MANIFEST).write_text(json.dumps(files))
    with pytest.raises(CoupledError, match="signal.json is not listed in .*coupled manifest"):
        _load(bundle)
    (bundle / bc.MANIFEST).write_text("{not json")
    with pytest.raises(CoupledError, match="corrupt .*manifest.json.*coupled manifest"):
        _load(bundle)


def test_nan_weights_are_named_not_blamed_on_the_input(tmp_path):
    bc.save_weights(tmp_path, "net", {"w": torch.tensor([1.0, float("nan")])}, {"kind": "x"})
    with pytest.raises(CoupledError, match="NaN or infinite values in 'w'"):
        bc.load_weights(tmp_path, "net")


def test_save_weights_seals_each_pair_and_first_manifest_takes_in_older_files(tmp_path):
    ck.save_file({"a": torch.zeros(2)}, str(tmp_path / "old.safetensors"))
    (tmp_path / "old.json").write_text("{}")
    bc.save_weights(tmp_path, "new", {"b": torch.ones(3)}, {"k": 1})
    files = json.loads((tmp_path / bc.MANIFEST).read_text())["files"]
    assert set(files) == {"old.safetensors", "old.json", "new.safetensors", "new.json"}
    assert bc.load_weights(tmp_path, "old")[0]["a"].shape == (2,)
    assert bc.load_weights(tmp_path, "new")[1] == {"k": 1}


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / ".signal.safetensors.abc123.tmp").write_bytes(b"half")
    (tmp_path / "keep.json").write_text("{}")
    assert [p.name for p in atomic.remove_stale_temporaries(tmp_path)] == [".signal.safetensors.abc123.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]


def _state(step):
    return {"net.w": torch.full((3,), float(step))}


def test_train_state_versions_commit_on_the_json(tmp_path):
    ck.save_train_state(tmp_path, "signal", 4, _state(4), {"total": 8})
    ck.save_train_state(tmp_path, "signal", 8, _state(8), {"total": 8})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signal.json", "signal.step00000008.safetensors"]
    tensors, meta = ck.load_train_state(tmp_path, "signal")
    assert meta["step"] == 8 and float(tensors["net.w"][0]) == 8
    # a crash after the new weights but before the JSON: the JSON still names step 8, the stray file goes
    ck.save_file(_state(12), str(tmp_path / "signal.step00000012.safetensors"), metadata={"step": "12"})
    assert ck.load_train_state(tmp_path, "signal")[1]["step"] == 8
    assert not (tmp_path / "signal.step00000012.safetensors").exists()


def test_train_state_mixing_steps_or_altered_is_refused(tmp_path):
    ck.save_train_state(tmp_path, "joint", 4, _state(4), {"total": 8})
    meta = json.loads((tmp_path / "joint.json").read_text())
    w = tmp_path / meta["weights"]
    ck.save_file(_state(8), str(w), metadata={"step": "8"})  # weights of another step under the committed name
    meta["sha256"] = bc.sha256_file(w)
    (tmp_path / "joint.json").write_text(json.dumps(meta))
    with pytest.raises(CoupledError, match=r"mixes steps \(weights of step 8, joint.json of step 4\); delete .*joint\.\*"):
        ck.load_train_state(tmp_path, "joint")
    data = bytearray(w.read_bytes())
    data[-3] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(CoupledError, match="does not match the sha256 .*delete"):
        ck.load_train_state(tmp_path, "joint")


def test_train_state_of_older_versions_loads_only_when_its_steps_agree(tmp_path):
    """The issue's crash: the old writer renamed step-80 weights, then died before the step-40 JSON was replaced."""
    (tmp_path / "signal.json").write_text(json.dumps({"step": 40, "total": 80}))
    ck.save_file({**_state(80), "opt.0.step": torch.tensor(80.0)}, str(tmp_path / "signal.safetensors"))
    with pytest.raises(CoupledError, match=r"mixes steps \(weights of step \[80\], signal.json of step 40\); delete .*signal\.\* to restart"):
        ck.load_train_state(tmp_path, "signal")
    ck.save_file({**_state(40), "opt.0.step": torch.tensor(40.0)}, str(tmp_path / "signal.safetensors"))
    tensors, meta = ck.load_train_state(tmp_path, "signal")
    assert meta["step"] == 40 and float(tensors["net.w"][0]) == 40
    ck.clear_train_state(tmp_path, "signal")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("file, edit, message", [
    ("pipeline.json", lambda d: d["sampling"].pop("logits"), "sampling.logits must be a mapping with steps and sampler"),
    ("pipeline.json", lambda d: d.update(sampling=[1, 2]), "'sampling' must be a mapping"),
    ("pipeline.json", lambda d: d["sampling"]["signal"].update(steps=0), "sampling.signal.steps must lie in"),
    ("classifier.json", lambda d: d.update(logit_scale="big"), "logit_scale must be a number"),
])
def test_hand_edited_bundle_settings_are_one_line(bundle, file, edit, message):
    from coupled import CoupledPipeline

    data = json.loads((bundle / file).read_text())
    edit(data)
    (bundle / file).write_text(json.dumps(data))
    bc.seal(bundle)  # edited on purpose and re-sealed: the digests pass, the settings must not
    with pytest.raises(CoupledError, match=message):
        CoupledPipeline.from_pretrained(bundle, device="cpu")


def _declare(bundle, name, **net):
    """Edit `<name>.json`'s net config on purpose and re-seal the folder, so only the consistency check can object."""
    data = json.loads((bundle / f"{name}.json").read_text())
    data["net"].update(net)
    (bundle / f"{name}.json").write_text(json.dumps(data))
    bc.seal(bundle)


@pytest.mark.parametrize("name, message", [
    ("signal", r"signal.json: net.image_size is 32 but classifier.json has 28, .*set net.image_size to 28 .*coupled manifest"),
    ("logits", r"logits.json: net.image_size is 32 but classifier.json has 28, .*set net.image_size to 28 .*coupled manifest"),
    ("classifier", r"classifier.json declares net.in_channels=1, net.image_size=32: restore .*coupled manifest"),
])
def test_declared_image_size_the_bundle_cannot_take_is_refused_at_load(bundle, name, message):
    from coupled import CoupledPipeline

    _declare(bundle, name, image_size=32)  # the weights are 28x28: it loaded, then rejected every input
    with pytest.raises(CoupledError, match=message):
        CoupledPipeline.from_pretrained(bundle, device="cpu")


def test_baseline_network_of_another_size_is_refused_when_first_used(bundle):
    _declare(bundle, "signal_sequential", image_size=32)
    b = _load(bundle)
    with pytest.raises(CoupledError, match=r"signal_sequential.json: net.image_size is 32 but signal.json has 28"):
        b.prepare("sequential", {"signal_net": "sequential"})


def test_own_classifier_that_cannot_take_the_bundles_signals_is_refused_at_load():
    from coupled import CoupledPipeline
    from coupled.domains.image.networks import ClassifierConfig, DigitClassifier

    with pytest.raises(CoupledError, match=r"signal.json declares signals of shape \(1, 28, 28\) \(net.in_channels, "
                                           r"net.image_size\) but the classifier passed cannot take them"):
        CoupledPipeline.from_pretrained(BUNDLE, classifier=DigitClassifier(ClassifierConfig(image_size=32)), device="cpu")
    pipe = CoupledPipeline.from_pretrained(BUNDLE, classifier=DigitClassifier(ClassifierConfig()), device="cpu")
    assert pipe.image_shape == (1, 28, 28)


def test_declared_image_size_through_classify_is_one_line(cli, bundle, tmp_path):
    import numpy as np

    from .conftest import one_line_error

    data = json.loads((bundle / "signal.json").read_text())
    data["net"]["image_size"] = 32
    (bundle / "signal.json").write_text(json.dumps(data))
    assert cli("manifest", bundle)[0] == 0  # re-sealed with the project's tool
    np.save(tmp_path / "x.npy", np.zeros((32, 32), np.float32))
    code, _, err = cli("classify", tmp_path / "x.npy", "--checkpoint", bundle)
    assert f"{bundle}/signal.json: net.image_size is 32" in one_line_error(code, err)


def _fake_cuda(monkeypatch, devices: int, restored: list):
    """Pretend this machine has `devices` CUDA devices (0: none) whose RNG states differ at each read (device i's
    n-th read is [n, i]); record every restore (Lightning saves and restores them too, around its own work)."""
    reads = iter(range(1, 10**6))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: devices > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: devices)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: (lambda n: [torch.tensor([n, i], dtype=torch.uint8)
                                                                             for i in range(devices)])(next(reads)))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.append([s.tolist() for s in states]))


def test_resume_continues_the_cuda_random_streams_and_refuses_another_device_count(cli, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from .conftest import one_line_error, tiny_config

    cfg, restored = tiny_config(tmp_path), []
    args = ("train", cfg, "--stages", "classifier", "--accelerator", "cpu", "--quiet")
    _fake_cuda(monkeypatch, 2, restored)
    code, _, err = cli(*args, "--max-steps", "4")  # stops at step 4 with its state on disk
    assert code == 0, err
    state = tmp_path / "ckpt" / "train_state"
    tensors = load_file(str(next(state.glob("classifier.step*.safetensors"))))
    saved = [tensors[f"rng.cuda.{i}"].tolist() for i in range(2)]
    assert [i for _, i in saved] == [0, 1] and "rng.cuda.2" not in tensors

    _fake_cuda(monkeypatch, 1, restored)
    code, _, err = cli(*args, "--resume")
    line = one_line_error(code, err)
    assert f"{state / 'classifier.json'} was saved with 2 CUDA devices but this run has 1" in line and "--resume" in line

    _fake_cuda(monkeypatch, 2, restored)
    restored.clear()
    code, _, err = cli(*args, "--resume")
    assert code == 0, err
    assert restored.count(saved) == 1  # set once, at the first resumed step


def test_resume_of_a_cuda_state_without_cuda_warns_in_one_line(cli, tmp_path, monkeypatch):
    from .conftest import tiny_config

    cfg, restored = tiny_config(tmp_path), []
    args = ("train", cfg, "--stages", "classifier", "--accelerator", "cpu", "--quiet")
    _fake_cuda(monkeypatch, 2, restored)
    assert cli(*args, "--max-steps", "4")[0] == 0
    _fake_cuda(monkeypatch, 0, restored)
    restored.clear()
    code, _, err = cli(*args, "--resume")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("coupled: warning:")]
    assert len(warnings) == 1 and "saved with 2 CUDA devices and this run has no CUDA devices" in warnings[0], err
    assert not any(restored), "CUDA states restored on a run without CUDA"
