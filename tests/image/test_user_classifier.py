"""Your own classifier (issue 8): a config names `classifier.factory` and `classifier.weights`; `coupled train`
skips training a classifier, copies it into the bundle and trains the denoisers on its logits; `coupled evaluate`,
`coupled classify` and `from_pretrained` rebuild it from the bundle. The denoisers' JSON records the classifier's
fingerprint, and loading the bundle with another classifier warns."""

import json
import os
import shutil
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from coupled.errors import ClassifierMismatchWarning
from tests.reliability.conftest import BUNDLE, cli  # noqa: F401 (cli is a fixture)

from .conftest import run_cli, write_config

MODULE = "coupled_test_user_classifier"
SOURCE = '''
import torch
from torch import nn


def make_mlp(hidden=16, num_classes=10):
    """A user's digit classifier: 28 x 28 in [-1, 1] -> logits."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


class LogSoftmax(nn.Module):
    """The same classifier answering log-probabilities: logits shifted per item."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.log_softmax(self.net(x), dim=-1)
'''


def _user_module(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{MODULE}.py").write_text(SOURCE)
    return folder


def _import_user_module(folder):
    import importlib
    import sys

    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return importlib.import_module(MODULE)


@pytest.fixture(scope="module")
def user_bundle(tmp_path_factory):
    """A tiny bundle trained by the real CLI on a user's classifier (random weights: only the plumbing counts)."""
    folder = tmp_path_factory.mktemp("user_classifier")
    code = _user_module(folder / "user_code")
    mod = _import_user_module(code)
    weights = folder / "mlp.safetensors"
    save_file(mod.make_mlp(hidden=12).state_dict(), weights)
    cfg = write_config(folder, classifier={"factory": f"{MODULE}:make_mlp", "net": {"hidden": 12}, "weights": str(weights)})
    env_path = os.pathsep.join([str(code), *filter(None, [os.environ.get("PYTHONPATH")])])
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = env_path
    try:
        proc = run_cli("train", cfg, "--quiet", "--accelerator", "cpu", "--stages", "classifier", "signal", "logits",
                       "joint", "--max-steps", "3")
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    return {"cfg": cfg, "ckpt": folder / "ckpt", "weights": weights, "code": code, "module": mod, "train": proc,
            "env_path": env_path}


def test_train_copies_the_user_classifier_and_trains_the_denoisers_on_its_logits(user_bundle):
    ckpt = user_bundle["ckpt"]
    meta = json.loads((ckpt / "classifier.json").read_text())
    assert meta["factory"] == f"{MODULE}:make_mlp" and meta["net"] == {"hidden": 12} and meta["num_classes"] == 10
    copied, given = load_file(ckpt / "classifier.safetensors"), load_file(user_bundle["weights"])
    assert copied.keys() == given.keys() and all(torch.equal(copied[k], given[k]) for k in given)
    # the classifier stage was skipped: frozen, never trained
    assert "'skipped': True" in user_bundle["train"].stdout and "'frozen'" in user_bundle["train"].stdout
    assert not list((ckpt / "train_state").glob("classifier*"))
    assert [json.loads(line)["stage"] for line in (ckpt / "training_log.jsonl").read_text().splitlines()] == [
        "signal", "logits", "joint"]
    for name in ("logits", "logits_pretrained", "signal"):  # every denoiser that learnt its logits records them
        fp = json.loads((ckpt / f"{name}.json").read_text())["classifier_fingerprint"]
        assert fp["shape"] == [4, 1, 28, 28] and len(fp["logits"]) == 4 and len(fp["logits"][0]) == 10
    assert "classifier_fingerprint" not in json.loads((ckpt / "signal_pretrained.json").read_text())
    assert "manifest.json" in os.listdir(ckpt) and "classifier.safetensors" in (ckpt / "manifest.json").read_text()


def test_evaluate_classify_and_from_pretrained_rebuild_the_user_classifier(user_bundle, tmp_path, monkeypatch):
    import numpy as np

    from coupled import CoupledPipeline
    from coupled.domains.image.data import load_mnist5k

    monkeypatch.setenv("PYTHONPATH", user_bundle["env_path"])
    out = tmp_path / "eval"
    run_cli("evaluate", user_bundle["cfg"], "--quiet", "--out", out, "--max-items", "8", "--levels", "heavy",
            "--methods", "noisy", "parallel", "--corruptions", "pixel_noise")
    results = json.loads((out / "results.json").read_text())
    x = load_mnist5k()["test"].signals
    mine = user_bundle["module"].make_mlp(hidden=12)
    mine.load_state_dict(load_file(user_bundle["weights"]))
    assert {r["method"] for r in results["rows"]} == {"noisy", "parallel"}
    subset = np.sort(np.random.default_rng(0).permutation(len(x))[:8])  # evaluate_config's --max-items subset
    with torch.no_grad():
        expected = (mine(x[subset]).argmax(1) == load_mnist5k()["test"].labels[subset]).float().mean().item()
    assert results["clean"]["value"] == pytest.approx(expected)  # the user's classifier, not a built-in one

    np.save(tmp_path / "digits.npy", x[:2].numpy())
    proc = run_cli("classify", tmp_path / "digits.npy", "--checkpoint", user_bundle["ckpt"], "--method", "noisy")
    with torch.no_grad():
        want = mine(x[:2]).argmax(1).tolist()
    header, *rows = proc.stdout.splitlines()
    assert header.startswith("# file\tclass\tp = ") and [int(line.split("\t")[1]) for line in rows] == want

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the bundle's own classifier: no fingerprint warning
        pipe = CoupledPipeline.from_pretrained(user_bundle["ckpt"], device="cpu")
    assert isinstance(pipe.bundle.coupling.classifier.module, torch.nn.Sequential)
    assert pipe(x[:2], "noisy")["predictions"].tolist() == want


def test_same_classifier_passed_in_does_not_warn_another_one_does(user_bundle):
    from coupled import CoupledPipeline

    mod, ckpt = user_bundle["module"], user_bundle["ckpt"]
    same = mod.make_mlp(hidden=12)
    same.load_state_dict(load_file(user_bundle["weights"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CoupledPipeline.from_pretrained(ckpt, classifier=same, device="cpu")
        CoupledPipeline.from_pretrained(ckpt, classifier=mod.LogSoftmax(same), device="cpu")  # same standardised logits
    with pytest.warns(ClassifierMismatchWarning, match="trained on another classifier's logits.*retrain") as seen:
        CoupledPipeline.from_pretrained(ckpt, classifier=mod.make_mlp(hidden=12), device="cpu")  # other weights
    assert len([w for w in seen if issubclass(w.category, ClassifierMismatchWarning)]) == 1


def test_bundled_checkpoint_has_a_fingerprint_and_warns_for_another_classifier():
    from coupled import CoupledPipeline
    from coupled.domains.image.networks import ClassifierConfig, DigitClassifier

    assert "classifier_fingerprint" in json.loads((BUNDLE / "logits.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CoupledPipeline.from_pretrained(BUNDLE, device="cpu")  # verified against its manifest, its own classifier
    torch.manual_seed(0)
    with pytest.warns(ClassifierMismatchWarning, match="checkpoints/mnist were trained on another classifier"):
        CoupledPipeline.from_pretrained(BUNDLE, classifier=DigitClassifier(ClassifierConfig()), device="cpu")


def test_a_bundle_without_fingerprint_loads_unchecked(tmp_path):
    """Folders trained before fingerprints: 'unknown', no check and no warning."""
    from coupled import CoupledPipeline
    from coupled.domains.image.networks import ClassifierConfig, DigitClassifier

    old = tmp_path / "old"
    shutil.copytree(BUNDLE, old, ignore=shutil.ignore_patterns("logs", "manifest.json"))
    meta = json.loads((old / "logits.json").read_text())
    del meta["classifier_fingerprint"]
    (old / "logits.json").write_text(json.dumps(meta))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CoupledPipeline.from_pretrained(old, classifier=DigitClassifier(ClassifierConfig()), device="cpu")


def test_classify_says_when_the_bundles_classifier_was_swapped(tmp_path, cli):
    """A bundle whose classifier file was replaced (and the folder re-sealed): the command warns in one line."""
    import numpy as np

    from coupled.domains.image.networks import ClassifierConfig, DigitClassifier
    from coupled.checkpoint import seal

    swapped = tmp_path / "swapped"
    shutil.copytree(BUNDLE, swapped, ignore=shutil.ignore_patterns("logs"))
    torch.manual_seed(1)
    save_file(DigitClassifier(ClassifierConfig()).state_dict(), swapped / "classifier.safetensors")
    seal(swapped)
    np.save(tmp_path / "x.npy", np.zeros((28, 28), np.float32))
    code, out, err = cli("classify", tmp_path / "x.npy", "--checkpoint", swapped, "--method", "noisy")
    assert code == 0 and "\tp=" in out
    lines = [line for line in err.splitlines() if line.startswith("coupled: warning:")]
    assert len(lines) == 1 and "trained on another classifier's logits" in lines[0]


def test_reproduce_with_a_classifier_factory(user_bundle, tmp_path, monkeypatch):
    """`coupled reproduce` trains every stage around a user's frozen classifier and evaluates (it crashed with
    KeyError: 'steps' on the installed classifier's summary)."""
    monkeypatch.setenv("PYTHONPATH", user_bundle["env_path"])
    proc = run_cli("reproduce", user_bundle["cfg"], "--quiet", "--output", tmp_path / "ckpt", "--out", tmp_path / "ev",
                   "--set", "evaluation.max_items=8", "--set", "evaluation.heavy_seeds=1", "--accelerator", "cpu")
    assert f"stage classifier: frozen ({MODULE}:make_mlp)" in proc.stdout
    assert json.loads((tmp_path / "ev" / "results.json").read_text())["rows"]
