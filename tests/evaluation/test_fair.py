"""The fair comparison's selection rule, cost matching and headline, on hand-made records."""

import zlib

import numpy as np
import pytest

from coupled.evaluation import fair
from coupled.evaluation.report import headline_table
from coupled.evaluation.runner import MethodSpec


def _rec(label, method, settings, acc, seconds, seed=0, n=200, readout="classifier", corruption="pixel_noise",
         severity=0.7, level="heavy", rng=None):
    # exactly round(acc * n) items right, in an order fixed by the label and seed (never by Python's salted hash:
    # that made the accuracies, and so the picks, change from run to run)
    rng = rng or np.random.default_rng(zlib.crc32(f"{label}/{seed}".encode()))
    correct = rng.permutation(np.arange(n) < round(acc * n))
    rec = {"method": label, "base_method": method, "settings": settings, "corruption": corruption, "severity": severity,
           "level": level, "seed": seed, "correct_logits": None, "correct_classifier": None, "psnr": None, "ssim": None,
           "calls": {"signal": 1, "logits": 0, "classifier": 1}, "seconds_per_item": seconds}
    rec[f"correct_{readout}"] = correct
    return rec


def test_grid_tunes_baselines_and_coupled_separately_with_unique_labels():
    grid = fair.candidate_grid()
    labels = [s.label for s in grid]
    assert len(labels) == len(set(labels))
    methods = {s.method for s in grid}
    assert {"sequential", "one_step", "purification", "sequential_ensemble", "card", "parallel", "alternating", "nested"} <= methods
    seq_steps = {s.options["signal_steps"] for s in grid if s.method == "sequential"}
    assert {1, 2, 3, 5, 10} <= seq_steps
    par = [s.options for s in grid if s.method == "parallel"]
    assert any(o["signal_steps"] != o["logit_steps"] for o in par)  # the two step counts are separate knobs
    # gradient guidance through the classifier is tried on every coupled strategy, never on a baseline
    guided = {s.method for s in grid if "classifier_gradient" in s.options}
    assert guided == {"parallel", "alternating", "nested"}


def test_wide_grid_adds_longer_chains_larger_ensembles_and_more_logit_samples():
    narrow, wide = fair.candidate_grid(), fair.candidate_grid(wide=True)
    labels = [s.label for s in wide]
    assert len(labels) == len(set(labels)) and labels[:len(narrow)] == [s.label for s in narrow]
    extra = wide[len(narrow):]
    assert {s.method for s in extra} == {"sequential", "sequential_ensemble", "card", "logits_only", "parallel",
                                         "alternating", "nested"}
    assert max(s.options["signal_steps"] for s in wide if s.method == "sequential") > 10
    assert max(s.options["k"] * s.options["signal_steps"] for s in extra if s.method == "sequential_ensemble") > \
        max(s.options["k"] * s.options["signal_steps"] for s in narrow if s.method == "sequential_ensemble")
    assert max(s.options.get("logit_samples", 1) for s in extra) > max(s.options.get("logit_samples", 1) for s in narrow)
    assert all(s.options["signal_steps"] >= 5 for s in extra if s.method in ("parallel", "nested"))


def test_select_picks_on_accuracy_and_matches_cost():
    recs = [
        _rec("sequential[a]", "sequential", {"signal_steps": 1}, 0.70, 0.002),
        _rec("sequential[b]", "sequential", {"signal_steps": 5}, 0.60, 0.010),
        _rec("sequential_ensemble[k=5]", "sequential_ensemble", {"k": 5}, 0.80, 0.050),  # better but dearer
        _rec("sequential_ensemble[k=2]", "sequential_ensemble", {"k": 2}, 0.72, 0.004),
        _rec("nested[x]", "nested", {"signal_steps": 1}, 0.75, 0.008, readout="logits"),
        _rec("finetuned_classifier", "finetuned_classifier", {}, 0.95, 0.0001),  # a reference, never matched
    ]
    table = fair.candidate_table(recs)
    picks = fair.select(table)["pixel_noise"]
    assert picks["coupled"]["label"] == "nested[x]" and picks["coupled"]["readout"] == "logits"
    acc = {r["label"]: r["accuracy"] for r in table}
    assert picks["baseline"]["label"] == max(["sequential[a]", "sequential_ensemble[k=2]"], key=acc.get)
    assert picks["best_baseline_any_cost"]["label"] == "sequential_ensemble[k=5]"
    assert picks["per_method"]["sequential"]["settings"] == {"signal_steps": 1}
    specs = fair.test_specs(fair.select(table), "pixel_noise")
    labels = [s.label for s in specs]
    assert "sequential" in labels and "sequential@5" in labels and "finetuned_classifier" in labels
    assert MethodSpec("sequential", "sequential", {"signal_steps": 1}) in specs
    # the demo's scope: the headline's two rows beside noisy and tuned sequential
    demo = fair.test_specs(fair.select(table), "pixel_noise", headline_only=True)
    matched = fair.matched_label(fair.select(table), "pixel_noise")
    assert sorted(s.label for s in demo) == sorted({"sequential", matched, "nested"}) and len(demo) < len(specs)


