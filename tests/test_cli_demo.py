"""The two demos through the real command line."""

import json
from pathlib import Path

import pytest

from tests.image.conftest import run_cli

ROOT = Path(__file__).parents[1]


def test_gaussian_demo_prints_every_method():
    out = run_cli("demo", "--domain", "gaussian", "--items", "300", "--steps", "8").stdout
    for method in ("noisy", "sequential", "logits_only", "parallel", "alternating", "nested"):
        assert f"| {method}" in out
    assert "8/8/" in out  # parallel: 8 signal and 8 logit calls


@pytest.mark.skipif(not (ROOT / "checkpoints/mnist/pipeline.json").is_file(), reason="bundled models not built")
def test_image_demo_on_bundled_models(tmp_path):
    out = run_cli("demo", "--items", "30", "--out", tmp_path / "demo", "--quiet", cwd=ROOT).stdout
    # the demo runs the cost-matched headline's rows of the validation picks
    val = json.loads((ROOT / "docs/results/fair_val.json").read_text())
    assert "pixel_noise" in out and "Cost-matched headline" in out
    res = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert res["clean"]["value"] > 0.9 and {r["n_items"] for r in res["rows"]} == {30}
    assert [h["coupled"]["method"] for h in res["headline"]] == [p["coupled"]["method"] for p in val["picks"].values()]
    assert {"noisy", "sequential"} <= {r["method"] for r in res["rows"]}
    assert (tmp_path / "demo" / "examples.png").stat().st_size > 5000


@pytest.mark.slow
def test_bundled_models_reproduce_the_published_validation_figures(tmp_path):
    """`coupled evaluate --picks` of the bundle on the validation split gives every pick's figure of
    docs/results/fair_val.json again (evaluation is deterministic and does not depend on which other methods
    run beside it), so the published tuning cannot drift from the code. ~3 min."""
    val = json.loads((ROOT / "docs/results/fair_val.json").read_text())
    run_cli("evaluate", "configs/mnist.yaml", "--split", "val", "--levels", "heavy", "--max-items", str(val["n_items"]),
            "--seeds", "0", "--picks", "docs/results/fair_val.json", "--out", tmp_path / "val", "--quiet", cwd=ROOT, timeout=1800)
    again = json.loads((tmp_path / "val" / "results.json").read_text())
    got = {(r["corruption"], r["method"], r["readout"]): r["value"] for r in again["rows"]}
    for corruption, p in val["picks"].items():
        for method, pick in p["per_method"].items():
            assert got[(corruption, method, pick["readout"])] == pytest.approx(pick["accuracy"], abs=1e-9), (corruption, method)
