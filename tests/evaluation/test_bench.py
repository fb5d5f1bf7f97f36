"""`coupled bench` on the tiny bundle: it runs and writes well-formed results. Timing is never asserted."""

import json
from types import SimpleNamespace

import torch

from coupled.bundle import load_bundle
from coupled.engine import item_generators, run_method
from coupled.evaluation.bench import NETWORKS, available_methods, bench_specs, timed_coupling
from tests.image.conftest import run_cli


def test_bench_quick_writes_json_doc_and_plot(trained, tmp_path):
    cfg, ckpt = trained
    out, doc = tmp_path / "results" / "bench.json", tmp_path / "docs" / "performance.md"
    run_cli("bench", cfg, "--quick", "--checkpoint", ckpt, "--out", out, "--doc", doc, "--threads", 1,
            "--batch-sizes", 2, 5, "--quiet", timeout=600)
    res = json.loads(out.read_text())
    assert res["profile"] == "quick" and res["command"].startswith("coupled bench")
    assert len(res["machine"]["loadavg_start"]) == 3 and res["machine"]["torch_threads"] == 1
    methods, skipped = available_methods(SimpleNamespace(folder=ckpt))
    assert set(res["skipped"]) == set(skipped)
    (run,) = res["accuracy_runs"]
    assert run["items"] == 200 and run["corruption"] == "gaussian_noise"
    rows = {r["label"]: r for r in run["rows"]}
    assert {r["method"] for r in rows.values()} == set(methods)
    steps = res["settings"]["steps"]
    for m in ("sequential", "parallel", "alternating", "nested"):
        assert {f"{m}@{n}" for n in steps} <= set(rows)
    for r in rows.values():
        assert r["seconds_per_item"] > 0 and r["passes"] >= 1 and set(r["network_seconds"]) == set(NETWORKS)
        assert r["overhead"] < 1 and sum(r["network_seconds"].values()) <= r["wall_seconds"]
        assert all(r["forward_seconds"][k] <= r["network_seconds"][k] for k in NETWORKS)
        assert r["overhead"] <= r["overhead_outside_forwards"] < 1
        assert r["accuracy"] and all(0 <= a <= 1 for a in r["accuracy"].values())
    # guided signal calls count two passes; the cost ratio to same-step sequential is 1 for sequential itself
    assert rows["sequential@2"]["cost_ratio_same_steps"] == 1.0
    assert rows["alternating@2"]["calls"]["signal_passes"] >= rows["alternating@2"]["calls"]["signal"]
    assert [(t["method"], t["batch_size"]) for t in res["throughput"]] == [
        (m, b) for m in res["settings"]["throughput_methods"] for b in (2, 5)]
    for t in res["throughput"]:
        assert t["device"] == "cpu" and t["items_per_second"] > 0 and t["cpu_peak_rss_mb"] >= t["cpu_rss_after_load_mb"] > 0
    text = doc.read_text()
    assert all(f"`{m}`" in text for m in skipped)  # a method whose nets are missing is named, not dropped silently
    assert "`coupled bench" in text and "--quick" in text and "Load average" in text
    for section in ("Engine overhead", "Cost ratios to sequential", "Accuracy against calls and seconds",
                    "Throughput and peak memory"):
        assert section in text
    png = doc.with_name("performance_accuracy_seconds.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.name in text


def test_timed_coupling_changes_nothing_but_the_clock(trained):
    _, ckpt = trained
    bundle = load_bundle(ckpt)
    d = torch.rand(3, 1, 28, 28) * 2 - 1
    clock, forwards = {}, {}
    for method in ("nested", "sequential_ensemble"):  # the ensemble calls the classifier's `raw`
        coupling, engine_method, options = bundle.prepare(method, {})
        plain = run_method(engine_method, coupling, d, item_generators([1, 2, 3]), **options)
        timed = run_method(engine_method, timed_coupling(coupling, clock, forwards=forwards), d,
                           item_generators([1, 2, 3]), **options)
        assert torch.equal(plain.classifier_logits, timed.classifier_logits) and plain.calls == timed.calls
    assert torch.equal(plain.x_hat, timed.x_hat)
    assert all(0 < forwards[k] <= clock[k] for k in NETWORKS)


def test_methods_without_their_nets_are_skipped_with_a_note(tmp_path):
    methods, skipped = available_methods(SimpleNamespace(folder=tmp_path))
    assert set(skipped) == {"card", "finetuned_classifier", "predictive"} and "card.safetensors" in skipped["card"]
    assert "card" not in methods and "parallel" in methods
    specs = bench_specs(methods, {"parallel": {"switch_fraction": 0.5}}, (1, 2), default_steps=3)
    labels = [s.label for s in specs]
    assert "noisy" in labels and "one_step" in labels and "parallel@3" in labels and "parallel@1" in labels
    par = next(s for s in specs if s.label == "parallel@2")
    assert par.options == {"switch_fraction": 0.5, "signal_steps": 2, "logit_steps": 2}
    assert next(s for s in specs if s.label == "logits_only@2").options == {"logit_steps": 2}


def test_bench_bad_options_are_one_line_errors(tmp_path):
    for args in (["--threads", "0"], ["--out", str(tmp_path)], ["--batch-sizes", "x"]):
        proc = run_cli("bench", "--quick", *args, check=False, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and "error" in lines[0], (args, proc.stderr)
