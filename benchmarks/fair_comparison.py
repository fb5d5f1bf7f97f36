"""The fair comparison of issue 7: tune every method on VALIDATION, then read TEST for the picks only.

    # 1. every candidate configuration of every method, interleaved, on the validation split (heavy severity)
    .venv/bin/python benchmarks/fair_comparison.py val  [--max-items 500]      # -> docs/results/fair_val.json
    .venv/bin/python benchmarks/fair_comparison.py val --merge                # add the grid's new candidates, timed beside anchors
    # 2. the picks on the test split, three sampling seeds, with the cost-matched headline; the same as
    #    coupled evaluate configs/mnist.yaml --picks docs/results/fair_val.json --out docs/results/image --results docs/results/image.json
    .venv/bin/python benchmarks/fair_comparison.py test [--levels heavy ...]   # -> docs/results/image.json, docs/results/image/
    # the markdown tables docs/results.md quotes
    .venv/bin/python benchmarks/fair_comparison.py tables
    # issue 20: occlusion and downsampling on their own bundle, the wide grid, their own files
    .venv/bin/python benchmarks/fair_comparison.py val --config configs/mnist_occlusion.yaml --corruptions occlusion downsample \
        --wide --nets joint sequential --max-items 250 --val-file docs/results/fair_val_occlusion.json
    .venv/bin/python benchmarks/fair_comparison.py test --config configs/mnist_occlusion.yaml \
        --val-file docs/results/fair_val_occlusion.json --test-file docs/results/image_occlusion.json --out-dir docs/results/image_occlusion \
        # every method at light, medium and heavy, 3 seeds (docs/results.md; add --levels heavy --headline-only for the headline alone)

The bundle folder must hold the baselines' networks too (`coupled train configs/mnist.yaml --stages card
finetuned sequential`). Selection rule and the candidate grid: `coupled.evaluation.fair`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from coupled.methods import SIGNAL_NETS
from coupled.config import load_config
from coupled.bundle import default_device, load_bundle
from coupled.evaluation import fair
from coupled.evaluation.report import headline_table
from coupled.evaluation.api import evaluate_config
from coupled.evaluation.bench import available_methods
from coupled.evaluation.runner import evaluate
from coupled.domains.registry import domain_of

VAL = Path("docs/results/fair_val.json")
TEST = Path("docs/results/image.json")
OUT = Path("docs/results/image")


def _subset(data, n):
    if n and n < len(data):  # a fixed random subset: splits are stored class by class
        return data.subset(np.sort(np.random.default_rng(0).permutation(len(data))[:n]))
    return data


def _twin(spec) -> dict:
    """The options of the configuration a merged candidate is timed beside: its lever undone (gradient
    guidance off, the joint signal net)."""
    o = {k: v for k, v in spec.options.items() if k != "classifier_gradient"}
    return {**o, "signal_net": "joint"} if "signal_net" in o else o


def run_val(cfg, args):
    VAL = Path(args.val_file)
    if not args.merge:  # the search `coupled tune` runs, on the full grid of the nets asked for
        val = fair.tune(cfg, checkpoint=args.checkpoint, max_items=args.max_items, nets=args.nets,
                        corruptions=args.corruptions, wide=args.wide)
        fair.dump({"domain": "image", **val}, VAL)
        print(f"wrote {VAL}: {val['runs'][0]['candidates']} candidates, {val['runs'][0]['eval_seconds']:.0f} s")
        return
    bundle = load_bundle(args.checkpoint or cfg["output"], sampling=cfg["sampling"]).to(default_device(cfg["device"]))
    data = _subset(domain_of(cfg).load_splits(cfg)["val"], args.max_items)
    sev = {k: {"heavy": v["heavy"]} for k, v in cfg["corruptions"]["severities"].items()
           if not args.corruptions or k in args.corruptions}
    grid = fair.candidate_grid(cfg["sampling"].get("signal_guidance", 3.0), wide=args.wide)
    net = lambda s: s.options.get("signal_net", "joint")  # noqa: E731
    runnable, _ = available_methods(bundle)  # e.g. no predictive without signal_predictive, as `coupled tune` skips it
    specs = [s for s in grid if net(s) in args.nets and s.method in runnable]
    # only the candidates the file lacks, with the configurations they vary run beside them as timing anchors
    old = json.loads(VAL.read_text())
    known = {r["label"] for r in old["candidates"]}
    new = [s for s in specs if s.label not in known]
    if not new:
        raise SystemExit(f"{VAL} already has every candidate of the grid; nothing to merge")
    anchors = [a for a in grid if a.label in known and any(a.method == s.method and a.options == _twin(s) for s in new)]
    specs = anchors + new
    started = time.time()
    with torch.no_grad():
        records, _ = evaluate(bundle, data, sev, specs=specs, seeds_for_level=lambda lv: [0],
                              batch_size=cfg["evaluation"]["batch_size"], device=default_device(cfg["device"]))
    table = fair.candidate_table(records)
    runs = [{"nets": list(args.nets), "candidates": len(specs), "eval_seconds": round(time.time() - started, 1)}]
    first = {(o["label"], o["readout"]): o["seconds_per_item"] for o in old["candidates"]}
    anchor_labels = {a.label for a in anchors}
    runs = old["runs"] + [{**runs[0], "anchors": [{"label": r["label"], "readout": r["readout"],
                                                   "seconds_this_run": r["seconds_per_item"],
                                                   "seconds_first_run": first[(r["label"], r["readout"])]}
                                                  for r in table if r["label"] in anchor_labels]}]
    table = old["candidates"] + [dict(r, run=len(runs)) for r in table if r["label"] not in anchor_labels]
    fair.dump({"domain": "image", "split": "val", "n_items": len(data), "seeds": [0], "severities": sev,
               "selection_rule": fair.SELECTION_RULE + " (a merged run's candidates are timed beside anchors, "
                                 "recorded under runs)",
               "runs": runs, "candidates": table, "picks": fair.select(table)}, VAL)
    print(f"wrote {VAL}: {len(specs)} candidates, {time.time() - started:.0f} s")


def run_test(cfg, args):
    results = evaluate_config(cfg, split="test", out=Path(args.out_dir), results_path=Path(args.test_file), levels=args.levels,
                              picks=Path(args.val_file), max_items=args.test_items, headline_only=args.headline_only,
                              seeds_for_level=lambda lv: cfg["evaluation"]["seeds"])
    print(headline_table(results))


_SW = "switch_fraction=0.5"
_NEST = "refresh_every=2,refresh_window=[0.5, 1.0]"
# Part 2 of issue 7: each lever as (name, without it, with it), two candidates of the grid that differ in it
LEVERS = [
    ("decoupled steps: Parallel, 1 signal step instead of 5 (5 logit steps)",
     f"parallel[signal_steps=5,logit_steps=5,{_SW},signal_guidance=1.0]", f"parallel[signal_steps=1,logit_steps=5,{_SW},signal_guidance=1.0]"),
    ("decoupled steps: Alternating, 1 signal step instead of 5",
     "alternating[rounds=2,signal_steps=5,logit_steps=5,logit_samples=1]", "alternating[rounds=2,signal_steps=1,logit_steps=5,logit_samples=1]"),
    ("longer logit chain: Alternating, 10 logit steps instead of 5 (1 signal step)",
     "alternating[rounds=2,signal_steps=1,logit_steps=5,logit_samples=1]", "alternating[rounds=2,signal_steps=1,logit_steps=10,logit_samples=1]"),
    ("3 logit samples averaged: Alternating (R=2, 1 signal step)",
     "alternating[rounds=2,signal_steps=1,logit_steps=5,logit_samples=1]", "alternating[rounds=2,signal_steps=1,logit_steps=5,logit_samples=3]"),
    ("warm-started refreshes: Nested (2 signal steps, 5 logit steps)",
     f"nested[signal_steps=2,logit_steps=5,{_NEST}]", f"nested[signal_steps=2,logit_steps=5,{_NEST},refresh_from=0.3,refresh_signal_steps=1]"),
    ("warm-started refreshes: Nested (1 signal step, 10 logit steps)",
     f"nested[signal_steps=1,logit_steps=10,{_NEST}]", f"nested[signal_steps=1,logit_steps=10,{_NEST},refresh_from=0.3,refresh_signal_steps=1]"),
    ("guidance weight 3 instead of 1: Parallel (1 signal step)",
     f"parallel[signal_steps=1,logit_steps=5,{_SW},signal_guidance=1.0]", f"parallel[signal_steps=1,logit_steps=5,{_SW},signal_guidance=3.0]"),
    ("gradient guidance through the classifier, 0.03: Parallel (1 signal step, 5 logit steps)",
     f"parallel[signal_steps=1,logit_steps=5,{_SW},signal_guidance=1.0]",
     f"parallel[signal_steps=1,logit_steps=5,{_SW},signal_guidance=1.0,classifier_gradient=0.03]"),
    ("gradient guidance through the classifier, 0.03: Alternating (R=2, 1 signal step, M=3)",
     "alternating[rounds=2,signal_steps=1,logit_steps=5,logit_samples=3]",
     "alternating[rounds=2,signal_steps=1,logit_steps=5,logit_samples=3,classifier_gradient=0.03]"),
    ("gradient guidance through the classifier, 0.03: Nested (2 signal steps, 5 logit steps)",
     f"nested[signal_steps=2,logit_steps=5,{_NEST}]", f"nested[signal_steps=2,logit_steps=5,{_NEST},classifier_gradient=0.03]"),
    ("baseline: sequential on its own equal-budget denoiser instead of the joint one (1 step)",
     "sequential[signal_net=joint,signal_steps=1,signal_eta=1.0]", "sequential[signal_net=sequential,signal_steps=1,signal_eta=1.0]"),
    ("baseline: 3 sequential trajectories averaged instead of 1 (1 step, joint net)",
     "sequential[signal_net=joint,signal_steps=1,signal_eta=1.0]", "sequential_ensemble[signal_net=joint,k=3,signal_steps=1]"),
]


def lever_table(val: dict) -> str:
    """Markdown: what each lever did on validation (best readout of each candidate), per corruption."""
    best = {}
    for r in val["candidates"]:
        key = (r["corruption"], r["label"])
        if key not in best or r["accuracy"] > best[key]["accuracy"]:
            best[key] = r
    corruptions = list(val["picks"])
    lines = ["| lever | " + " | ".join(f"{c}: accuracy, ms/item" for c in corruptions) + " |", "|---|" + "---|" * len(corruptions)]
    for name, before, after in LEVERS:
        cells = []
        for c in corruptions:
            a, b = best[(c, before)], best[(c, after)]
            cells.append(f"{a['accuracy']:.3f} -> {b['accuracy']:.3f} ({b['accuracy'] - a['accuracy']:+.3f}), "
                         f"{1000 * a['seconds_per_item']:.1f} -> {1000 * b['seconds_per_item']:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables(cfg, args):
    val = json.loads(Path(args.val_file).read_text())
    print(fair.tuning_table(val))
    if all(label in {r["label"] for r in val["candidates"]} for _, a, b in LEVERS for label in (a, b)):
        print(lever_table(val))
    if Path(args.test_file).is_file():
        test = json.loads(Path(args.test_file).read_text())
        print()
        print(headline_table(test))
        print()
        print(fair.picks_table(test, val))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("phase", choices=["val", "test", "tables"])
    p.add_argument("--config", default="configs/mnist.yaml")
    p.add_argument("--max-items", type=int, default=500)
    p.add_argument("--levels", nargs="+", default=["light", "medium", "heavy"])
    p.add_argument("--nets", nargs="+", default=list(SIGNAL_NETS), choices=list(SIGNAL_NETS),
                   help="(val) only candidates on these signal nets")
    p.add_argument("--merge", action="store_true",
                   help="(val) run only the grid's candidates the file lacks and add them, with the configurations "
                        "they vary run beside them as timing anchors")
    p.add_argument("--checkpoint", help="(val) another bundle folder than the config's output (e.g. a training variant)")
    p.add_argument("--val-file", default=str(VAL), help="the validation picks file written (val) and read (test, tables)")
    p.add_argument("--test-file", default=str(TEST), help="(test, tables) the test results file")
    p.add_argument("--out-dir", default=str(OUT), help="(test) the folder of the test report and plots")
    p.add_argument("--test-items", type=int, default=None, help="(test) a fixed random subset of the test split")
    p.add_argument("--headline-only", action="store_true",
                   help="(test) only noisy, tuned sequential, the cost-matched baseline and the coupled pick (as the demo)")
    p.add_argument("--corruptions", nargs="+", default=None, help="(val) tune these corruptions only")
    p.add_argument("--wide", action="store_true", help="(val) the grid with fair.wide_candidates")
    args = p.parse_args()
    cfg = load_config(args.config)
    {"val": run_val, "test": run_test, "tables": tables}[args.phase](cfg, args)


if __name__ == "__main__":
    main()
