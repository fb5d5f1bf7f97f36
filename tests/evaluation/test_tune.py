"""`coupled tune`: the validation search of the fair comparison as a command for any bundle, written as a picks
file that `coupled evaluate --picks` and `coupled classify --picks` run; with --budget-ms, the best configuration
whose measured cost fits."""

import json

import numpy as np
import pytest
from PIL import Image

from coupled.evaluation import fair
from tests.image.conftest import run_cli


@pytest.fixture(scope="module")
def tuned(trained, tmp_path_factory):
    cfg, ckpt = trained
    out = tmp_path_factory.mktemp("tune") / "picks.json"
    proc = run_cli("tune", cfg, "--max-items", "8", "--budget-ms", "1000", "--out", out, "--quiet",
                   "--set", "corruptions.severities.gaussian_blur.heavy=2.0")
    return cfg, ckpt, out, proc.stdout


def test_tune_writes_picks_of_every_method_with_the_selection_rule(tuned):
    cfg, ckpt, out, stdout = tuned
    val = json.loads(out.read_text())
    assert val["split"] == "val" and val["domain"] == "image" and val["n_items"] == 8 and val["budget_ms"] == 1000
    assert set(val["picks"]) == {"pixel_noise", "gaussian_noise", "gaussian_blur"}
    for corruption, p in val["picks"].items():
        rows = [r for r in val["candidates"] if r["corruption"] == corruption]
        best = max(r["value"] for r in rows if r["method"] in fair.COUPLED)
        assert p["coupled"]["value"] == best  # the selection rule, read back from the candidates
        assert p["baseline"] is None or p["baseline"]["seconds_per_item"] <= p["coupled"]["seconds_per_item"]
        assert p["budget"]["value"] == max(r["value"] for r in rows if 1000 * r["seconds_per_item"] <= 1000
                                           and r["method"] != "finetuned_classifier")
        assert {"noisy", "sequential", "parallel", "alternating", "nested"} <= set(p["per_method"])
    # the same candidates give the same picks: select() over the file's own table
    assert fair.select(val["candidates"], 1000) == json.loads(json.dumps(val["picks"]))
    assert "Coupled pick:" in stdout and "Within the budget of 1000 ms per item" in stdout


def test_evaluate_and_classify_run_the_picks(tuned, tmp_path):
    cfg, ckpt, out, _ = tuned
    ev = run_cli("evaluate", cfg, "--picks", out, "--max-items", "8", "--levels", "heavy", "--seeds", "0", "--out",
                 tmp_path / "ev", "--quiet", "--split", "val", "--set", "corruptions.severities.gaussian_blur.heavy=2.0")
    assert "coupling (" in ev.stdout and "Cost-matched headline" in ev.stdout
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    Image.fromarray(digit).save(tmp_path / "one.png")
    val = json.loads(out.read_text())
    method = val["picks"]["pixel_noise"]["budget"]["method"]
    proc = run_cli("classify", tmp_path / "one.png", "--checkpoint", ckpt, "--picks", out, "--pick-for", "pixel_noise")
    line = next(l for l in proc.stdout.splitlines() if l.startswith(str(tmp_path / "one.png")))
    assert line.endswith(f"({method})")
    bad = run_cli("classify", tmp_path / "one.png", "--checkpoint", ckpt, "--picks", out, check=False)
    assert bad.returncode == 2 and "say which with --pick-for" in bad.stderr
    other = tmp_path / "speech_picks.json"
    other.write_text(json.dumps({**val, "domain": "speech"}))
    bad = run_cli("classify", tmp_path / "one.png", "--checkpoint", ckpt, "--picks", other, "--pick-for", "pixel_noise",
                  check=False)
    assert bad.returncode == 2 and "tuned for the speech domain, not image" in bad.stderr


def test_tune_refuses_a_bundle_without_denoisers(tmp_path):
    """A folder with the speech recogniser alone (as checkpoints/speech was before issue 16's denoisers)."""
    import shutil

    from coupled.checkpoint import record_in_manifest

    folder = tmp_path / "recogniser_only"
    folder.mkdir()
    for name in ("classifier.json", "classifier.safetensors"):
        shutil.copy(f"checkpoints/speech/{name}", folder / name)
        record_in_manifest(folder / name)
    proc = run_cli("tune", "configs/speech.yaml", "--checkpoint", folder, "--out", tmp_path / "p.json", "--quiet",
                   check=False)
    assert proc.returncode == 2 and "has no denoisers (a classifier alone)" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_tune_reproduces_the_published_validation_picks(tmp_path):
    """`coupled tune configs/mnist.yaml` runs the search docs/results/fair_val.json records: every method's pick
    has the same validation figure (the cost-matched baseline also depends on measured seconds)."""
    published = json.loads(open("docs/results/fair_val.json").read())
    run_cli("tune", "configs/mnist.yaml", "--out", tmp_path / "picks.json", "--quiet", timeout=3600)
    val = json.loads((tmp_path / "picks.json").read_text())
    assert val["n_items"] == published["n_items"] and len(val["candidates"]) == len(published["candidates"])
    for corruption, p in published["picks"].items():
        got = {m: fair.row_value(r) for m, r in val["picks"][corruption]["per_method"].items()}
        assert got == pytest.approx({m: fair.row_value(r) for m, r in p["per_method"].items()}), corruption


def test_tune_corruptions_and_the_wide_grid(trained, tmp_path):
    """--corruptions tunes only those (a misspelt one is a one-line error); --wide adds fair.wide_candidates."""
    cfg, _ = trained
    out = tmp_path / "picks.json"
    run_cli("tune", cfg, "--max-items", "4", "--corruptions", "gaussian_blur", "--wide", "--out", out, "--quiet",
            "--set", "corruptions.severities.gaussian_blur.heavy=2.0")
    val = json.loads(out.read_text())
    assert set(val["picks"]) == {"gaussian_blur"} and val["runs"][0]["grid"] == "wide"
    wide = {s.label for s in fair.wide_candidates()}
    assert wide & {r["label"] for r in val["candidates"]}
    bad = run_cli("tune", cfg, "--corruptions", "blurr", "--out", tmp_path / "p.json", "--quiet", check=False)
    assert bad.returncode == 2 and "--corruptions 'blurr' has no heavy level" in bad.stderr


def test_tune_runs_with_an_explicit_grid(trained, tmp_path):
    """Issue 18: a config whose signal chain has an explicit grid (sampling.signal.timesteps) made `coupled tune`
    fail on the first candidate at another step count (one_step's one); those run the default grid now."""
    cfg, _ = trained
    out = tmp_path / "picks.json"
    run_cli("tune", cfg, "--max-items", "4", "--corruptions", "gaussian_blur", "--out", out, "--quiet",
            "--set", "corruptions.severities.gaussian_blur.heavy=2.0", "--set", "sampling.signal.steps=2",
            "--set", "sampling.signal.timesteps=[900,400,-1]")
    val = json.loads(out.read_text())
    steps = {r["settings"].get("signal_steps") for r in val["candidates"] if r["method"] == "sequential"}
    assert {"one_step", "sequential"} <= {r["method"] for r in val["candidates"]} and len(steps) > 1
