"""A tiny ECG run through the generic stages and the generic evaluator: train every coupled stage, evaluate
three methods at the heavy level, macro-F1 rows with SNR of the estimates."""

import json

import pytest

import yaml

from tests.image.conftest import run_cli
from tests.reliability.conftest import ROOT

TINY = {
    "domain": "ecg", "name": "ecg_tiny", "data": {"kind": "synthetic", "seed": 0, "patients": [12, 6, 6]},
    "corruptions": {"severities": {"emg": {"heavy": 2.0}, "baseline_wander": {"heavy": 2.0}},
                    "train_severity": {"emg": [0.5, 3.0], "baseline_wander": [0.5, 3.0]}},
    "classifier": {"net": {"num_classes": 3, "channels": [8, 16, 16, 16, 16]}, "steps": 30, "batch_size": 16},
    "signal": {"net": {"patch": 10, "channels": [8, 8], "time_dim": 16, "mid_blocks": 1}, "steps": 6, "batch_size": 4},
    "logits": {"net": {"hidden": 16, "encoder_channels": [4, 4]}, "steps": 6, "batch_size": 4},
    "joint": {"steps": 4, "batch_size": 4},
    "train": {"checkpoint_every": 5, "log_every": 5},
    "sampling": {"signal": {"steps": 2, "sampler": "ddim", "eta": 0.0},
                 "logits": {"steps": 2, "sampler": "pc", "corrector_steps": 0, "snr": 0.5}},
    "evaluation": {"batch_size": 9, "bootstrap": 50, "seeds": [0], "heavy_seeds": 1},
}


@pytest.mark.slow  # ~3.5 min beside three training jobs (2026-12-07); most of it is process start-up and Lightning per stage
def test_a_tiny_ecg_bundle_trains_and_evaluates(tmp_path):
    path = tmp_path / "ecg.yaml"
    path.write_text(yaml.safe_dump({**TINY, "output": str(tmp_path / "ckpt")}))
    run_cli("train", path, "--quiet", "--stages", "classifier", "signal", "logits", "joint", cwd=ROOT)
    meta = json.loads((tmp_path / "ckpt" / "signal.json").read_text())
    assert meta["domain"] == "ecg" and meta["arch"] == "ecg_unet"
    out = tmp_path / "eval"
    run_cli("evaluate", path, "--quiet", "--out", out, "--methods", "noisy", "sequential", "parallel",
            "--levels", "heavy", cwd=ROOT)
    results = json.loads((out / "results.json").read_text())
    assert results["domain"] == "ecg" and results["dataset"] == "ecg_synthetic"
    assert results["signal_metrics"] == ["snr_db"]
    rows = {(r["method"], r["corruption"], r["readout"]): r for r in results["rows"]}
    assert {c for _, c, _ in rows} == {"emg", "baseline_wander"}
    assert all(r["metric"] == "macro_f1" and 0 <= r["value"] <= 1 for r in rows.values())
    assert rows[("noisy", "emg", "classifier")]["n_items"] == 18
    assert rows[("sequential", "emg", "classifier")]["snr_db"] is not None
