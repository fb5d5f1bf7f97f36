"""Parse-time checks of the `coupled` command's options: every bad value is one line on stderr and exit 2.

Option types (counts, seeds, severities, output paths) reject a bad value while the command line is parsed,
before any config is read or any work starts; `check_args` adds the checks that need several options or the
machine (an accelerator that is not there).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .schema import SEED_MAX

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (`coupled CMD: error: ...; see coupled CMD --help`) and exit 2."""

    def error(self, message: str):
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def _integer(text: str, what: str) -> int:
    try:
        return int(text, 10)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def count(low: int = 1, high: int = 10**9):
    """An integer option in [low, high]."""

    def parse(text: str) -> int:
        what = f"an integer in [{low}, {high}]"
        value = _integer(text, what)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


def seed(text: str) -> int:
    """A sampling seed: an integer in [0, 2**32 - 1]."""
    return count(0, SEED_MAX)(text)


def severity(text: str) -> float:
    """A corruption severity: a finite number in [0, 100] (each corruption checks its own range too)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be a finite number in [0, 100], got {text!r}")
    return value


def _no_file_on_the_way(path: Path) -> None:
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{parent} is an existing file, not a folder; pass a folder path")
            return


def folder(text: str) -> str:
    """An output folder: it may exist (as a folder) or not; no existing file on its path."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a folder path, got an empty string")
    _no_file_on_the_way(Path(text))
    return text


def output_file(text: str) -> str:
    """An output file path: not an existing folder, and its folder is not a file."""
    path = Path(text)
    if not text.strip() or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; pass a file path such as {Path(text) / 'results.json'}")
    _no_file_on_the_way(path.parent)
    return text


def override(text: str) -> tuple:
    """`--set key.path=value`: (dotted key, value parsed as YAML); the config's schema checks both later."""
    from .config import parse_override
    from .errors import CoupledError

    try:
        return parse_override(text)
    except CoupledError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--set ")) from None  # argparse names the option


def accelerator(text: str) -> str:
    if text not in ACCELERATORS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(ACCELERATORS)}, got {text!r}")
    return text


DEVICES = ("auto", "cpu", "cuda", "mps")


def device(text: str) -> str:
    """`--device`: auto, cpu, cuda, cuda:N or mps (check_args checks that the machine has it)."""
    if text not in DEVICES and not (text.startswith("cuda:") and text[5:].isdigit()):
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(DEVICES)} or cuda:N, got {text!r}")
    return text


def _check_device(parser, name: str) -> None:
    import torch

    if name.startswith("cuda"):
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name[5:]) if ":" in name else 0
        if index >= have:
            parser.error(f"argument --device: {name!r} but this machine has {have} CUDA device(s); use cpu or auto")
    elif name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        parser.error("argument --device: 'mps' but this machine has no MPS device; use cpu or auto")


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks that need the machine or several options; a failure is one line and exit 2."""
    if getattr(args, "device", None):
        _check_device(parser, args.device)
    alias = getattr(args, "output_alias", None)  # evaluate's and calibrate's old name of --checkpoint
    if alias:
        if args.checkpoint and args.checkpoint != alias:
            parser.error(f"argument --output: the old name of --checkpoint, which says {args.checkpoint!r}; pass "
                         "--checkpoint alone")
        args.checkpoint = alias
    if getattr(args, "publish", False) and (args.out or args.doc):
        parser.error("argument --publish: it writes the published paths (benchmarks/results/bench.json, "
                     "docs/performance.md); drop --out and --doc, or --publish")
    acc = getattr(args, "accelerator", None)
    if acc in ("gpu", "cuda", "mps"):
        import torch

        if acc == "mps":
            have = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
            count_ = 1 if have else 0
        else:
            count_ = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count_:
            parser.error(f"argument --accelerator: {acc!r} but this machine has none; use cpu or auto")
        if getattr(args, "devices", 1) > count_:
            parser.error(f"argument --devices: {args.devices} but this machine has {count_} {acc} device(s)")


def fail(message: str, code: int = 2) -> int:
    print(f"coupled: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def budget(text: str) -> float:
    """--budget-ms: a positive, finite number of milliseconds per item."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of milliseconds per item, got {text!r}")
    return value
