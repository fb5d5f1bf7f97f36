"""Shared helpers of the reliability tests: the real `coupled` command, in-process and in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.image.conftest import TINY

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "checkpoints" / "mnist"


def tiny_config(folder: Path, **overrides) -> Path:
    """A tiny config whose classifier stage trains 8 steps with a checkpoint every 4 (a few seconds)."""
    from coupled.defaults import DEFAULTS

    base = {k: v for k, v in TINY.items() if k in DEFAULTS}  # the image sections this version knows
    cfg = {**base, "output": str(folder / "ckpt"), "classifier": {**TINY["classifier"], "steps": 8},
           "train": {"checkpoint_every": 4, "log_every": 1}, **overrides}
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(*args, env=None, timeout=300):
    """The real `coupled` command in a subprocess; returns the CompletedProcess (never raises on failure)."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([sys.executable, "-m", "coupled.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=ROOT)


def one_line_error(returncode: int, stderr: str) -> str:
    """The single `coupled: error:` line of a failed command (exit 2, nothing else on stderr, no traceback)."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert returncode == 2, f"exit {returncode}, stderr:\n{stderr[-2000:]}"
    assert "Traceback" not in stderr and len(lines) == 1, stderr[-2000:]
    assert lines[0].startswith("coupled"), lines[0]
    return lines[0]


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `coupled.cli.main(argv)` in this process; returns (exit code, stdout, stderr)."""
    from coupled.cli import main

    monkeypatch.chdir(ROOT)

    def call(*argv):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return call
