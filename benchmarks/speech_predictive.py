"""The predictive enhancer against the one-step estimate on speech validation (issue 16 items 3-4).

    python benchmarks/speech_predictive.py --checkpoint runs/speech_pred --max-items 100 --out runs/speech_pred_val.json

Runs noisy, one_step (the joint signal net's one x0_hat at the prior) and predictive (signal_predictive, one
noiseless call on d alone), each with observation adding at a = 0 and 0.5, on the validation strings `coupled tune`
uses (the same fixed subset, corruption seed and heavy levels) in one interleaved run, so their seconds compare.
One sampling seed (predictive and noisy draw none). Prints a table of digit WER and seconds per utterance and writes
the candidate rows (`coupled.evaluation.fair.candidate_table`) as JSON.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from coupled.atomic import atomic_write_json
from coupled.bundle import default_device, load_bundle
from coupled.config import load_config
from coupled.domains.registry import domain_of
from coupled.evaluation.fair import candidate_table
from coupled.evaluation.runner import CORRUPTION_SEED, MethodSpec, evaluate
from coupled.threads import use_threads

SPECS = {
    "noisy": MethodSpec("noisy", "noisy", {}),
    "one_step": MethodSpec("one_step", "one_step", {}),
    "one_step[observation_weight=0.5]": MethodSpec("one_step[observation_weight=0.5]", "one_step",
                                                   {"observation_weight": 0.5}),
    "predictive": MethodSpec("predictive", "predictive", {}),
    "predictive[observation_weight=0.5]": MethodSpec("predictive[observation_weight=0.5]", "predictive",
                                                     {"observation_weight": 0.5}),
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/speech.yaml")
    p.add_argument("--checkpoint", default="runs/speech_pred", help="a speech bundle holding signal_predictive")
    p.add_argument("--max-items", type=int, default=100)
    p.add_argument("--corruptions", nargs="+", default=["babble_noise", "white_noise", "reverb"])
    p.add_argument("--specs", nargs="+", default=list(SPECS), choices=list(SPECS))
    p.add_argument("--out", default="runs/speech_pred_val.json")
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    use_threads(1)
    domain = domain_of(cfg)
    device = default_device(cfg["device"])
    bundle = load_bundle(args.checkpoint, sampling=cfg["sampling"], domain=domain.name).to(device)
    data = domain.load_splits(cfg)["val"]
    if args.max_items < len(data):  # the fixed subset `coupled tune --max-items` takes
        data = data.subset(np.sort(np.random.default_rng(0).permutation(len(data))[: args.max_items]))
    sev = {k: {"heavy": v["heavy"]} for k, v in domain.conditions(cfg, "val").items()
           if k in args.corruptions and "heavy" in v}
    started = time.time()
    with torch.no_grad():
        records, _ = evaluate(bundle, data, sev, specs=[SPECS[s] for s in args.specs], seeds_for_level=lambda lv: [0],
                              batch_size=cfg["evaluation"]["batch_size"], device=device,
                              corruption_seed=cfg["evaluation"].get("corruption_seed", CORRUPTION_SEED))
    table = candidate_table(records)
    atomic_write_json(args.out, {"split": "val", "n_items": len(data), "checkpoint": args.checkpoint,
                                 "eval_seconds": round(time.time() - started, 1), "candidates": table})
    print(f"| corruption | method | digit WER | s/utterance |\n|---|---|---|---|")
    for r in table:
        print(f"| {r['corruption']} | {r['label']} | {r['value']:.4f} | {r['seconds_per_item']:.3f} |")
    print(f"wrote {args.out} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
