"""The laboratory's designed grids inside the methods (issue 18, item 3, the part not done in mnist_designs.py):
sequential and Parallel on checkpoints/mnist at the heavy level of each corruption, the signal chain on the
designed grid (engine `Chain.timesteps`) against its default uniform trailing cosine grid (or the linear-beta grid,
`--against linear`), at 3, 5, 10 and 20 steps; `--methods` adds Alternating and Nested. Each run merges its cells
into the stored step counts.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designed_grids.py --steps 3 5 10 20
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designed_grids.py --steps 3 5 --methods alternating nested
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designed_grids.py --steps 3 5 --against linear
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designed_grids.py --steps 3 5 --design designed_error
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designed_grids.py --steps 3 5 --design designed_conditional
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designed_grids.py --steps 3 5 --design designed_conditional_t999
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designed_grids.py --table [--design designed_error]

The designed grid (`--design designed`, the default) is `design_grid` on the training digits' raw power spectrum
for the bundle's signal process (the cosine VP process of 1000 steps, the same as the generation prior's), read
from docs/results/designs/grid_designs.json (`mnist_designs.py grids` wrote it; computed here when missing);
`--design designed_error` is the one designed from the prior's measured denoising error, and `--design
designed_conditional` one per corruption from the observation-conditioned net's own error given that corruption
(`conditional_grid`: the design for the chain that actually runs; `designed_conditional_t999` the same with its
first time fixed at T - 1). The first two are designed for
*unconditional* generation (W2 between the Gaussian model's samples and the data); the chain here is the
observation-conditioned denoiser, whose x0_hat is much closer to the answer at every step: whether the design
transfers is the question. Methods as the validation picks run them (docs/results/fair_val.json): sequential with
the joint signal net and eta 1; Parallel with 5 logit steps, switch_fraction 0.5, signal_guidance 1 and the
classifier readout; only the signal steps change. Validation digits, 3 sampling seeds (the same per-item noise
for both grids: common random numbers), paired bootstrap over digits of the seed-averaged per-digit accuracy
(`coupled.evaluation.stats.paired_bootstrap`). Output: docs/results/designs/grids_in_methods.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from coupled.analysis import design_grid, power_spectrum_2d
from coupled.atomic import atomic_write_json
from coupled.bundle import load_bundle
from coupled.domains.registry import get_domain
from coupled.engine import VPProcess
from coupled.evaluation.runner import MethodSpec, evaluate
from coupled.evaluation.stats import bootstrap_ci, paired_bootstrap

BUNDLE = Path("checkpoints/mnist")
OUT = Path("docs/results/designs")
HEAVY = {"pixel_noise": 0.716, "gaussian_noise": 3.928, "gaussian_blur": 2.126}


def designed_grid(steps: int, process: VPProcess, train, design: str = "designed") -> list[int]:
    """A design at `steps` (engine format, -1 last), cached as mnist_designs.py caches it: `designed` (the raw
    spectrum's, computed here when missing) or `designed_error` (the prior's measured error's: run
    `mnist_designs.py grids --steps S` first)."""
    path = OUT / "grid_designs.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    if design in cache.get(str(steps), {}):
        return [*cache[str(steps)][design], -1]
    if design != "designed":
        raise SystemExit(f"no {design} grid at {steps} steps in {path}; run mnist_designs.py grids --steps {steps} first")
    lam = power_spectrum_2d(train.signals)
    return design_grid(lam, torch.ones_like(lam), process, steps).int().tolist()


def conditional_grid(steps: int, corruption: str, bundle, train, fix_first: bool = False) -> list[int]:
    """The grid designed for the *conditional* chain at `steps` (engine format, -1 last): the W2 design for the
    Gaussian whose MMSE per noise level is the observation-conditioned signal net's measured error given the heavy
    corruption of 500 training digits (class-balanced; training, so the validation digits the comparison runs on
    stay out of the design). `fix_first`: the first time stays T - 1 (`design_grid(fix_first=True)`: the chain
    starts from pure noise, in distribution only at T - 1). Cached in docs/results/designs/conditional_designs.json
    per corruption."""
    import sys

    from coupled.evaluation.runner import CORRUPTION_SEED

    sys.path.insert(0, str(Path(__file__).parent))
    from mnist_designs import measure_and_fit

    path = OUT / "conditional_designs.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    entry = cache.setdefault(corruption, {})
    if "lam" not in entry:
        idx = torch.cat([torch.nonzero(train.labels == c).flatten()[:50] for c in range(10)])
        x0 = train.signals[idx]
        d = get_domain("image").corrupt_set(x0, corruption, HEAVY[corruption], CORRUPTION_SEED)
        coupling, _, _ = bundle.prepare("sequential", {"signal_net": "joint", "signal_eta": 1.0})
        m = measure_and_fit(coupling.signal_denoiser, coupling.signal_chain.process, x0, 1, observation=d, logits=None)
        entry.update({"severity": HEAVY[corruption], "items": "500 training digits (50 per class)", "t": m["t"],
                      "error": m["error"], "seconds": m["seconds"], "lam": m["lam"].tolist(),
                      "counts": m["counts"].tolist()})
    key = "grids_first_fixed" if fix_first else "grids"
    if str(steps) not in entry.get(key, {}):
        lam, counts = torch.tensor(entry["lam"], dtype=torch.float64), torch.tensor(entry["counts"], dtype=torch.float64)
        process = bundle.coupling.signal_chain.process
        entry.setdefault(key, {})[str(steps)] = design_grid(lam, counts, process, steps,
                                                           fix_first=fix_first)[:-1].int().tolist()
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, cache)
    return [*entry[key][str(steps)], -1]


def linear_grid(steps: int, process: VPProcess) -> list[int]:
    """The linear-beta grid of `mnist_designs.py grids` (engine format, -1 last), the one the generation table uses."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from mnist_designs import _linear_grid_on

    return _linear_grid_on(process, steps).int().tolist()  # ends with the terminal -1


