"""A tiny experiment config: real MNIST digits, very small networks, a handful of steps.

The bundle trained from it (fixture `trained`) is in tests/conftest.py, so every test folder shares one.
"""

import os
import subprocess
import sys
from pathlib import Path

import yaml

TINY = {
    "name": "tiny",
    "seed": 0,
    "data": {"kind": "mnist5k", "seed": 0},
    "classifier": {"net": {"width": 8}, "steps": 20, "batch_size": 32},
    "signal": {"net": {"channels": [8, 16], "mid_blocks": 1, "time_dim": 32}, "steps": 6, "batch_size": 8},
    "logits": {"net": {"hidden": 32, "feature_dim": 8, "encoder_channels": [8], "time_dim": 16}, "steps": 6, "batch_size": 8},
    "joint": {"steps": 6, "batch_size": 8},
    "card": {"net": {"hidden": 32, "feature_dim": 8, "encoder_channels": [8], "time_dim": 16}, "steps": 6, "batch_size": 8},
    "finetuned": {"steps": 6, "batch_size": 16},
    "sequential": {"steps": 6, "batch_size": 8},
    "predictive": {"steps": 6, "batch_size": 8},
    "train": {"checkpoint_every": 3, "log_every": 1},
    "sampling": {"signal": {"steps": 2, "sampler": "ddim", "eta": 0.0},
                 "logits": {"steps": 2, "sampler": "pc", "corrector_steps": 1, "snr": 0.5}},
    "evaluation": {"batch_size": 16, "bootstrap": 200, "seeds": [0, 1], "heavy_seeds": 2},
    "demo": {"items": 12},
}


def write_config(folder: Path, **overrides) -> Path:
    cfg = {**TINY, "output": str(folder / "ckpt"), **overrides}
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_cli(*args, cwd=None, timeout=300, check=True):
    """Run the real `coupled` command in a subprocess; returns the CompletedProcess."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "coupled.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"coupled {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc
