"""Class hypotheses tested by synthesis: a probe beyond the paper, on the VALIDATION split.

The logit-conditioning diagnostic shows the signal net now follows its logit input (oracle logits of the clean
digit lift a trajectory by 23 to 30 points), but the logits a method can feed it know no more than the
classifier. This probe uses the channel the other way round: take the one-step estimate's top-k classes, run
one signal step conditioned on each class's prototype logits (the mean of the classifier's logits over the
training digits of that class), and keep the class whose conditioned estimate scores best, by
  clf    the classifier's log-probability of that class on its own conditioned estimate, or
  resid  the estimate's mean squared distance to the degraded input (smaller is better), or
  comb   both, each standardised.
Cost: 1 + k signal calls (each guided call runs 2 passes). Heavy severity, 500 validation digits, seed 0.

    .venv/bin/python benchmarks/class_hypotheses.py   # -> docs/results/class_hypotheses_val.json (~2 min)
"""

from __future__ import annotations

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


def _standard(score: torch.Tensor) -> torch.Tensor:
    return (score - score.mean(1, keepdim=True)) / (score.std() + 1e-8)


@torch.no_grad()
def main() -> None:
    cfg = load_config("configs/mnist.yaml")
    bundle = load_bundle(cfg["output"])
    splits = domain_of(cfg).load_splits(cfg)
    val = splits["val"].subset(np.sort(np.random.default_rng(0).permutation(len(splits["val"]))[:500]))
    s, y = val.signals, torch.as_tensor(val.labels)
    f = bundle.coupling.classifier
    train = splits["train"]
    logits = torch.cat([f(train.signals[i:i + 500]) for i in range(0, len(train.signals), 500)])
    labels = torch.as_tensor(train.labels)
    prototype = torch.stack([logits[labels == c].mean(0) for c in range(logits.shape[1])])
    rows = []
    for guidance in (1.0, 3.0):
        coupling = bundle.prepare("parallel", {"signal_guidance": guidance})[0]
        for name, levels in cfg["corruptions"]["severities"].items():
            d = corrupt(s, name, levels["heavy"], seed=CORRUPTION_SEED)
            step = lambda cond: signal_trajectory(coupling, d, item_generators(item_seeds("sampling", 0, 0, len(d))),  # noqa: E731
                                                  logits=cond, steps=1)
            p0 = torch.softmax(f.raw(step(None)), -1)
            top = p0.topk(3, -1).indices
            row = {"guidance": guidance, "corruption": name, "severity": levels["heavy"],
                   "one_step": (p0.argmax(-1) == y).float().mean().item(),
                   "label_in_top2": (top[:, :2] == y[:, None]).any(1).float().mean().item(),
                   "label_in_top3": (top == y[:, None]).any(1).float().mean().item()}
            resid, clf = [], []
            for j in range(3):
                c = top[:, j]
                x_c = step(prototype[c])
                resid.append(-((x_c - d) ** 2).flatten(1).mean(1))
                clf.append(torch.log_softmax(f.raw(x_c), -1).gather(1, c[:, None])[:, 0])
            for k in (2, 3):
                r, c = torch.stack(resid[:k], 1), torch.stack(clf[:k], 1)
                for score_name, score in (("resid", r), ("clf", c), ("comb", _standard(r) + _standard(c))):
                    pick = top[torch.arange(len(y)), score.argmax(1)]
                    row[f"{score_name}_k{k}"] = (pick == y).float().mean().item()
                row[f"passes_k{k}"] = 1 + k * (2 if guidance != 1.0 else 1)
            rows.append({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
            print(rows[-1], flush=True)
    out = Path("docs/results/class_hypotheses_val.json")
    out.write_text(json.dumps({"split": "val", "n_items": len(y), "seed": 0, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
