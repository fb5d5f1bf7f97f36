"""Train DACL, the ECG domain's retrained reference (issue 19 item 6), into the ECG bundle.

DACL (Zewail, arXiv 2509.20048; `coupled.domains.ecg.dacl`) is trained on the clean traces of the config's training
patients (the split the frozen classifier was trained on), and written as `<out>/dacl.safetensors` + `dacl.json`
(the classifier format, `arch: ecg_dacl`), recorded in the folder's manifest. `coupled evaluate` then runs it as the
reference method `dacl` on the same degraded test sets as every other method:

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/ecg_dacl.py --config configs/ecg.yaml --out checkpoints/ecg
    PYTHONPATH=src OMP_NUM_THREADS=1 coupled evaluate configs/ecg.yaml --methods noisy dacl --levels heavy \
        --max-items 600 --out docs/results/ecg_dacl
"""

from __future__ import annotations

import argparse
import time

import torch

from coupled.checkpoint import save_weights
from coupled.config import load_config
from coupled.domains.ecg.dacl import DACL_TRAINING, degraded_copies, train_dacl
from coupled.domains.registry import domain_of


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/ecg.yaml")
    p.add_argument("--out", default=None, help="the bundle folder (default: the config's output)")
    p.add_argument("--seed", type=int, default=0)
    for k, v in DACL_TRAINING.items():
        p.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=v)
    p.add_argument("--degraded-copies", type=int, default=0,
                   help="the variant dacl_degraded (not the paper's recipe): add this many degraded copies of every "
                        "training trace (a random degradation of corruptions.train_severity each)")
    p.add_argument("--name", default="dacl", help="the network file: dacl, or dacl_degraded for the variant")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_config(a.config)
    domain = domain_of(cfg)
    started = time.time()
    train = domain.load_splits(cfg)["train"]
    signals, labels = train.signals, train.labels
    data = f"{train.name} ({len(train)} clean traces of the training patients)"
    if a.degraded_copies:
        ranges = cfg["corruptions"]["train_severity"]
        signals = torch.cat([signals, degraded_copies(signals, ranges, a.degraded_copies, a.seed)])
        labels = labels.repeat(1 + a.degraded_copies)
        data += f" + {a.degraded_copies} degraded copies of each ({', '.join(f'{k} {v}' for k, v in ranges.items())})"
    net, log = train_dacl(signals, labels, seed=a.seed, progress=not a.quiet,
                          training={k: getattr(a, k) for k in DACL_TRAINING})
    meta = {"arch": "ecg_dacl", "domain": domain.name, "kind": "classifier", "stage": a.name,
            "net": net.cfg.to_dict(), "num_classes": net.cfg.num_classes, "logit_scale": 0.8, "data": data,
            "reference": "retrained reference: breaks the frozen-classifier premise", **log,
            "wall_seconds": round(time.time() - started, 1)}
    out = a.out or cfg["output"]
    save_weights(out, a.name, net.state_dict(), meta)
    print(f"wrote {out}/{a.name}.safetensors in {meta['wall_seconds']:.0f} s "
          f"(training {log['train_seconds']:.0f} s; contrastive loss {log['contrastive_loss']:.3f}, head loss {log['head_loss']:.3f})")


if __name__ == "__main__":
    main()
