"""Secondary numbers of the ECG domain beside macro-F1 (issue 19): accuracy and AF-vs-rest AUROC of each tuned pick
on the same degraded test items as `coupled evaluate`, with each pick's own readout.

The generic evaluator keeps per-item scores (macro-F1 counts), not class probabilities. This reruns the configurations
a picks file chose (`coupled tune`; `fair.test_specs`, or only the headline's with --headline-only) on the test split
exactly as the evaluator does (its corrupted split: `Domain.corrupt_set` with the evaluator's corruption seed and the
items' ids; its per-item sampling generators), and scores the pick's readout: `y_hat` for the `logits` readout,
f(x_hat) for `classifier` (f(d) for noisy). Accuracy of the argmax, AUROC of the softmax AF probability against
"is AF" (Mann-Whitney), macro-F1 as a check against results.json; each averaged over the sampling seeds.

    python benchmarks/ecg_secondary.py --picks docs/results/ecg_val.json --headline-only --seeds 0 1 2 \
        --out docs/results/ecg_secondary.json

With --methods instead of --picks it scores the named methods as they are (no picks: e.g. the frozen classifier
`noisy` and the retrained reference `dacl`, both deterministic, one seed) on the same degraded items and on the clean
test traces (corruption "clean"):

    python benchmarks/ecg_secondary.py --methods noisy dacl --seeds 0 --out docs/results/ecg_dacl.json
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
from coupled.evaluation import fair
from coupled.evaluation.runner import CORRUPTION_SEED, represent, represent_split
from coupled.scores import get_metric, macro_f1_counts
from coupled.seeds import item_seeds
from coupled.threads import use_threads


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for the `positive` items (Mann-Whitney, ties counted half)."""
    from scipy.stats import rankdata

    pos, n_pos = positive.astype(bool), int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(scores)
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _logits_of(bundle, spec, readout, degraded, seed, batch_size):
    """The readout's logits of `spec` over the degraded split under sampling seed `seed` (the evaluator's generators)."""
    coupling, method, options = bundle.prepare(spec.method, spec.options)
    out = []
    for i in range(0, len(degraded), batch_size):
        d = degraded[i:i + batch_size]
        res = run_method(method, coupling, d, item_generators(item_seeds("sampling", seed, i, len(d))), **options)
        out.append((res.y_hat if readout == "logits" else res.classifier_logits).float().cpu())
    return torch.cat(out)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/ecg.yaml")
    p.add_argument("--picks", help="a picks file of coupled tune, e.g. docs/results/ecg_val.json")
    p.add_argument("--methods", nargs="+", help="instead of --picks: these methods untuned, and on the clean traces too")
    p.add_argument("--headline-only", action="store_true", help="noisy, tuned sequential and the headline's two rows")
    p.add_argument("--level", default="heavy")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampling seeds")
    p.add_argument("--max-items", type=int, default=None, help="the first N test items (default: all)")
    p.add_argument("--out", default="runs/ecg_secondary.json")
    a = p.parse_args(argv)
    if (a.picks is None) == (a.methods is None):
        p.error("pass one of --picks (the tuned picks) or --methods (methods as they are)")
    use_threads(1)
    torch.set_grad_enabled(False)
    cfg = load_config(a.config)
    dom = get_domain("ecg")
    picks = json.loads(open(a.picks).read())["picks"] if a.picks else None
    bundle = load_bundle(cfg["output"], sampling=cfg["sampling"], domain="ecg")
    test = dom.load_splits(cfg)["test"]
    if a.max_items:
        test = test.subset(range(min(a.max_items, len(test))))
    rep = represent_split(bundle, test)
    labels = test.labels.numpy()
    af = labels == 1
    bs = cfg["evaluation"]["batch_size"]
    out = {"config": a.config, "picks": a.picks, "methods": a.methods, "level": a.level, "items": len(test), "sampling_seeds": a.seeds,
           "corruption_seed": cfg["evaluation"].get("corruption_seed", CORRUPTION_SEED), "rows": []}
    names = list(picks) if picks else ["clean", *cfg["corruptions"]["severities"]]
    for name in names:
        sev = None if name == "clean" else cfg["corruptions"]["severities"][name][a.level]
        degraded = rep.signals if name == "clean" else \
            dom.corrupt_set(test.signals, name, sev, out["corruption_seed"], lengths=test.lengths, indices=test.ids)
        if name != "clean":
            degraded, _ = represent(bundle, degraded, test.lengths)
        started = time.perf_counter()
        specs = fair.test_specs(picks, name, headline_only=a.headline_only) if picks else \
            [fair.MethodSpec(m, m, {}) for m in a.methods]
        for spec in specs:
            base = spec.label.split("@")[0]
            readout = "classifier" if not picks or spec.label.startswith("sequential@") else \
                picks[name]["baseline"]["readout"] if spec.label == fair.matched_label(picks, name) and spec.label != base else \
                picks[name]["per_method"][base]["readout"]
            seeds = a.seeds[:1] if spec.method == "noisy" else a.seeds
            per_seed, t0 = [], time.perf_counter()
            for seed in seeds:
                logits = _logits_of(bundle, spec, readout, degraded, seed, bs)
                pred = logits.argmax(-1).numpy()
                per_seed.append({"macro_f1": get_metric("macro_f1").value(macro_f1_counts(labels, pred, 3)),
                                 "accuracy": float((pred == labels).mean()),
                                 "auroc_af": auroc(torch.softmax(logits, -1)[:, 1].numpy(), af)})
            row = {"corruption": name, "severity": sev, "label": spec.label, "method": spec.method, "readout": readout,
                   "settings": spec.options, **{k: float(np.mean([s[k] for s in per_seed])) for k in per_seed[0]},
                   "seconds_per_item": (time.perf_counter() - t0) / (len(seeds) * len(test)), "per_seed": per_seed}
            out["rows"].append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "per_seed"}), flush=True)
        print(f"# {name}: {time.perf_counter() - started:.0f} s", flush=True)
    atomic_write_json(a.out, out)
    return out


if __name__ == "__main__":
    main()
