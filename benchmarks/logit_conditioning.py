"""How much can the signal denoiser's logit input help? A diagnostic on the VALIDATION split.

One signal trajectory per item at the heavy severity of each corruption, conditioned on:
  null        the null token (= sequential),
  oracle      norm(f(s)) of the CLEAN digit (an upper bound no method can reach: it peeks at s),
  self        norm(f(x_hat)) of the sequential estimate (one round of Alternating without the logit chain),
  wrong       norm(f(s')) of a clean digit of ANOTHER class (does the net follow the logits blindly?).
Accuracy is argmax f(x_hat) against the label. If `oracle` is far above `null`, the conditioning channel
works and the logit estimates are what limit coupling; if it is not, the signal net ignores its logits.

    .venv/bin/python benchmarks/logit_conditioning.py [--checkpoint checkpoints/mnist] [--label NAME] [--max-items 500]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from coupled.config import load_config
from coupled.domains.image.corruptions import corrupt
from coupled.bundle import load_bundle
from coupled.engine import item_generators, signal_trajectory
from coupled.evaluation.runner import CORRUPTION_SEED
from coupled.seeds import item_seeds
from coupled.domains.registry import domain_of


def trajectory(bundle, d, logits, seed):
    gens = item_generators(item_seeds("sampling", seed, 0, len(d)))
    return signal_trajectory(bundle.coupling, d, gens, logits=logits)


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/mnist.yaml")
    p.add_argument("--checkpoint")
    p.add_argument("--max-items", type=int, default=500)
    p.add_argument("--out", default="docs/results/logit_conditioning_val.json")
    p.add_argument("--label", default="final bundle", help="the entry of --out this run writes")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    cfg = load_config(args.config)
    bundle = load_bundle(args.checkpoint or cfg["output"], sampling=cfg["sampling"])
    data = domain_of(cfg).load_splits(cfg)["val"]
    idx = np.sort(np.random.default_rng(0).permutation(len(data))[: args.max_items])
    data = data.subset(idx)
    s, y = data.signals, torch.as_tensor(data.labels)
    f = bundle.coupling.classifier
    other = torch.as_tensor(np.random.default_rng(1).permutation(len(s)))
    other = torch.where(y[other] == y, torch.roll(other, 1), other)  # best effort: mostly another class
    table = {}
    for name, levels in cfg["corruptions"]["severities"].items():
        d = corrupt(s, name, levels["heavy"], seed=CORRUPTION_SEED)
        x_seq = trajectory(bundle, d, None, 0)
        conds = {"null": None, "oracle": f(s), "self": f(x_seq), "wrong": f(s[other])}
        preds = {c: f(x_seq if lg is None else trajectory(bundle, d, lg, 0)).argmax(-1) for c, lg in conds.items()}
        row = {c: round(float((pred == y).float().mean()), 4) for c, pred in preds.items()}
        row["wrong_follows"] = round(float((preds["wrong"] == y[other]).float().mean()), 4)
        table[name] = row
        print(name, row, flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(out.read_text()) if out.is_file() else {}
    runs[args.label] = {"checkpoint": str(args.checkpoint or cfg["output"]), "signal_sampler": cfg["sampling"]["signal"],
                        "signal_guidance": cfg["sampling"].get("signal_guidance", 1.0),
                        "n_items": len(s), "accuracy": table}
    out.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
