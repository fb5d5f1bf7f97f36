"""Tune the sampling knobs of the default image experiment on the VALIDATION split (never on test).

Each variant changes one knob of configs/mnist.yaml's `sampling` section (or the checkpoint: joint
fine-tuning off = the pre-trained denoisers), runs the methods at the heavy severity of every corruption
on the validation split with one sampling seed, and records accuracy per method and readout. Writes
docs/results/tuning_val.json and prints a table; docs/results.md quotes it.

    .venv/bin/python benchmarks/tune_image.py [--max-items 500] [--variants NAME ...]
    .venv/bin/python benchmarks/tune_image.py --table      # the markdown table docs/results.md quotes
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

from coupled.config import load_config
from coupled.evaluation.api import evaluate_config


def pretrained_folder(ckpt: Path) -> Path:
    """A checkpoint folder whose signal/logit denoisers are the pre-trained ones (joint fine-tuning off)."""
    folder = Path("runs/tune/pretrained_bundle")
    folder.mkdir(parents=True, exist_ok=True)
    for src, dst in (("classifier", "classifier"), ("signal_pretrained", "signal"), ("logits_pretrained", "logits")):
        for ext in (".safetensors", ".json"):
            target = folder / f"{dst}{ext}"
            if target.exists() or target.is_symlink():
                target.unlink()
            os.symlink((ckpt / f"{src}{ext}").resolve(), target)
    return folder


def variants(cfg: dict) -> dict:
    """name -> (sampling overrides, checkpoint or None)."""
    out = {"default": ({}, None)}
    for sf in (0.0, 0.25, 0.75, 1.0):
        out[f"switch_{sf}"] = ({"methods": {"parallel": {"switch_fraction": sf}}}, None)
    for n in (3, 10):
        out[f"steps_{n}"] = ({"signal": {"steps": n}, "logits": {"steps": n}}, None)
    out["rounds_1"] = ({"methods": {"alternating": {"rounds": 1}}}, None)
    out["rounds_3"] = ({"methods": {"alternating": {"rounds": 3}}}, None)
    out["refresh_every_1"] = ({"methods": {"nested": {"refresh_every": 1, "refresh_window": [0.0, 1.0]}}}, None)
    out["corrector_0"] = ({"logits": {"corrector_steps": 0}}, None)
    out["joint_off"] = ({}, "pretrained")
    out["signal_eta_1"] = ({"signal": {"eta": 1.0}}, None)
    out["signal_logits_off"] = ({"signal_logits": False}, None)
    # the two knobs that moved validation accuracy on their own, together
    out["eta_1+corrector_0"] = ({"signal": {"eta": 1.0}, "logits": {"corrector_steps": 0}}, None)
    out["eta_1+corrector_0+signal_logits_off"] = ({**out["eta_1+corrector_0"][0], "signal_logits": False}, None)
    # classifier-free guidance on the signal net's logit input (1 = plain conditioning); these rows and the
    # joint-stage variants below were run on the final bundle, the rows above on the first (docs/results.md)
    for w in (1.0, 2.0, 3.0, 4.0, 5.0):
        out[f"guidance_{w:g}"] = ({"signal_guidance": w}, None)
    # Parallel alone without guidance (a method's own weight overrides the global one)
    out["guidance_3+parallel_1"] = ({"signal_guidance": 3.0, "methods": {"parallel": {"signal_guidance": 1.0}}}, None)
    # joint-stage variants trained by benchmarks/train_variant.py (one changed hyper-parameter each)
    for folder in sorted(Path("runs/variants").glob("*")):
        if (folder / "pipeline.json").is_file():
            out[f"trained_{folder.name}"] = ({}, str(folder))
            out[f"trained_{folder.name}+eta_1+corrector_0"] = (out["eta_1+corrector_0"][0], str(folder))
    return out


def merged(sampling: dict, overrides: dict) -> dict:
    s = copy.deepcopy(sampling)
    for key, value in overrides.items():
        if key == "methods":
            for m, opts in value.items():
                s["methods"][m] = {**s["methods"].get(m, {}), **opts}
        else:
            s[key] = {**s[key], **value} if isinstance(value, dict) else value
    return s


SHORT = {"parallel": "par", "alternating": "alt", "nested": "nest", "logits": "y", "classifier": "f"}


def markdown_table(table: dict) -> str:
    """Validation accuracy per variant: sequential and each coupled method/readout, per corruption."""
    corruptions = sorted({k.split("/")[0] for v in table.values() for k in v["accuracy"]},
                         key=["pixel_noise", "gaussian_noise", "gaussian_blur"].index)
    cols = [(m, r) for m in ("parallel", "alternating", "nested") for r in ("logits", "classifier")]
    head = "| variant | corruption | noisy | sequential | " + " | ".join(f"{SHORT[m]} {SHORT[r]}" for m, r in cols) + " |"
    lines = [head, "|" + "---|" * (4 + len(cols))]
    for name, v in table.items():
        a = v["accuracy"]
        for c in corruptions:
            seq = a[f"{c}/sequential/classifier"]
            cells = []
            for m, r in cols:
                x = a.get(f"{c}/{m}/{r}")
                cells.append("" if x is None else (f"**{x:.3f}**" if x > seq else f"{x:.3f}"))
            lines.append(f"| {name} | {c} | {a[f'{c}/noisy/classifier']:.3f} | {seq:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/mnist.yaml")
    p.add_argument("--max-items", type=int, default=500)
    p.add_argument("--variants", nargs="+")
    p.add_argument("--out", default="docs/results/tuning_val.json")
    p.add_argument("--table", action="store_true", help="only print the markdown table of --out")
    args = p.parse_args()
    if args.table:
        print(markdown_table(json.loads(Path(args.out).read_text())))
        return
    cfg = load_config(args.config)
    ckpt = Path(cfg["output"])
    table = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    for name, (over, checkpoint) in variants(cfg).items():
        if args.variants and name not in args.variants:
            continue
        c = copy.deepcopy(cfg)
        c["sampling"] = merged(cfg["sampling"], over)
        started = time.time()
        res = evaluate_config(c, checkpoint=pretrained_folder(ckpt) if checkpoint == "pretrained" else Path(checkpoint or ckpt),
                              split="val", out=f"runs/tune/{name}", max_items=args.max_items, levels=["heavy"],
                              seeds_for_level=lambda level: [0], progress=False)
        acc = {f"{r['corruption']}/{r['method']}/{r['readout']}": round(r["value"], 4) for r in res["rows"]}
        table[name] = {"overrides": over, "checkpoint": checkpoint or str(ckpt), "accuracy": acc,
                       "seconds": round(time.time() - started, 1)}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(table, indent=1) + "\n")
        print(name, json.dumps({k: v for k, v in acc.items() if "classifier" in k or "logits_only" in k}))


if __name__ == "__main__":
    main()
