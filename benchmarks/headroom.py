"""How much room sequential enhancement leaves a coupled strategy, per corruption at one severity level.

For every item of a split: is the frozen classifier right on the clean digit, f(s), and on sequential's
enhanced digit, f(x_hat) (sequential as validation tuned it per corruption in docs/results/fair_val.json,
sampling seed 0, the evaluation's corrupted items)? Items where f(s) is right
and f(x_hat) is wrong are what better enhancement could win back without beating the classifier itself;
the logit chain's target is norm(f(s)), so it learns no more than f(s) knows.

    .venv/bin/python benchmarks/headroom.py [--split test] [--level heavy] [--picks docs/results/fair_val.json]
"""

from __future__ import annotations

import argparse
import json

import torch

from coupled.config import load_config
from coupled.domains.image.corruptions import corrupt
from coupled.bundle import load_bundle
from coupled.evaluation.runner import CORRUPTION_SEED, MethodSpec, run_specs
from coupled.domains.registry import domain_of


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/mnist.yaml")
    p.add_argument("--split", default="test")
    p.add_argument("--level", default="heavy")
    p.add_argument("--picks", default="docs/results/fair_val.json", help="validation picks: sequential's tuned settings")
    args = p.parse_args()
    picks = json.loads(open(args.picks).read())["picks"]
    cfg = load_config(args.config)
    bundle = load_bundle(cfg["output"], sampling=cfg["sampling"])
    data = domain_of(cfg).load_splits(cfg)[args.split]
    torch.set_grad_enabled(False)
    clean_right = (bundle.coupling.classifier.raw(data.signals).argmax(-1) == data.labels).numpy()
    n = len(data)
    print(f"{args.split} split, {n} items, {args.level} severity; f(s) right on {clean_right.sum()} ({clean_right.mean():.3f})\n")
    print("| corruption | severity | sequential f(x_hat) | f(s) right, f(x_hat) wrong | f(s) wrong, f(x_hat) right | ceiling if all of the first are won |")
    print("|---|---|---|---|---|---|")
    for name, levels in cfg["corruptions"]["severities"].items():
        sev = levels[args.level]
        degraded = corrupt(data.signals, name, sev, CORRUPTION_SEED)
        spec = MethodSpec("sequential", "sequential", picks[name]["per_method"]["sequential"]["settings"])
        seq = run_specs(bundle, data.signals, data.labels, degraded, [spec], 0, cfg["evaluation"]["batch_size"],
                        torch.device("cpu"))["sequential"]["score_classifier"]
        lost, won = int((clean_right & ~seq).sum()), int((~clean_right & seq).sum())
        print(f"| {name} | {sev:g} | {seq.mean():.3f} | {lost} ({lost / n:.1%}) | {won} ({won / n:.1%}) | "
              f"{(seq.sum() + lost) / n:.3f} |")


if __name__ == "__main__":
    main()