def specs(steps: int, methods=("sequential", "parallel")) -> list[MethodSpec]:
    """The methods as the validation picks run them, at `steps` signal steps: Alternating with 2 rounds, 5 logit steps
    and one logit sample; Nested with 5 logit steps, refreshes every 2 over [0.5, 1] (its refreshes start part-way,
    where an explicit grid gives way to the default one, so only its first trajectory runs the designed grid)."""
    every = {"sequential": {"signal_net": "joint", "signal_steps": steps, "signal_eta": 1.0},
             "parallel": {"signal_steps": steps, "logit_steps": 5, "switch_fraction": 0.5, "signal_guidance": 1.0},
             "alternating": {"rounds": 2, "signal_steps": steps, "logit_steps": 5, "logit_samples": 1},
             "nested": {"signal_steps": steps, "logit_steps": 5, "refresh_every": 2, "refresh_window": [0.5, 1.0]}}
    return [MethodSpec(m, m, every[m]) for m in methods]


def _delta_key(design: str, other: str) -> str:
    """Where a cell stores design - other: 'delta' / 'delta_vs_linear' for the raw-spectrum design (the first
    runs' keys), '<design>_delta' / '<design>_delta_vs_linear' for another design."""
    key = "delta" if other == "default" else f"delta_vs_{other}"
    return key if design == "designed" else f"{design}_{key}"


