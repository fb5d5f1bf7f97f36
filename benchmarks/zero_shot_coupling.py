"""Coupling on top of a zero-shot chain, under the fair protocol, on corruptions the bundle never trained for
(issue 18, item 3: "a corruption the bundle was never trained on, handled zero-shot end to end, with coupling on
top"; issue 20's question, where the posterior mean fails). docs/engine.md measured Parallel + PiGDM a little
above sequential + PiGDM with nothing tuned; here both are searched on the same validation digits:

- sequential+pigdm: PiGDM around checkpoints/mnist_prior as the signal chain, signal steps 10 and 20, constant
  weight 1 and 2;
- parallel+pigdm: the same chain inside Parallel (5 logit steps of checkpoints/mnist's logit net, switch_fraction
  0.5), the same steps and weights, either readout (the classifier on x_hat, or the logit chain's).

The corruptions are configs/mnist_occlusion.yaml's occlusion (13 and 21 px boxes) and downsample (factors 4 and
7), which checkpoints/mnist never saw. Each family's pick is its best validation accuracy per condition (ties: the
cheaper); the picks then run on test digits with 3 sampling seeds, with a paired bootstrap of parallel's pick
against sequential's. Costs are measured seconds in the same interleaved run: Parallel adds a small logit net and
classifier calls per step to PiGDM's backpropagation through the prior, so the two cost nearly the same.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/zero_shot_coupling.py val    # the search
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/zero_shot_coupling.py test   # the picks on test
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/zero_shot_coupling.py table

Output: docs/results/zero_shot/coupling_tuned.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from zero_shot_vs_trained import PRIOR, _split, save_test, test_cell, val_test_main  # noqa: E402

from coupled.atomic import atomic_write_json  # noqa: E402
from coupled.bundle import load_bundle  # noqa: E402
from coupled.evaluation.runner import MethodSpec, evaluate  # noqa: E402

BUNDLE = Path("checkpoints/mnist")
OUT = Path("docs/results/zero_shot")
CONDITIONS = {"occlusion": {"light": 13, "heavy": 21}, "downsample": {"light": 4.0, "heavy": 7.0}}
STEPS, WEIGHTS = (10, 20), (1.0, 2.0)
READOUTS = {"sequential": ("classifier",), "parallel": ("classifier", "logits")}


def candidates() -> list[MethodSpec]:
    out = []
    for method in ("sequential", "parallel"):
        extra = {"logit_steps": 5, "switch_fraction": 0.5} if method == "parallel" else {}
        out += [MethodSpec(f"{method}/{s}/{w:g}", method,
                           {"signal_steps": s, **extra, "zero_shot": {"sampler": "pigdm", "prior": PRIOR, "weight": w}})
                for s in STEPS for w in WEIGHTS]
    return out


def _run(specs, data, seeds):
    recs, _ = evaluate(load_bundle(BUNDLE), data, CONDITIONS, specs=specs, seeds_for_level=lambda level: seeds,
                       progress=True, n_examples=0)
    cells = {}
    for c, levels in CONDITIONS.items():
        for level in levels:
            for s in specs:
                rs = [r for r in recs if r["corruption"] == c and r["level"] == level and r["method"] == s.label]
                for readout in READOUTS[s.method]:
                    cells[f"{c}/{level}/{s.label}/{readout}"] = {
                        "scores": np.stack([r[f"score_{readout}"] for r in rs]).astype(float),  # [seeds, items]
                        "seconds_per_item": float(np.mean([r["seconds_per_item"] for r in rs])), "calls": rs[0]["calls"]}
    return cells


def cmd_val(a):
    started = time.time()
    cells = _run(candidates(), _split("val", a.items), [0])
    out = {"command": "PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/zero_shot_coupling.py val", "split": "val",
           "items": a.items, "seeds": [0], "conditions": CONDITIONS, "bundle": str(BUNDLE), "prior": PRIOR,
           "candidates": {k: {"accuracy": float(v["scores"].mean()), "seconds_per_item": v["seconds_per_item"],
                              "calls": v["calls"]} for k, v in cells.items()},
           "seconds": round(time.time() - started, 1)}
    picks = {}
    for c, levels in CONDITIONS.items():
        for level in levels:
            for method in ("sequential", "parallel"):
                mine = {k.split("/", 2)[2]: v for k, v in out["candidates"].items() if k.startswith(f"{c}/{level}/{method}/")}
                picks[f"{c}/{level}/{method}"] = max(
                    mine, key=lambda k: (round(mine[k]["accuracy"], 6), -mine[k]["seconds_per_item"]))
    out["picks"] = picks
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT / "coupling_tuned.json", out)
    print(json.dumps(picks, indent=1))


def cmd_test(a):
    out = json.loads((OUT / "coupling_tuned.json").read_text())
    started = time.time()
    specs = {s.label: s for s in candidates()}
    wanted = sorted({p.rsplit("/", 1)[0] for p in out["picks"].values()})
    cells = _run([specs[w] for w in wanted], _split("test", a.items), a.seeds)
    test = {}
    for c, levels in CONDITIONS.items():
        for level in levels:
            seq = cells[f"{c}/{level}/{out['picks'][f'{c}/{level}/sequential']}"]
            for method in ("sequential", "parallel"):
                pick = out["picks"][f"{c}/{level}/{method}"]
                v = cells[f"{c}/{level}/{pick}"]
                test[f"{c}/{level}/{method}"] = test_cell(pick, v, seq, "sequential")
    save_test(OUT / "coupling_tuned.json", out, test, a, started)
    cmd_table(a)


def cmd_table(a):
    out = json.loads((OUT / "coupling_tuned.json").read_text())
    print(f"Validation ({out['items']} digits, seed 0, {out['seconds']} s): accuracy / seconds per item")
    print("| condition | candidate (method/steps/weight/readout) | accuracy | s/item |")
    print("|---|---|---:|---:|")
    picked = set(out["picks"].values())
    for k, v in out["candidates"].items():
        c, level, label = k.split("/", 2)
        mark = "**" if label in picked and out["picks"][f"{c}/{level}/{label.split('/')[0]}"] == label else ""
        print(f"| {c} {level} | {mark}{label}{mark} | {v['accuracy']:.3f} | {v['seconds_per_item']:.4f} |")
    if "test" not in out:
        return
    t = out["test"]
    print(f"\nTest ({t['items']} digits, seeds {t['seeds']}, {t['seconds']} s): each family's validation pick")
    print("| condition | family | pick | accuracy [95%] | minus sequential's pick [95%] | s/item |")
    print("|---|---|---|---|---|---:|")
    for k, v in t["cells"].items():
        c, level, method = k.split("/")
        lo, hi = v["ci95"]
        dlo, dhi = v["minus_sequential_ci95"]
        print(f"| {c} {CONDITIONS[c][level]} ({level}) | {method}+pigdm | {v['pick']} | {v['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] | "
              f"{v['minus_sequential']:+.3f} [{dlo:+.3f}, {dhi:+.3f}] | {v['seconds_per_item']:.4f} |")


if __name__ == "__main__":
    val_test_main(__doc__, cmd_val, cmd_test, cmd_table)
