"""`coupled train` writes the gmm domain's closed-form bundle and `coupled evaluate` runs the paper's methods on it
(configs/bayes_limit.yaml, a few items)."""

import json
from pathlib import Path

import pytest
import yaml

from coupled.cli import main
from tests.reliability.conftest import ROOT


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """configs/bayes_limit.yaml trained into a fresh folder: (config path, checkpoint folder)."""
    tmp = tmp_path_factory.mktemp("gmm")
    cfg = yaml.safe_load((ROOT / "configs" / "bayes_limit.yaml").read_text())
    cfg["output"] = str(tmp / "ckpt")
    path = tmp / "bayes_limit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path), "--quiet"]) == 0
    return path, tmp / "ckpt"


def test_coupled_evaluate_runs_the_bayes_limit_config(trained, tmp_path):
    path, ckpt = trained
    meta = json.loads((ckpt / "signal.json").read_text())
    assert meta["domain"] == "gmm" and meta["arch"] == "exact" and meta["net"]["noise_levels"] == [0.5, 1.0, 2.0]
    out = tmp_path / "eval"
    assert main(["evaluate", str(path), "--quiet", "--out", str(out), "--max-items", "60", "--levels", "heavy",
                 "--seeds", "0"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["domain"] == "gmm" and results["dataset"].startswith("gmm-means")
    rows = {(r["method"], r["readout"]): r for r in results["rows"]}
    assert {m for m, _ in rows} == {"noisy", "sequential", "logits_only", "parallel", "alternating", "nested"}
    assert {k: rows[("parallel", "logits")]["calls"][k] for k in ("signal", "logits")} == {"signal": 5, "logits": 5}
    assert all(r["n_items"] == 60 and 0 <= r["value"] <= 1 for r in rows.values())
    assert results["clean"]["value"] > 0.9  # the Bayes classifier on clean signals of well separated classes


def test_the_committed_bundle_is_the_configs_closed_form(trained):
    """checkpoints/bayes_limit is what `coupled train configs/bayes_limit.yaml` writes (byte for byte weights)."""
    _, ckpt = trained
    for name in ("classifier", "signal", "logits"):
        written = (ckpt / f"{name}.safetensors").read_bytes()
        assert written == (ROOT / "checkpoints" / "bayes_limit" / f"{name}.safetensors").read_bytes()


@pytest.mark.slow
def test_the_bayes_limit_benchmark_runs_one_cell():
    """`benchmarks/bayes_limit.py --quick` (one cell, small splits) runs and its tables read its JSON."""
    import subprocess
    import sys

    env = {"PYTHONPATH": f"{ROOT / 'src'}", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "benchmarks/bayes_limit.py", "--quick"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=600)
    results = json.loads(Path("/tmp/bayes_limit_quick/bayes_limit.json").read_text())
    cell = results["cells"][0]
    assert cell["headline"]["coupled"]["method"] in ("parallel", "alternating", "nested")
    assert cell["headline"]["baseline"]["cost"] <= cell["headline"]["coupled"]["cost"]
    assert 0 < cell["bayes"] <= 1 and cell["noisy"] <= cell["bayes"] + 0.05
