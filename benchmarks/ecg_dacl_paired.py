"""Paired intervals of the coupled pick against the retrained reference DACL on the ECG headline's test items.

For each heavy degradation of docs/results/ecg_without_predictive.json: the headline's coupled pick (its method, settings and readout)
over the sampling seeds, and each named reference method (deterministic: one run), on the same degraded test traces
as `coupled evaluate` (`Domain.corrupt_set`, corruption seed 12345, the items' ids; the evaluator's per-item sampling
generators). The macro-F1 difference (coupled - reference) with a paired bootstrap over traces (2,000 resamples,
seeds averaged per trace first, `evaluation.stats.paired_bootstrap`):

    python benchmarks/ecg_dacl_paired.py --methods dacl dacl_degraded --out docs/results/ecg_dacl_paired.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from coupled.atomic import atomic_write_json
from coupled.bundle import load_bundle
from coupled.config import load_config
from coupled.domains.registry import get_domain
from coupled.engine import item_generators, run_method
from coupled.evaluation.runner import CORRUPTION_SEED, represent
from coupled.evaluation.stats import paired_bootstrap
from coupled.scores import get_metric, macro_f1_counts
from coupled.seeds import item_seeds
from coupled.threads import use_threads


def _counts(bundle, method, options, readout, degraded, labels, seed, batch_size) -> np.ndarray:
    """Per-trace macro-F1 counts [N, 9] of `method` with `options` read out by `readout` under sampling seed `seed`."""
    coupling, engine_method, opts = bundle.prepare(method, options)
    preds = []
    for i in range(0, len(degraded), batch_size):
        d = degraded[i:i + batch_size]
        res = run_method(engine_method, coupling, d, item_generators(item_seeds("sampling", seed, i, len(d))), **opts)
        preds.append((res.y_hat if readout == "logits" else res.classifier_logits).argmax(-1).cpu())
    return macro_f1_counts(labels, torch.cat(preds).numpy(), 3)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/ecg.yaml")
    p.add_argument("--headline", default="docs/results/ecg_without_predictive.json")
    p.add_argument("--methods", nargs="+", default=["dacl"], help="reference methods of the bundle")
    p.add_argument("--out", default="runs/ecg_dacl_paired.json")
    a = p.parse_args(argv)
    use_threads(1)
    torch.set_grad_enabled(False)
    cfg = load_config(a.config)
    dom = get_domain("ecg")
    headline = json.loads(open(a.headline).read())
    seeds = cfg["evaluation"]["seeds"]  # the headline's sampling seeds at the heavy level
    bundle = load_bundle(cfg["output"], sampling=cfg["sampling"], domain="ecg")
    test = dom.load_splits(cfg)["test"]
    labels = test.labels.numpy()
    bs, metric = cfg["evaluation"]["batch_size"], get_metric("macro_f1")
    out = {"config": a.config, "headline": a.headline, "items": len(test), "sampling_seeds": seeds,
           "corruption_seed": CORRUPTION_SEED, "bootstrap": 2000, "rows": []}
    for h in headline["headline"]:
        name, sev, pick = h["corruption"], h["severity"], h["coupled"]
        started = time.perf_counter()
        degraded = dom.corrupt_set(test.signals, name, sev, CORRUPTION_SEED, lengths=test.lengths, indices=test.ids)
        degraded, _ = represent(bundle, degraded, test.lengths)
        coupled = np.stack([_counts(bundle, pick["method"], pick["settings"], pick["readout"], degraded, labels, s, bs)
                            for s in seeds])
        for m in a.methods:
            ref = _counts(bundle, m, {}, "classifier", degraded, labels, 0, bs)[None]
            delta, lo, hi = paired_bootstrap(coupled.astype(float), ref.astype(float), n_boot=2000, metric=metric)
            row = {"corruption": name, "severity": sev, "coupled": pick["method"], "settings": pick["settings"],
                   "readout": pick["readout"], "coupled_macro_f1": metric.value(coupled.astype(float)),
                   "reference": m, "reference_macro_f1": metric.value(ref.astype(float)),
                   "delta": delta, "delta_ci95": [lo, hi]}
            out["rows"].append(row)
            print(json.dumps(row), flush=True)
        print(f"# {name}: {time.perf_counter() - started:.0f} s", flush=True)
    atomic_write_json(a.out, out)
    return out


if __name__ == "__main__":
    main()
