"""Train a joint fine-tuning variant of the default image experiment, for the validation comparison.

It copies the classifier and the pre-trained denoisers of checkpoints/mnist into runs/variants/NAME and
runs only the joint stage with one changed hyper-parameter, so the variant differs in that alone:

    .venv/bin/python benchmarks/train_variant.py --name lambda_0.5 --set joint.lambda=0.5
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import yaml

from coupled.config import load_config
from coupled.training.run import train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/mnist.yaml")
    p.add_argument("--name", required=True)
    p.add_argument("--set", action="append", default=[], help="section.key=value (YAML value)")
    args = p.parse_args()
    cfg = load_config(args.config)
    src, out = Path(cfg["output"]), Path("runs/variants") / args.name
    out.mkdir(parents=True, exist_ok=True)
    for name in ("classifier", "signal_pretrained", "logits_pretrained"):
        for ext in (".safetensors", ".json"):
            shutil.copy(src / f"{name}{ext}", out / f"{name}{ext}")
    for item in args.set:
        key, value = item.split("=", 1)
        section, field = key.split(".")
        cfg[section][field] = yaml.safe_load(value)
    cfg["output"] = str(out)
    print(train(cfg, ["joint"], progress=False))


if __name__ == "__main__":
    main()
