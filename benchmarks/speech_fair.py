"""The fair comparison for speech (issue 16; method.md section 5), through the generic path, one process per
degradation so that the two cores of the machine both work:

    # 1. validation: `coupled tune` at the heavy level of each degradation (100 validation digit strings)
    python benchmarks/speech_fair.py val      # -> docs/results/speech_val.json (picks, every candidate's row)
    # 2. test: the cost-matched headline's picks (with noisy and tuned sequential) on 200 test digit strings with
    #    3 sampling seeds; every other method's validation row is in the picks file
    python benchmarks/speech_fair.py test     # -> docs/results/speech.json, docs/results/speech/<degradation>/

Each phase runs one `coupled` process per degradation (white noise, babble, reverberation), each on one thread,
and merges their files. Every candidate of a degradation is timed in its own process, interleaved batch by batch,
so their seconds compare with each other; processes sharing the machine make every figure slower alike.
The commands each process runs are printed, and stand alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

DEGRADATIONS = ("white_noise", "babble_noise", "reverb")
VAL = Path("docs/results/speech_val.json")
TEST = Path("docs/results/speech.json")
OUT = Path("docs/results/speech")


def _run_all(commands: dict, log_dir: Path) -> None:
    """Run {name: argv} at once, one thread each; fail with the log's tail if one fails."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = {}
    for name, argv in commands.items():
        print("$", " ".join(argv), flush=True)
        procs[name] = (subprocess.Popen(argv, stdout=open(log_dir / f"{name}.log", "w"), stderr=subprocess.STDOUT,
                                        env=env), log_dir / f"{name}.log")
    started = time.time()
    for name, (proc, log) in procs.items():
        if proc.wait() != 0:
            tail = "\n".join(log.read_text().splitlines()[-15:])
            raise SystemExit(f"speech_fair: {name} failed (log {log}):\n{tail}")
    print(f"all {len(procs)} processes done in {time.time() - started:.0f} s", flush=True)


def _sets(args, quote: bool = False) -> list[str]:
    """The `--set KEY=VALUE` overrides passed through to every `coupled` process."""
    return [a for kv in args.set for a in ("--set", f"'{kv}'" if quote else kv)]


def _coupled() -> list[str]:
    return [sys.executable, "-m", "coupled.cli"]


def run_val(args) -> None:
    parts = {d: Path(args.work) / f"val_{d}.json" for d in DEGRADATIONS}
    _run_all({d: [*_coupled(), "tune", args.config, "--corruptions", d, "--max-items", str(args.val_items),
                  "--out", str(p), "--quiet", *_sets(args)] for d, p in parts.items()}, Path(args.work) / "logs")
    vals = [json.loads(p.read_text()) for p in parts.values()]
    merged = {k: vals[0][k] for k in ("domain", "split", "n_items", "seeds", "selection_rule")}
    merged["severities"] = {k: v for val in vals for k, v in val["severities"].items()}
    merged["runs"] = [{**r, "corruption": c} for c, val in zip(parts, vals) for r in val["runs"]]
    merged["candidates"] = [row for val in vals for row in val["candidates"]]
    merged["picks"] = {k: v for val in vals for k, v in val["picks"].items()}
    merged["command"] = " ".join(["python benchmarks/speech_fair.py val", *_sets(args, quote=True),
                                  *([f"--val-out {args.val_out}"] if args.val_out != str(VAL) else [])])
    from coupled.evaluation.fair import dump

    dump(merged, Path(args.val_out))
    print(f"wrote {args.val_out}")


def run_test(args) -> None:
    outs = {d: OUT / d for d in DEGRADATIONS}
    _run_all({d: [*_coupled(), "evaluate", args.config, "--picks", args.val_out, *_sets(args), "--corruptions", d, "--levels", "heavy",
                  "--max-items", str(args.test_items), "--out", str(o), "--quiet",
                  *([] if args.every_method else ["--headline-only"])] for d, o in outs.items()},
             Path(args.work) / "logs")
    parts = [json.loads((o / "results.json").read_text()) for o in outs.values()]
    merged = {k: v for k, v in parts[0].items() if k not in ("rows", "headline", "settings")}
    merged["rows"] = [r for p in parts for r in p["rows"]]
    merged["headline"] = [h for p in parts for h in p.get("headline", [])]
    merged["settings"] = {d: p.get("settings") for d, p in zip(outs, parts)}
    merged["command"] = "python benchmarks/speech_fair.py test"
    from coupled.evaluation.report import write_results

    write_results(merged, TEST)
    print(f"wrote {TEST} and {OUT}/<degradation>/ (report.md, plots)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("phase", choices=["val", "test"])
    p.add_argument("--config", default="configs/speech.yaml")
    p.add_argument("--val-items", type=int, default=100, help="validation digit strings (default 100)")
    p.add_argument("--test-items", type=int, default=200, help="test digit strings (default 200)")
    p.add_argument("--work", default="runs/speech_fair", help="per-process files and logs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override passed to every coupled process, e.g. 'sampling.signal={steps: 5, sampler: pc}'")
    p.add_argument("--val-out", default=str(VAL), help=f"the validation picks file (default {VAL})")
    p.add_argument("--every-method", action="store_true",
                   help="test: every method's pick too, not only the headline's (about 3x the time)")
    args = p.parse_args(argv)
    {"val": run_val, "test": run_test}[args.phase](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
