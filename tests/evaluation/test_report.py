import json

import matplotlib.image
import numpy as np
import pytest

from coupled.errors import CoupledError
from coupled.evaluation.report import markdown_report, plot_accuracy_vs_severity, plot_examples, summarise, write_results
from coupled.evaluation.stats import bootstrap_ci, paired_bootstrap

N = 200
SEVERITIES = {"pixel_noise": {0.15: "light", 0.5: "heavy"}, "gaussian_blur": {1.5: "light", 3.5: "heavy"}}
# Accuracy at (light, heavy): noisy falls fastest, parallel recovers most.
ACCURACY = {"noisy": (0.8, 0.45), "sequential": (0.88, 0.7), "parallel": (0.91, 0.78)}
CALLS = {"noisy": (0, 0, 1), "sequential": (20, 0, 1), "parallel": (20, 20, 11)}
ROW_KEYS = {"method", "corruption", "severity", "level", "metric", "readout", "value", "ci95", "delta_vs_sequential", "delta_ci95",
            "calls", "seconds_per_item", "n_items", "seeds", "psnr", "ssim", "gap_recovered"}
KW = dict(domain="image", dataset="mnist5k", split="test", clean_accuracy=0.97, n_boot=500)


def synthetic_records(n=N, seed=0):
    """3 methods x 2 corruptions x 2 severities; noisy has one seed (it is deterministic), the others two."""
    rng, records = np.random.default_rng(seed), []
    for corruption, sevs in SEVERITIES.items():
        for k, (severity, level) in enumerate(sevs.items()):
            difficulty = rng.random(n)  # shared by all methods: what makes the comparisons paired
            for method, acc in ACCURACY.items():
                for s in [0] if method == "noisy" else [0, 1]:
                    jitter = 0.05 * rng.standard_normal(n)
                    correct = difficulty + jitter < acc[k]
                    signal = method != "noisy"
                    records.append({
                        "method": method, "corruption": corruption, "severity": severity, "level": level, "seed": s,
                        "correct_logits": (difficulty + jitter < acc[k] + 0.02) if method == "parallel" else None,
                        "correct_classifier": correct,
                        "psnr": rng.normal(20 - 4 * k, 1, n) if signal else None,
                        "ssim": rng.uniform(0.5, 0.9, n) if signal else None,
                        "calls": dict(zip(("signal", "logits", "classifier"), CALLS[method])),
                        "seconds_per_item": 0.01 * (1 + s) * (1 + CALLS[method][0]),
                    })
    return records


def synthetic_examples(n_rows=3):
    rng = np.random.default_rng(0)
    clean = [np.clip(rng.normal(0, 0.5, (28, 28)), -1, 1) for _ in range(n_rows)]
    return [{"title": f"item {i} (label {i})",
             "panels": [("clean", c), ("noisy", np.clip(c + rng.normal(0, 0.6, c.shape), -1, 1)),
                        ("sequential", 0.8 * c), ("parallel", 0.9 * c),
                        ("colour", np.stack([c, -c, 0 * c], axis=-1))]}
            for i, c in enumerate(clean)]


def _pick(results, method, corruption, severity, readout):
    (row,) = [r for r in results["rows"] if (r["method"], r["corruption"], r["severity"], r["readout"]) == (method, corruption, severity, readout)]
    return row


@pytest.fixture(scope="module")
def records():
    return synthetic_records()


@pytest.fixture(scope="module")
def results(records):
    return summarise(records, **KW, extra={"steps": 20, "switch": 0.5})


def test_schema_keys_and_rows(results):
    assert set(results) == {"schema", "domain", "dataset", "split", "clean", "rows", "settings"}
    assert results["schema"] == "coupled-results/1" and results["clean"] == {"metric": "accuracy", "value": 0.97}
    assert results["settings"] == {"steps": 20, "switch": 0.5}
    # Per (corruption, severity): noisy and sequential have the classifier readout only, parallel both.
    assert len(results["rows"]) == 4 * 4
    assert all(set(r) == ROW_KEYS for r in results["rows"])
    assert [(r["method"], r["readout"]) for r in results["rows"][:4]] == [("noisy", "classifier"), ("sequential", "classifier"), ("parallel", "logits"), ("parallel", "classifier")]
    assert [r["corruption"] for r in results["rows"][::4]] == ["pixel_noise"] * 2 + ["gaussian_blur"] * 2
    json.dumps(results, allow_nan=False)


