"""Proof of the domain registry (issue 8): a toy 1-D domain defined in `domain.py` of this folder is trained,
evaluated and reported through the public `coupled` commands, with no change to the library for it."""

import json

import pytest
import yaml

from coupled.domains.registry import domain_names, get_domain, register_domain
from coupled.errors import CoupledError

from tests.image.conftest import run_cli
from tests.reliability.conftest import ROOT

from .domain import TOY, ToyDomain

TINY = {
    "domain": "tests.toydomain.domain:TOY",
    "name": "toy",
    "classifier": {"net": {"width": 32, "num_classes": 4}, "steps": 150, "batch_size": 64, "lr": 3e-3},
    "signal": {"net": {"width": 64}, "steps": 40, "batch_size": 32},
    "logits": {"net": {"width": 32}, "steps": 40, "batch_size": 32},
    "joint": {"steps": 20, "batch_size": 32},
    "train": {"checkpoint_every": 20, "log_every": 5},
    "sampling": {"signal": {"steps": 3, "sampler": "ddim", "eta": 0.0},
                 "logits": {"steps": 3, "sampler": "pc", "corrector_steps": 1, "snr": 0.5}},
    "evaluation": {"batch_size": 32, "bootstrap": 100, "seeds": [0], "heavy_seeds": 1},
}


def test_registry_refuses_duplicates_and_names_the_registered():
    assert get_domain("toy1d") is TOY and "toy1d" in domain_names()
    assert get_domain("tests.toydomain.domain:TOY") is TOY
    with pytest.raises(CoupledError, match="already registered"):
        register_domain(ToyDomain())
    with pytest.raises(CoupledError, match="valid: image, speech, gaussian.*toy1d"):
        get_domain("audio")
    with pytest.raises(CoupledError, match="already registered"):
        TOY.corruptions.register("dropout", lambda x, p, g: x)
    with pytest.raises(CoupledError, match="valid: dropout, white_noise"):
        TOY.corruption("blur")
    with pytest.raises(CoupledError, match="no `coupled tune`"):
        TOY.check_command("tune")


def test_toy_domain_trains_evaluates_and_reports(tmp_path):
    cfg = {**TINY, "output": str(tmp_path / "ckpt")}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_cli("train", path, "--quiet", "--stages", "classifier", "signal", "logits", "joint", cwd=ROOT)
    meta = json.loads((tmp_path / "ckpt" / "signal.json").read_text())
    assert meta["domain"] == "toy1d" and meta["arch"] == "mlp"
    # a fresh process finds the plug-in from the bundle alone: its JSONs record where the domain lives
    assert json.loads((tmp_path / "ckpt" / "classifier.json").read_text())["domain_spec"] == "tests.toydomain.domain:TOY"
    import subprocess
    import sys

    code = ("import sys; from coupled.bundle import checkpoint_domain, load_bundle; "
            f"d = checkpoint_domain({str(tmp_path / 'ckpt')!r}); b = load_bundle({str(tmp_path / 'ckpt')!r}); "
            "print(d.name, b.domain, 'tests.toydomain.domain' in sys.modules)")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert found.split() == ["toy1d", "toy1d", "True"]
    out = tmp_path / "eval"
    report = run_cli("evaluate", path, "--quiet", "--out", out, "--methods", "noisy", "sequential", "parallel",
                     "--levels", "heavy", cwd=ROOT).stdout
    results = json.loads((out / "results.json").read_text())
    assert results["domain"] == "toy1d" and results["dataset"] == "toy_sines" and results["signal_metrics"] == ["mse"]
    rows = {(r["method"], r["corruption"], r["readout"]): r for r in results["rows"]}
    assert {m for m, _, _ in rows} == {"noisy", "sequential", "parallel"}
    assert {c for _, c, _ in rows} == {"white_noise", "dropout"}
    assert rows[("noisy", "white_noise", "classifier")]["mse"] is None
    assert rows[("sequential", "white_noise", "classifier")]["mse"] > 0
    assert results["clean"]["value"] > 0.5  # the toy classifier learnt the sines
    assert rows[("noisy", "white_noise", "classifier")]["n_items"] == 64
    header = next(line for line in report.splitlines() if line.startswith("| method"))
    assert "# Results: toy1d / toy_sines / test" in report and "mse" in header and "PSNR" not in header
    assert (out / "report.md").is_file() and (out / "examples.png").is_file()


def test_toy_domain_calibrates_where_its_metric_crosses_each_target(tmp_path, monkeypatch):
    """`coupled calibrate` on a plug-in domain: the generic search (coupled/evaluation/calibrate.py) on the grid
    the domain's defaults give (33 severities from 0 to the top of each training range): each level is the last
    grid point whose validation accuracy is still at its target, and the next one falls short."""
    from coupled.bundle import load_net
    from coupled.config import load_config
    from coupled.evaluation.calibrate import calibrate, score_function

    cfg = {**TINY, "output": str(tmp_path / "ckpt")}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_cli("train", path, "--quiet", "--stages", "classifier", cwd=ROOT)
    out = json.loads(run_cli("calibrate", path, "--quiet", cwd=ROOT).stdout)
    assert out["targets"] == {c: TOY.calibration_targets for c in ("white_noise", "dropout")}
    loaded = load_config(path)
    classifier, _ = load_net(loaded["output"], "classifier")
    val = TOY.load_splits(loaded)["val"]
    for name, (_, top) in loaded["corruptions"]["train_severity"].items():
        levels, step = out["severities"][name], top / 32
        assert levels["light"] <= levels["medium"] <= levels["heavy"] and 0 < levels["light"]
        score_at = score_function(TOY, classifier, val, name)
        for level, target in TOY.calibration_targets.items():
            sev = levels[level]
            assert out["val_accuracy"][name][level] == round(score_at(sev), 3) >= target
            if sev < top:  # the grid's next severity falls short of the target
                assert score_at(round(sev + step, 6)) < target, (name, level)
    monkeypatch.setattr(TOY, "calibration_targets", None)  # a domain without targets: one line saying what to give
    with pytest.raises(CoupledError, match="sets no calibration targets for corruption 'white_noise'"):
        calibrate(TOY, loaded)


def test_the_runner_reads_answers_with_the_domains_readout(monkeypatch):
    """Evaluation reads a method's answers with `Domain.readout`, not with the engine's argmax."""
    import torch

    from coupled.evaluation.runner import MethodSpec, run_specs
    from tests.engine.harness import degraded, make_coupling

    class Folder:  # what run_specs needs of a bundle
        domain = "toy1d"

        def prepare(self, method, options):
            return make_coupling()[0], method, options

    monkeypatch.setattr(TOY, "readout", lambda logits, lengths=None: logits.argmin(dim=-1))
    d = degraded(batch=8)
    coupling = make_coupling()[0]
    labels = coupling.classifier(d).argmin(dim=-1)
    out = run_specs(Folder(), d, labels, d, [MethodSpec("noisy", "noisy", {})], seed=0, batch_size=4,
                    device=torch.device("cpu"))
    assert out["noisy"]["score_classifier"].all() and (out["noisy"]["pred"] == labels.numpy()).all()