def table(path: Path, design: str = "designed") -> str:
    """The markdown table of docs/results.md from grids_in_methods.json (cells that ran `design`)."""
    out = json.loads(path.read_text())
    key = _delta_key(design, "default")
    rows = [f"| steps | corruption (heavy) | method | default grid | {design} grid | {design} - default [95% CI] |",
            "|---|---|---|---|---|---|"]
    for s, cell in out["steps"].items():
        for name, c in cell["cells"].items():
            if key not in c:
                continue
            corruption, method = name.split("/")
            lo, hi = c[f"{key}_ci"]
            rows.append(f"| {s} | {corruption} | {method} | {c['default']:.3f} | {c[design]:.3f} | "
                        f"{c[key]:+.3f} [{lo:+.3f}, {hi:+.3f}] |")
    return "\n".join(rows)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=[3, 5, 10])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--items", type=int, default=500)
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--methods", nargs="+", default=["sequential", "parallel"],
                   choices=["sequential", "parallel", "alternating", "nested"],
                   help="the methods whose signal chain runs each grid (cells of other methods already stored are kept)")
    p.add_argument("--against", nargs="+", default=["default"], choices=["default", "linear"],
                   help="the grids the designed one is compared with (default: the uniform trailing cosine grid; "
                        "linear: the linear-beta schedule's uniform grid mapped to the cosine process by log-SNR)")
    p.add_argument("--design", default="designed", choices=["designed", "designed_error", "designed_conditional",
                                                         "designed_conditional_t999"],
                   help="the designed grid: the raw power spectrum's (default), the prior's measured error's, or the "
                        "conditional signal net's measured error's given each corruption (one grid per corruption; "
                        "_t999: its first time fixed at the last training step)")
    p.add_argument("--table", action="store_true", help="print the table of the stored results and stop")
    a = p.parse_args()
    if a.table:
        print(table(OUT / "grids_in_methods.json", a.design))
        return
    torch.set_num_threads(1)
    cfg = json.loads((BUNDLE / "config.json").read_text())
    splits = get_domain("image").load_splits(cfg)
    val = splits["val"]
    if a.items < len(val.labels):
        from dataclasses import replace

        val = replace(val, signals=val.signals[:a.items], labels=val.labels[:a.items],
                      ids=None if val.ids is None else val.ids[:a.items])
    stored = json.loads((BUNDLE / "pipeline.json").read_text())["sampling"]
    path = OUT / "grids_in_methods.json"
    out = json.loads(path.read_text()) if path.exists() else {
        "command": "PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designed_grids.py --steps S",
        "split": "val", "items": len(val.labels), "seeds": a.seeds, "severities": HEAVY, "readout": "classifier",
        "bootstrap": f"{a.bootstrap} paired resamples of validation digits (seed-averaged per digit)",
        "design": "design_grid on the training digits' raw power spectrum, cosine VP 1000 (grid_designs.json 'designed')",
        "steps": {}}
    for s in a.steps:
        started = time.time()
        records = {}
        grids = {}
        for name in (a.design, *a.against):
            sampling = copy.deepcopy(stored)
            sampling["signal"]["steps"] = s
            bundle = load_bundle(BUNDLE, sampling=sampling)
            process = bundle.coupling.signal_chain.process
            if name.startswith("designed_conditional"):  # one grid per corruption, so one run per corruption
                records[name], grids[name] = [], {}
                for c, v in HEAVY.items():
                    sampling["signal"]["timesteps"] = conditional_grid(s, c, bundle, splits["train"],
                                                                       fix_first=name.endswith("_t999"))
                    b = load_bundle(BUNDLE, sampling=sampling)
                    grids[name][c] = b.coupling.signal_chain.grid[:-1].int().tolist()
                    recs, _ = evaluate(b, val, {c: {"heavy": v}}, specs=specs(s, a.methods),
                                       seeds_for_level=lambda level: a.seeds, progress=False, n_examples=0,
                                       score_estimates=False)
                    records[name] += recs
                continue
            if name != "default":
                sampling["signal"]["timesteps"] = (designed_grid(s, process, splits["train"], name) if name == a.design
                                                   else linear_grid(s, process))
                bundle = load_bundle(BUNDLE, sampling=sampling)
            grids[name] = bundle.coupling.signal_chain.grid[:-1].int().tolist()
            recs, _ = evaluate(bundle, val, {c: {"heavy": v} for c, v in HEAVY.items()}, specs=specs(s, a.methods),
                               seeds_for_level=lambda level: a.seeds, progress=False, n_examples=0, score_estimates=False)
            records[name] = recs
        cells = {}
        for c in HEAVY:
            for m in a.methods:
                per = {name: np.stack([r["score_classifier"] for r in records[name]
                                       if r["corruption"] == c and r["method"] == m]).astype(float)
                       for name in records}  # [seeds, items]
                cell = {name: float(per[name].mean()) for name in per}
                cell.update({f"{name}_ci": list(bootstrap_ci(per[name], n_boot=a.bootstrap)) for name in per})
                cell["per_seed"] = {name: per[name].mean(1).round(4).tolist() for name in per}
                for other in a.against:  # "delta" is designed - default; "delta_vs_linear" designed - linear
                    delta, lo, hi = paired_bootstrap(per[a.design], per[other], n_boot=a.bootstrap)
                    key = _delta_key(a.design, other)
                    cell.update({key: delta, f"{key}_ci": [lo, hi]})
                    print(f"{s} steps {c:15s} {m:10s} {other} {cell[other]:.3f} {a.design} {cell[a.design]:.3f} "
                          f"delta {delta:+.3f} [{lo:+.3f}, {hi:+.3f}]", flush=True)
                old_cell = out["steps"].get(str(s), {}).get("cells", {}).get(f"{c}/{m}", {})
                cells[f"{c}/{m}"] = {**old_cell, **cell,
                                     "per_seed": {**old_cell.get("per_seed", {}), **cell["per_seed"]}}
        seconds = round(time.time() - started, 1)
        # merged into the file as it is now (another process may have written other step counts or methods)
        if path.exists():
            out = json.loads(path.read_text())
        old = out["steps"].get(str(s), {})
        runs = old.get("runs", [{"methods": ["sequential", "parallel"], "seconds": old["seconds"]}] if old else [])
        out["steps"][str(s)] = {"grids": {**old.get("grids", {}), **grids}, "cells": {**old.get("cells", {}), **cells},
                                "seconds": round(sum(r["seconds"] for r in runs) + seconds, 1),
                                "runs": runs + [{"methods": list(a.methods), "against": list(a.against),
                                                 "design": a.design, "seconds": seconds}]}
        OUT.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, out)
        print(f"{s} steps: {out['steps'][str(s)]['seconds']} s; grids {grids}", flush=True)


if __name__ == "__main__":
    main()