def test_one_row_by_hand(records, results):
    mine = [r for r in records if (r["method"], r["corruption"], r["severity"]) == ("parallel", "pixel_noise", 0.5)]
    seq = [r for r in records if (r["method"], r["corruption"], r["severity"]) == ("sequential", "pixel_noise", 0.5)]
    (noisy,) = [r for r in records if (r["method"], r["corruption"], r["severity"]) == ("noisy", "pixel_noise", 0.5)]
    a = np.stack([r["correct_logits"] for r in mine]).astype(float)
    b = np.stack([r["correct_classifier"] for r in seq]).astype(float)
    row = _pick(results, "parallel", "pixel_noise", 0.5, "logits")
    value = a.sum() / a.size
    assert row["value"] == pytest.approx(value)
    assert row["ci95"] == list(bootstrap_ci(a, n_boot=500))
    assert row["delta_vs_sequential"] == pytest.approx(value - b.sum() / b.size)
    assert row["delta_ci95"] == list(paired_bootstrap(a, b, n_boot=500)[1:])
    assert row["delta_ci95"][0] <= row["delta_vs_sequential"] <= row["delta_ci95"][1]
    assert row["calls"] == {"signal": 20, "logits": 20, "classifier": 11}
    assert row["seconds_per_item"] == pytest.approx((0.21 + 0.42) / 2)
    assert row["psnr"] == pytest.approx(np.concatenate([r["psnr"] for r in mine]).mean())
    assert row["ssim"] == pytest.approx(np.concatenate([r["ssim"] for r in mine]).mean())
    acc_noisy = noisy["correct_classifier"].mean()
    assert row["gap_recovered"] == pytest.approx((value - acc_noisy) / (0.97 - acc_noisy))
    assert (row["level"], row["metric"], row["n_items"], row["seeds"]) == ("heavy", "accuracy", N, [0, 1])


def test_sequential_against_itself_and_noisy(results):
    for r in results["rows"]:
        if r["method"] == "sequential":
            assert r["delta_vs_sequential"] == 0.0 and r["delta_ci95"] == [0.0, 0.0]
        if r["method"] == "noisy":
            assert r["gap_recovered"] == 0.0 and r["psnr"] is None and r["ssim"] is None and r["seeds"] == [0]


def test_missing_sequential_gives_null_delta(records):
    res = summarise([r for r in records if r["method"] != "sequential"], **KW)
    assert "settings" not in res
    assert all(r["delta_vs_sequential"] is None and r["delta_ci95"] is None for r in res["rows"])
    assert all(r["gap_recovered"] is not None for r in res["rows"])


def test_a_logits_only_method_alone_or_first_is_summarised(records):
    """A method with no classifier readout (CARD) may be the only one, or the first one, at a severity."""
    card = [{**r, "method": "card", "correct_classifier": None, "psnr": None, "ssim": None}
            for r in records if r["method"] == "parallel"]
    alone = summarise(card, **KW)
    assert {(r["readout"], r["n_items"]) for r in alone["rows"]} == {("logits", N)}
    first = summarise(card + [r for r in records if r["method"] == "sequential"], **KW)
    assert all(r["n_items"] == N for r in first["rows"])


def test_summarise_is_deterministic(records, results):
    assert summarise(records, **KW, extra={"steps": 20, "switch": 0.5}) == results


@pytest.mark.parametrize(
    "edit",
    [
        lambda rs: rs + [dict(rs[0])],  # repeated seed
        lambda rs: [dict(rs[0], correct_classifier=rs[0]["correct_classifier"][:-1])] + rs[1:],  # other items
        lambda rs: [{k: v for k, v in rs[0].items() if k != "calls"}] + rs[1:],
        lambda rs: [dict(r, correct_logits=None) if i == 3 else r for i, r in enumerate(rs)],  # one parallel seed only
        lambda rs: [],
    ],
)
def test_bad_records_raise(records, edit):
    with pytest.raises(CoupledError):
        summarise(edit(list(records)), **KW)


def test_write_results_round_trip(results, tmp_path):
    path = write_results(results, tmp_path / "out" / "results.json")
    assert json.loads(path.read_text()) == results
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp file left behind
    with pytest.raises(CoupledError):
        write_results({"rows": [float("nan")]}, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()


def test_markdown_report(results):
    md = markdown_report(results)
    assert "0.970" in md
    for word in ("noisy", "sequential", "parallel", "pixel_noise", "gaussian_blur", "Settings"):
        assert word in md
    tables = [[ln for ln in block.splitlines() if ln.startswith("|")] for block in md.split("## ")]
    tables = [t for t in tables if t]
    assert len(tables) == 2 and all(len(t) == 2 + 4 for t in tables)
    assert all(len({len(ln) for ln in t}) == 1 for t in tables)  # padded: columns line up in a terminal


def _check_png(path):
    assert path.stat().st_size > 5_000
    assert matplotlib.image.imread(path).ndim == 3


def test_plots_write_png(results, tmp_path):
    _check_png(plot_accuracy_vs_severity(results, tmp_path / "acc.png"))
    _check_png(plot_examples(synthetic_examples(), tmp_path / "examples.png"))
    empty = plot_examples([], tmp_path / "empty.png")
    assert empty.stat().st_size > 0 and matplotlib.image.imread(empty).ndim == 3
    with pytest.raises(CoupledError):
        plot_examples([{"title": "x", "panels": [("bad", np.zeros((3, 28, 28)))]}], tmp_path / "bad.png")