def test_headline_paired_interval_and_per_seed_deltas():
    rng = np.random.default_rng(0)
    base = rng.random(500) < 0.6
    recs = []
    for seed in (0, 1, 2):
        c = base | (rng.random(500) < 0.2)  # the coupled pick wins items the baseline loses, never the reverse
        recs.append(_rec("nested", "nested", {}, 0, 0.01, seed=seed, readout="logits", n=500))
        recs[-1]["correct_logits"] = c
        recs.append(_rec("sequential", "sequential", {}, 0, 0.005, seed=seed, n=500))
        recs[-1]["correct_classifier"] = base
    picks = {"pixel_noise": {"coupled": {"method": "nested", "readout": "logits", "settings": {}, "accuracy": 0.7, "seconds_per_item": 0.01},
                             "baseline": {"method": "sequential", "readout": "classifier", "settings": {}, "accuracy": 0.6, "seconds_per_item": 0.005},
                             "per_method": {"sequential": {"settings": {}}, "nested": {"settings": {}}}}}
    h = fair.headline(recs, picks, n_boot=500)[0]
    assert h["delta"] > 0.05 and h["delta_ci95"][0] > 0 and h["above_zero"] and h["seeds_agree"]
    assert len(h["per_seed_delta"]) == 3 and all(d > 0 for d in h["per_seed_delta"])
    assert h["coupled"]["seconds_per_item"] == pytest.approx(0.01)
    table = headline_table({"headline": [h]})
    assert "| pixel_noise | heavy | nested (logits" in table
    assert "pixel_noise (heavy): coupling (nested) is better than the best baseline of no greater cost (sequential)" in table
    h_tie = {**h, "delta_ci95": [-0.01, 0.02]}
    assert "is not distinguishable from" in headline_table({"headline": [h_tie]})
    one_round = {**h, "coupled": {**h["coupled"], "method": "alternating", "readout": "classifier",
                                  "settings": {"rounds": 1, "signal_steps": 1}}}
    assert "no coupling is at work in this pick" in headline_table({"headline": [one_round]})
    assert "no coupling is at work" not in table
    wer = {**h, "metric": "wer", "delta": -0.05, "delta_ci95": [-0.08, -0.02]}
    assert "coupling (nested) is better than" in headline_table({"headline": [wer]})
    # every method's pick on test, at the readout validation chose, beside its validation figure
    from coupled.evaluation.report import summarise

    for r in recs:
        r["correct_classifier"] = base  # results rows always carry the classifier readout
    picks["pixel_noise"]["per_method"] = {"sequential": picks["pixel_noise"]["baseline"], "nested": picks["pixel_noise"]["coupled"]}
    table = fair.picks_table(summarise(recs, domain="image", dataset="toy", split="test", clean_accuracy=0.9, n_boot=200),
                             {"picks": picks})
    nested_row = next(line for line in table.splitlines() if "nested (logits)" in line)
    assert "| 0.700 |" in nested_row and nested_row.split("|")[6].strip().startswith("+")  # Δ vs sequential > 0


def test_the_compact_grid_tries_sequential_at_eta_1_as_the_full_grid_does():
    """On speech reverb an untuned eta-1 sequential chain beat the compact grid's tuned baseline on test."""
    from coupled.evaluation.fair import candidate_grid

    for grid in ("compact", "full"):
        etas = {(s.options["signal_steps"], s.options.get("signal_eta")) for s in candidate_grid(grid=grid)
                if s.method == "sequential" and s.options.get("signal_net") == "joint"}
        assert {(2, 1.0), (5, 1.0)} <= etas, grid
