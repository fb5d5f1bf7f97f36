"""How multimodal are the posteriors? Issue 20's item 3 measure, on the VALIDATION split, for a bundle.

For each corruption at its heavy severity (occlusion and downsampling, issue 20, with occlusion_noise beside
them; the three corruptions the bundle was trained for, for contrast), draw K sequential samples per degraded
digit with the bundle's signal denoiser (the joint net, null logit token, the bundle's own chain: 5 ancestral
steps, eta 1) and classify each with the frozen classifier. Reported per corruption:
  noisy        accuracy of the classifier on the degraded digit
  one_step     accuracy of the one-step estimate (one x0_hat at the prior, close to the posterior mean)
  sample       accuracy of a single sample (averaged over the K samples)
  avg_K        accuracy of the K samples' averaged probabilities (the ensemble method.md section 9 describes)
  disagree     fraction of digits whose K samples are not all classified alike
  pair         probability that two different samples of one digit are classified differently
  classes      mean number of distinct classes among a digit's K samples
  label_in_K   fraction of digits whose label is the class of at least one sample
checkpoints/mnist's signal denoisers were NOT trained for occlusion, occlusion_noise or downsample (its training
drew only pixel noise, Gaussian noise and blur): their samples there are what a denoiser does out of its
training distribution, not draws from the true posterior. checkpoints/mnist_occlusion's were (all but
occlusion_noise).

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/multimodality.py [--items 500] [--k 8]
    # -> docs/results/multimodality_val.json and a markdown table on stdout
    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/multimodality.py --checkpoint checkpoints/mnist_occlusion \
        --trained-for pixel_noise gaussian_noise gaussian_blur occlusion downsample --out docs/results/multimodality_occlusion_val.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from coupled.atomic import atomic_write_json
from coupled.bundle import load_bundle
from coupled.config import load_config
from coupled.domains.image.corruptions import DEFAULT_SEVERITIES, corrupt
from coupled.domains.registry import domain_of
from coupled.engine import item_generators, signal_trajectory
from coupled.evaluation.runner import CORRUPTION_SEED
from coupled.seeds import item_seeds

NEW = ("occlusion", "occlusion_noise", "downsample")  # issue 20; the bundle was not trained for them
COLUMNS = ("noisy", "one_step", "sample", "avg_K", "disagree", "pair", "classes", "label_in_K")


def _pair_disagreement(pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per digit, the probability that two different samples (of the K in `pred` [N, K]) differ in class."""
    k = pred.shape[1]
    counts = torch.nn.functional.one_hot(pred, num_classes).sum(1).double()  # [N, classes]
    return 1 - (counts * (counts - 1)).sum(1) / (k * (k - 1))


@torch.no_grad()
def probe(coupling, d: torch.Tensor, y: torch.Tensor, k: int, steps: int | None, seed: int, batch: int) -> dict:
    f = coupling.classifier
    noisy, one, preds, probs = [], [], [], []
    for a in range(0, len(d), batch):
        db = d[a:a + batch]
        gens = item_generators(item_seeds("sampling", seed, a, len(db)))  # per item: independent of the batch size
        noisy.append(f.raw(db).argmax(-1))
        one.append(f.raw(signal_trajectory(coupling, db, gens, steps=1)).argmax(-1))
        p = torch.stack([f.raw(signal_trajectory(coupling, db, gens, steps=steps)).softmax(-1) for _ in range(k)], 1)
        probs.append(p)
        preds.append(p.argmax(-1))
    noisy, one, pred, p = torch.cat(noisy), torch.cat(one), torch.cat(preds), torch.cat(probs)
    classes = torch.tensor([row.unique().numel() for row in pred])
    return {
        "noisy": (noisy == y).float().mean().item(),
        "one_step": (one == y).float().mean().item(),
        "sample": (pred == y[:, None]).float().mean().item(),
        "avg_K": (p.mean(1).argmax(-1) == y).float().mean().item(),
        "disagree": (classes > 1).float().mean().item(),
        "pair": _pair_disagreement(pred, p.shape[-1]).mean().item(),
        "classes": classes.float().mean().item(),
        "label_in_K": (pred == y[:, None]).any(1).float().mean().item(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/mnist_occlusion.yaml", help="the five corruptions' heavy severities")
    ap.add_argument("--checkpoint", default="checkpoints/mnist", help="the bundle (not trained for issue 20's corruptions)")
    ap.add_argument("--items", type=int, default=500, help="validation digits (a fixed random subset, seed 0; 500: all)")
    ap.add_argument("--k", type=int, default=8, help="samples per digit")
    ap.add_argument("--steps", type=int, default=None, help="signal steps per sample (default: the bundle's chain)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--out", default="docs/results/multimodality_val.json")
    ap.add_argument("--trained-for", nargs="+", default=None, metavar="NAME",
                    help="the corruptions the bundle's denoisers were trained for (default: all but issue 20's)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    cfg = load_config(args.config)
    bundle = load_bundle(args.checkpoint)
    coupling = bundle.prepare("sequential", {})[0]
    val = domain_of(cfg).load_splits(cfg)["val"]
    n = min(args.items, len(val.labels))
    val = val.subset(np.sort(np.random.default_rng(0).permutation(len(val.labels))[:n]))
    s, y = val.signals, torch.as_tensor(val.labels)
    heavy = {name: levels["heavy"] for name, levels in cfg["corruptions"]["severities"].items()}
    heavy.setdefault("occlusion_noise", DEFAULT_SEVERITIES["occlusion_noise"]["heavy"])
    order = [*[c for c in heavy if c not in NEW], *[c for c in NEW if c in heavy]]
    rows = []
    for name in order:
        t0 = time.time()
        d = corrupt(s, name, heavy[name], seed=CORRUPTION_SEED)
        trained = name in args.trained_for if args.trained_for else name not in NEW
        row = {"corruption": name, "severity": heavy[name], "trained_for": trained,
               **{c: round(v, 4) for c, v in probe(coupling, d, y, args.k, args.steps, args.seed, args.batch).items()},
               "seconds": round(time.time() - t0, 1)}
        rows.append(row)
        print(row, flush=True)
    steps = args.steps or bundle.coupling.signal_chain.steps
    atomic_write_json(args.out, {"split": "val", "n_items": n, "k": args.k, "signal_steps": steps, "seed": args.seed,
                                 "checkpoint": args.checkpoint, "corruption_seed": CORRUPTION_SEED, "rows": rows})
    print(f"\n{n} validation digits, K = {args.k} samples of {steps} signal steps each, heavy severity\n")
    print("| corruption (heavy) | trained for | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---:|" * len(COLUMNS))
    for r in rows:
        cells = [f"{r[c]:.2f}" if c == "classes" else f"{r[c]:.3f}" for c in COLUMNS]
        print(f"| {r['corruption']} {r['severity']:g} | {'yes' if r['trained_for'] else 'no'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
