"""Zero-shot posterior sampling against the trained observation-conditioned denoiser, each tuned on validation, at
measured cost (issue 18, item 3: "what training per corruption buys"). The earlier comparison (docs/results.md,
"Zero-shot against the trained observation-conditioned denoiser") ran both at equal network evaluations with the
zero-shot weights untuned; here every family gets the same search on the same validation digits:

- trained: sequential with the bundle's joint signal net (eta 1), signal steps 1, 2, 3, 5, 10;
- pigdm / ddnm: sequential whose signal chain is that zero-shot sampler around the unconditional prior
  (checkpoints/mnist_prior), signal steps 3, 5, 10, 20, constant weight 0.5, 1, 2 (1 is the anchors' default).

The pick of each family is its best validation accuracy (ties: the cheaper candidate), at the heavy level of the
two corruptions both can run (gaussian_blur, gaussian_noise: linear measurements of the image domain), and is then
run on the test digits with 3 sampling seeds; paired bootstrap intervals over digits against the trained pick.
Seconds per item are measured in the same interleaved run (`evaluate` rotates the methods batch by batch), so
the families share the machine's load; the frontier plot shows every validation candidate's accuracy against its
seconds.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/zero_shot_vs_trained.py val    # the sweep
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/zero_shot_vs_trained.py test   # the picks on test
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/zero_shot_vs_trained.py table  # the tables results.md quotes

Output: docs/results/zero_shot_trained/tuned.json and tuned_frontier.png.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from coupled.atomic import atomic_write, atomic_write_json
from coupled.bundle import load_bundle
from coupled.domains.registry import get_domain
from coupled.evaluation.runner import MethodSpec, evaluate
from coupled.evaluation.stats import bootstrap_ci, paired_bootstrap

BUNDLE, PRIOR = Path("checkpoints/mnist"), "checkpoints/mnist_prior"
OUT = Path("docs/results/zero_shot_trained")
HEAVY = {"gaussian_blur": 2.126, "gaussian_noise": 3.928}
TRAINED_STEPS = (1, 2, 3, 5, 10)
ZERO_SHOT_STEPS, WEIGHTS = (3, 5, 10, 20), (0.5, 1.0, 2.0)


def candidates() -> list[MethodSpec]:
    out = [MethodSpec(f"trained/{s}", "sequential", {"signal_net": "joint", "signal_steps": s, "signal_eta": 1.0})
           for s in TRAINED_STEPS]
    for sampler in ("pigdm", "ddnm"):
        out += [MethodSpec(f"{sampler}/{s}/{w:g}", "sequential",
                           {"signal_steps": s, "zero_shot": {"sampler": sampler, "prior": PRIOR, "weight": w}})
                for s in ZERO_SHOT_STEPS for w in WEIGHTS]
    return out


def _split(name: str, items: int):
    cfg = json.loads((BUNDLE / "config.json").read_text())
    data = get_domain("image").load_splits(cfg)[name]
    if items < len(data.labels):  # class-balanced: the splits are stored sorted by label
        idx = torch.cat([torch.nonzero(data.labels == c).flatten()[:items // 10] for c in range(10)])
        data = replace(data, signals=data.signals[idx], labels=data.labels[idx],
                       ids=None if data.ids is None else [data.ids[i] for i in idx.tolist()])
    return data


def _run(specs, data, seeds):
    bundle = load_bundle(BUNDLE)
    recs, _ = evaluate(bundle, data, {c: {"heavy": v} for c, v in HEAVY.items()}, specs=specs,
                       seeds_for_level=lambda level: seeds, progress=True, n_examples=0)
    cells = {}
    for c in HEAVY:
        for s in specs:
            rs = [r for r in recs if r["corruption"] == c and r["method"] == s.label]
            cells[f"{c}/{s.label}"] = {
                "scores": np.stack([r["score_classifier"] for r in rs]).astype(float),  # [seeds, items]
                "psnr": float(np.mean([np.mean(r["psnr"]) for r in rs if r.get("psnr") is not None] or [np.nan])),
                "seconds_per_item": float(np.mean([r["seconds_per_item"] for r in rs])),
                "calls": rs[0]["calls"]}
    return cells


def _family(label: str) -> str:
    return label.split("/")[0]


def cmd_val(a):
    started = time.time()
    cells = _run(candidates(), _split("val", a.items), [0])
    out = {"command": "PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/zero_shot_vs_trained.py val",
           "split": "val", "items": a.items, "seeds": [0], "severities": HEAVY, "readout": "classifier",
           "candidates": {k: {"accuracy": float(v["scores"].mean()), "psnr": v["psnr"],
                              "seconds_per_item": v["seconds_per_item"], "calls": v["calls"]} for k, v in cells.items()},
           "seconds": round(time.time() - started, 1)}
    picks = {}
    for c in HEAVY:
        for fam in ("trained", "pigdm", "ddnm"):
            mine = {k.split("/", 1)[1]: v for k, v in out["candidates"].items() if k.startswith(f"{c}/{fam}/")}
            best = max(mine, key=lambda k: (round(mine[k]["accuracy"], 6), -mine[k]["seconds_per_item"]))
            picks[f"{c}/{fam}"] = best
    out["picks"] = picks
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT / "tuned.json", out)
    _frontier_png(out)
    print(json.dumps(picks, indent=1))


def cmd_test(a):
    out = json.loads((OUT / "tuned.json").read_text())
    started = time.time()
    specs = {s.label: s for s in candidates()}
    wanted = sorted({label for label in out["picks"].values()})
    cells = _run([specs[w] for w in wanted], _split("test", a.items), a.seeds)
    test = {}
    for c in HEAVY:
        ref = cells[f"{c}/{out['picks'][f'{c}/trained']}"]
        for fam in ("trained", "pigdm", "ddnm"):
            label = out["picks"][f"{c}/{fam}"]
            v = cells[f"{c}/{label}"]
            test[f"{c}/{fam}"] = {**test_cell(label, v, ref, "trained"), "psnr": v["psnr"]}
    save_test(OUT / "tuned.json", out, test, a, started)
    cmd_table(a)


def test_cell(pick: str, v: dict, ref: dict, against: str) -> dict:
    """A pick's test scores [seeds, items] `v` summarised, with its paired bootstrap against `ref`'s."""
    delta, lo, hi = paired_bootstrap(v["scores"], ref["scores"], n_boot=2000)
    return {"pick": pick, "accuracy": float(v["scores"].mean()), "ci95": list(bootstrap_ci(v["scores"], n_boot=2000)),
            "seconds_per_item": v["seconds_per_item"], "calls": v["calls"], f"minus_{against}": delta,
            f"minus_{against}_ci95": [lo, hi], "per_seed": v["scores"].mean(1).round(4).tolist()}


def save_test(path: Path, out: dict, cells: dict, a, started: float) -> None:
    out["test"] = {"items": a.items, "seeds": a.seeds, "seconds": round(time.time() - started, 1), "cells": cells}
    atomic_write_json(path, out)


def cmd_table(a):
    out = json.loads((OUT / "tuned.json").read_text())
    print(f"Validation ({out['items']} digits, seed 0, {out['seconds']} s): accuracy / PSNR / seconds per item")
    print("| corruption (heavy) | candidate | accuracy | PSNR | s/item |")
    print("|---|---|---:|---:|---:|")
    for k, v in out["candidates"].items():
        c, label = k.split("/", 1)
        mark = "**" if out["picks"][f"{c}/{_family(label)}"] == label else ""
        print(f"| {c} | {mark}{label}{mark} | {v['accuracy']:.3f} | {v['psnr']:.2f} | {v['seconds_per_item']:.4f} |")
    if "test" not in out:
        return
    t = out["test"]
    print(f"\nTest ({t['items']} digits, seeds {t['seeds']}, {t['seconds']} s): each family's validation pick")
    print("| corruption (heavy) | family | pick (steps/weight) | accuracy [95%] | minus trained [95%] | PSNR | s/item | "
          "cost / trained's |")
    print("|---|---|---|---|---|---:|---:|---:|")
    for k, v in t["cells"].items():
        c, fam = k.split("/")
        base = t["cells"][f"{c}/trained"]["seconds_per_item"]
        lo, hi = v["ci95"]
        dlo, dhi = v["minus_trained_ci95"]
        print(f"| {c} | {fam} | {v['pick']} | {v['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] | {v['minus_trained']:+.3f} "
              f"[{dlo:+.3f}, {dhi:+.3f}] | {v['psnr']:.2f} | {v['seconds_per_item']:.4f} | "
              f"{v['seconds_per_item'] / base:.1f}x |")


def _frontier_png(out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(HEAVY), figsize=(6 * len(HEAVY), 4.2))
    for ax, c in zip(axes, HEAVY):
        for fam, mk in (("trained", "o"), ("pigdm", "s"), ("ddnm", "^")):
            pts = [(v["seconds_per_item"], v["accuracy"], k.split("/", 2)[2]) for k, v in out["candidates"].items()
                   if k.startswith(f"{c}/{fam}/")]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=mk, label=fam)
            for x, y, name in pts:
                ax.annotate(name, (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
        ax.set(xscale="log", xlabel="measured seconds per item (one thread)", ylabel="validation accuracy",
               title=f"{c} (heavy): each candidate (steps[/weight])")
        ax.legend(fontsize=8)
    atomic_write(OUT / "tuned_frontier.png", lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def val_test_main(doc: str, cmd_val, cmd_test, cmd_table, argv=None, families=None):
    """The command line of a validation search and its test run (this file's, and zero_shot_coupling.py's, whose
    `families` become a `--families` option of both)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("val")
    v.add_argument("--items", type=int, default=200, help="validation digits (class-balanced)")
    t = sub.add_parser("test")
    t.add_argument("--items", type=int, default=500, help="test digits (class-balanced)")
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    if families:
        for sp in (v, t):
            sp.add_argument("--families", nargs="+", choices=families, help="run these families only (default: all)")
    sub.add_parser("table")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    {"val": cmd_val, "test": cmd_test, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    val_test_main(__doc__, cmd_val, cmd_test, cmd_table)
