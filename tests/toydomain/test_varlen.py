"""Issue 15's generic path on variable-length signals: a toy domain (`varlen.py`: [N, 1, T] signals of 12 to 40
samples, zero-padded, frame logits, string answers scored by WER) trains through every generic stage and
evaluates every engine method through the real `coupled` command, and a padded batch gives each item what it
gets alone, in training (a loss does not depend on the padding its batch carries) and in evaluation."""

import json
from types import SimpleNamespace

import pytest
import torch
import yaml
from safetensors.torch import save_file

from coupled.classifiers import prepare_user_classifier
from coupled.config import load_config
from coupled.domains.registry import Domain, LabelledSignals
from coupled.engine import METHODS
from coupled.errors import CoupledError
from coupled.methods import REFERENCE_METHODS
from coupled.training.stages import LOSSES, STAGES, SplitBatches, TrainBatch, step_generator

from tests.image.conftest import run_cli
from tests.reliability.conftest import ROOT

from .varlen import CLASSES, VARLEN, user_classifier
from tests.padding import assert_padded_batch_is_each_item_alone

EVERY_METHOD = sorted(METHODS) + sorted(REFERENCE_METHODS)
TINY = {
    "domain": "tests.toydomain.varlen:VARLEN",
    "name": "varlen",
    "classifier": {"net": {"width": 32, "num_classes": CLASSES}, "steps": 100, "batch_size": 32, "lr": 3e-3},
    "signal": {"net": {"width": 16}, "steps": 6, "batch_size": 16},
    "logits": {"net": {"width": 16}, "steps": 6, "batch_size": 16},
    "joint": {"steps": 4, "batch_size": 16},
    "card": {"net": {"width": 16}, "steps": 4, "batch_size": 16},
    "finetuned": {"steps": 4, "batch_size": 16},
    "sequential": {"steps": 4, "batch_size": 16},
    "predictive": {"steps": 4, "batch_size": 16},
    "train": {"checkpoint_every": 100, "log_every": 2},
    "sampling": {"signal": {"steps": 2, "sampler": "ddim", "eta": 0.0},
                 "logits": {"steps": 2, "sampler": "pc", "corrector_steps": 1, "snr": 0.5},
                 "methods": {"parallel": {"switch_fraction": 0.5}, "alternating": {"rounds": 2},
                             "nested": {"refresh_every": 1, "refresh_window": [0.5, 1.0]},
                             "sequential_ensemble": {"k": 2}, "purification": {"noise_fraction": 0.5}}},
    "evaluation": {"batch_size": 8, "bootstrap": 50, "seeds": [0], "heavy_seeds": 1},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The toy bundle, trained through every stage by the real CLI."""
    folder = tmp_path_factory.mktemp("varlen")
    cfg = {**TINY, "output": str(folder / "ckpt")}
    path = folder / "varlen.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_cli("train", path, "--quiet", "--accelerator", "cpu", cwd=ROOT)
    return path, folder / "ckpt", load_config(path)


def test_every_stage_trains_and_every_method_evaluates_with_a_string_readout(trained, tmp_path):
    path, ckpt, _ = trained
    log = [json.loads(line) for line in (ckpt / "training_log.jsonl").read_text().splitlines()]
    assert [s["stage"] for s in log] == list(STAGES)
    assert log[0]["val_wer"] < 0.5  # the CTC classifier learnt to read the symbols (its score is a WER)
    out = tmp_path / "eval"
    run_cli("evaluate", path, "--quiet", "--out", out, "--levels", "heavy", "--methods", *EVERY_METHOD, cwd=ROOT)
    results = json.loads((out / "results.json").read_text())
    assert results["domain"] == "toy1d_varlen" and results["clean"]["metric"] == "wer"
    assert 0 <= results["clean"]["value"] < 0.5
    rows = {(r["method"], r["corruption"], r["readout"]): r for r in results["rows"]}
    assert {m for m, _, _ in rows} == set(EVERY_METHOD) and {c for _, c, _ in rows} == {"white_noise", "dropout"}
    for key, row in rows.items():  # WER: edits over reference words, above 1 only with many insertions
        assert row["metric"] == "wer" and row["n_items"] == 24, key
        assert 0 <= row["value"] < 2 and row["ci95"][0] <= row["ci95"][1], key
    for corruption in ("white_noise", "dropout"):  # heavy corruption hurts the frozen classifier: a WER above clean's
        assert rows[("noisy", corruption, "classifier")]["value"] > results["clean"]["value"]
        for method in ("parallel", "alternating", "nested", "logits_only", "card"):  # read out from y_hat too
            assert (method, corruption, "logits") in rows


def test_a_padded_batch_gives_each_item_its_result_alone(trained):
    """Evaluation: the runner trims a batch to its longest item and runs it with per-item lengths; its answers,
    scores and signal estimates are those of each item run alone (batch size 1)."""
    from coupled.bundle import load_bundle
    from coupled.evaluation.runner import run_specs, specs_from_methods

    _, ckpt, cfg = trained
    data = VARLEN.load_splits(cfg)["test"].subset(list(range(6)))
    assert len(set(data.lengths.tolist())) > 3  # a batch of different lengths
    bundle = load_bundle(ckpt, sampling=cfg["sampling"], domain=VARLEN.name)
    degraded = VARLEN.corrupt_set(data.signals, "white_noise", 0.9, 7, lengths=data.lengths)
    specs = specs_from_methods(EVERY_METHOD, cfg["sampling"]["methods"])
    run = lambda batch: run_specs(bundle, data.signals, data.labels, degraded, specs, seed=3,  # noqa: E731
                                  batch_size=batch, device=torch.device("cpu"), keep_x_hat=True, lengths=data.lengths)
    assert_padded_batch_is_each_item_alone(run, len(data), data.lengths, atol=1e-5)


@pytest.mark.parametrize("stage", STAGES)
def test_a_training_loss_does_not_depend_on_the_padding_of_its_batch(trained, stage):
    """Training: a batch trimmed to its longest item and the same batch padded further give one loss (masked
    losses, per-item corruption and noise, every network told the lengths)."""
    from coupled.training.run import build_setup

    _, ckpt, cfg = trained
    setup = build_setup(stage, cfg, ckpt)
    m = SimpleNamespace(setup_=setup, nets=torch.nn.ModuleDict(setup.nets), frozen=setup.frozen)
    split = VARLEN.load_splits(cfg)["train"]
    batch = SplitBatches(split)([3, 0, 17, 8, 5, 11])
    assert batch.signals.shape[-1] == int(batch.lengths.max()) < split.signals.shape[-1]
    padded = TrainBatch(torch.nn.functional.pad(batch.signals, (0, 9)), batch.labels, batch.lengths)
    loss = lambda b: LOSSES[stage](m, b, step_generator(0, stage, 5))[0]  # noqa: E731
    trimmed, more = loss(batch), loss(padded)
    assert torch.isfinite(trimmed)
    torch.testing.assert_close(more, trimmed, atol=1e-6, rtol=1e-5, msg=f"{stage}: the padding changed the loss")


def test_a_users_frame_classifier_is_accepted_where_labels_are_sequences(tmp_path):
    net = user_classifier(width=8)
    save_file(net.state_dict(), tmp_path / "w.safetensors")
    cfg = {"classifier": {"factory": "tests.toydomain.varlen:user_classifier", "net": {"width": 8},
                          "weights": str(tmp_path / "w.safetensors")}}
    split = VARLEN.load_splits({"data": {}})["val"]
    assert prepare_user_classifier(cfg, split).num_classes == CLASSES
    indices = LabelledSignals(split.signals, torch.zeros(len(split), dtype=torch.long), CLASSES, "indices", split.lengths)
    with pytest.raises(CoupledError, match=r"returns logits of shape \(4, \d+, 4\) for 4 items; coupled train needs logits \[B, K\] for the "
                                           r"class-index labels of data set indices$"):
        prepare_user_classifier(cfg, indices)


def test_the_default_classifier_loss_refuses_what_it_cannot_train_in_one_line():
    logits, labels = torch.randn(3, 5, CLASSES), ["a b", "c", "a"]
    with pytest.raises(CoupledError, match="override Domain.classifier_loss"):
        Domain.classifier_loss(VARLEN, logits, labels)
    loss, logs = Domain.classifier_loss(VARLEN, logits[:, 0], torch.tensor([0, 1, 2]))
    assert torch.equal(loss, torch.nn.functional.cross_entropy(logits[:, 0], torch.tensor([0, 1, 2])))
    # the toy's CTC: low on logits that spell each label, over each item's own frames
    spelled = torch.full((3, 5, CLASSES), -5.0)
    for i, path in enumerate([[1, 0, 2, 2, 0], [3, 0, 0, 0, 0], [1, 1, 0, 0, 0]]):
        spelled[i, torch.arange(5), torch.tensor(path)] = 5.0
    good, _ = VARLEN.classifier_loss(spelled, labels, frame_lengths=torch.tensor([5, 2, 3]))
    bad, _ = VARLEN.classifier_loss(spelled, ["c", "a b", "b"], frame_lengths=torch.tensor([5, 2, 3]))
    assert good < 0.1 < bad


def _predictive_loss(cfg, ckpt, weights=None):
    """The predictive stage's loss on one fixed padded batch, with its warm start (signal_pretrained) or `weights`."""
    from coupled.checkpoint import load_weights, load_state
    from coupled.training.run import build_setup

    setup = build_setup("predictive", cfg, ckpt)
    if weights is not None:
        load_state(setup.nets["signal"], load_weights(ckpt, weights)[0], weights)
    m = SimpleNamespace(setup_=setup, nets=torch.nn.ModuleDict(setup.nets), frozen=setup.frozen)
    batch = SplitBatches(VARLEN.load_splits(cfg)["train"])(list(range(0, 64, 2)))
    with torch.no_grad():
        loss, logs = LOSSES["predictive"](m, batch, step_generator(0, "predictive", 10_000))
    return float(loss), float(logs["observation_mse"])


def test_the_predictive_stage_regresses_the_clean_signal_and_lowers_its_loss(trained, tmp_path):
    """Issue 16's predictive enhancer: `coupled train --stages predictive` warm-starts the signal net from
    signal_pretrained, trains it by regression from d alone, writes signal_predictive (x0 or v prediction, the
    signal process, `warm_start`), and its loss on a fixed batch falls well below the warm start's and below the
    degraded input's own error."""
    import shutil

    _, ckpt, cfg = trained
    work = tmp_path / "ckpt"
    shutil.copytree(ckpt, work)
    from coupled.training.run import train

    cfg = {**cfg, "output": str(work), "predictive": {**cfg["predictive"], "steps": 40, "lr": 0.003}}
    train(cfg, ["predictive"], accelerator="cpu", progress=False)
    meta = json.loads((work / "signal_predictive.json").read_text())
    assert meta["stage"] == "predictive" and meta["warm_start"] == "signal_pretrained" and meta["steps"] == 40
    assert meta["prediction"] == "v" and meta["process"] == json.loads((work / "signal.json").read_text())["process"]
    before, observation = _predictive_loss(cfg, work)
    after, _ = _predictive_loss(cfg, work, "signal_predictive")
    print(f"predictive loss: warm start {before:.4f}, trained {after:.4f}, degraded input {observation:.4f}")
    assert after < 0.7 * before and after < observation, (before, after, observation)


def test_the_predictive_method_is_deterministic_and_needs_its_net(trained, tmp_path):
    """`predictive` gives one answer whatever the sampling seed (it draws no noise), and a bundle without
    signal_predictive names the stage that trains it, in one line."""
    import shutil

    from coupled.bundle import load_bundle
    from coupled.evaluation.runner import MethodSpec, run_specs

    _, ckpt, cfg = trained
    data = VARLEN.load_splits(cfg)["test"].subset(list(range(6)))
    degraded = VARLEN.corrupt_set(data.signals, "white_noise", 0.9, 7, lengths=data.lengths)
    bundle = load_bundle(ckpt, sampling=cfg["sampling"], domain=VARLEN.name)
    specs = [MethodSpec("predictive", "predictive", {}), MethodSpec("mixed", "predictive", {"observation_weight": 0.5})]
    run = lambda seed: run_specs(bundle, data.signals, data.labels, degraded, specs, seed=seed, batch_size=4,  # noqa: E731
                                 device=torch.device("cpu"), keep_x_hat=True, lengths=data.lengths)
    a, b = run(0), run(5)
    for label in ("predictive", "mixed"):
        assert all(torch.equal(x, y) for x, y in zip(a[label]["x_hat"], b[label]["x_hat"], strict=True))
        assert (a[label]["pred"] == b[label]["pred"]).all()
    with pytest.raises(CoupledError, match="drop signal_net"):
        bundle.prepare("predictive", {"signal_net": "pretrained"})
    bare = tmp_path / "bare"
    shutil.copytree(ckpt, bare)
    for suffix in ("safetensors", "json"):
        (bare / f"signal_predictive.{suffix}").unlink()
    from coupled.checkpoint import seal

    seal(bare)
    with pytest.raises(CoupledError, match=r"has no signal_predictive.safetensors; train it with `coupled train CONFIG "
                                           r"--stages predictive`$"):
        load_bundle(bare, sampling=cfg["sampling"], domain=VARLEN.name).prepare("predictive", {})
