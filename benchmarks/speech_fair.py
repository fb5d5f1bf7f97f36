"""The fair comparison for speech (issue 16; method.md section 5), through the generic path, one process per
degradation so that the two cores of the machine both work:

    # 1. validation: `coupled tune` at the heavy level of each degradation (100 validation digit strings)
    python benchmarks/speech_fair.py val      # -> docs/results/speech_val.json (picks, every candidate's row)
    # 2. test: the cost-matched headline's picks (with noisy and tuned sequential) on 200 test digit strings with
    #    3 sampling seeds; every other method's validation row is in the picks file
    python benchmarks/speech_fair.py test     # -> docs/results/speech.json, docs/results/speech/<degradation>/
    # 3. (optional) the same picks on the test speakers' keywords (a second sampling run, accuracy)
    python benchmarks/speech_fair.py test --task keywords   # -> docs/results/speech_keywords.json
    # 4. the tables docs/results.md quotes: every test row with WER, SI-SDR, ESTOI and string accuracy (the same
    #    decoded strings scored by exact match, no second run), then keyword accuracy when step 3 ran
    python benchmarks/speech_fair.py tables

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
# the keyword task (336 test keywords): `test --task keywords` writes its rows here, beside the digit strings'
KEYWORDS = Path("docs/results/speech_keywords.json")
KEYWORDS_OUT = Path("docs/results/speech_keywords")


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
    keywords = args.task == "keywords"
    results_path, out_dir = (KEYWORDS, KEYWORDS_OUT) if keywords else (TEST, OUT)
    outs = {d: out_dir / d for d in DEGRADATIONS}
    task = ["--set", "evaluation.task=keywords"] if keywords else []
    _run_all({d: [*_coupled(), "evaluate", args.config, "--picks", args.val_out, *_sets(args), "--corruptions", d, "--levels", "heavy",
                  "--max-items", str(args.test_items), "--out", str(o), "--quiet", *task,
                  *([] if args.every_method else ["--headline-only"])] for d, o in outs.items()},
             Path(args.work) / "logs")
    parts = [json.loads((o / "results.json").read_text()) for o in outs.values()]
    merged = {k: v for k, v in parts[0].items() if k not in ("rows", "headline", "settings")}
    merged["rows"] = [r for p in parts for r in p["rows"]]
    merged["headline"] = [h for p in parts for h in p.get("headline", [])]
    merged["settings"] = {d: p.get("settings") for d, p in zip(outs, parts)}
    merged["command"] = "python benchmarks/speech_fair.py test" + (" --task keywords" if keywords else "")
    from coupled.evaluation.report import write_results

    write_results(merged, results_path)
    print(f"wrote {results_path} and {out_dir}/<degradation>/ (report.md, plots)")


def _cell(score: dict | None, pct: bool = True) -> str:
    """'value [lo, hi]' in percent of a {value, ci95} (or a row), '-' without one."""
    if not score or score.get("value") is None:
        return "-"
    lo, hi = score["ci95"]
    return f"{100 * score['value']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def _number(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def tables(rows: list[dict], keyword_rows: list[dict] | None = None) -> str:
    """The markdown tables of the speech test rows: per heavy degradation, each method and readout with digit WER,
    string accuracy (`secondary.accuracy`: the same decoded strings, exactly right), seconds per utterance and
    the audio's SI-SDR and ESTOI; then, when the keyword run's rows are given, keyword accuracy per method."""
    lines = ["Digit strings (test, heavy level; WER and string accuracy in %, 95% bootstrap intervals over strings;",
             "string accuracy: the decoded string exactly right, the keyword task's rule on the same transcripts)", "",
             "| degradation | method | readout | WER | string accuracy | s / utterance | SI-SDR dB | ESTOI |",
             "|---|---|---|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['corruption']} | {r['method']} | {r['readout']} | {_cell(r)} | "
                     f"{_cell((r.get('secondary') or {}).get('accuracy'))} | {r['seconds_per_item']:.3f} | "
                     f"{_number(r.get('si_sdr'), '.1f')} | {_number(r.get('estoi'), '.3f')} |")
    if keyword_rows:
        lines += ["", "Keywords (test, heavy level; one word per utterance; accuracy in %, 95% bootstrap intervals)", "",
                  "| degradation | method | readout | keyword accuracy | s / utterance |", "|---|---|---|---|---:|"]
        lines += [f"| {r['corruption']} | {r['method']} | {r['readout']} | {_cell(r)} | {r['seconds_per_item']:.3f} |"
                  for r in keyword_rows if r.get("metric") == "accuracy"]
    return "\n".join(lines)


def run_tables(args) -> None:
    if not TEST.is_file():
        raise SystemExit(f"speech_fair: {TEST} does not exist; run `python benchmarks/speech_fair.py test` first")
    keyword_rows = json.loads(KEYWORDS.read_text())["rows"] if KEYWORDS.is_file() else None
    print(tables(json.loads(TEST.read_text())["rows"], keyword_rows))
    if keyword_rows is None:
        print(f"\n(no keyword table: {KEYWORDS} does not exist; `python benchmarks/speech_fair.py test --task keywords` "
              "writes it)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("phase", choices=["val", "test", "tables"])
    p.add_argument("--config", default="configs/speech.yaml")
    p.add_argument("--val-items", type=int, default=100, help="validation digit strings (default 100)")
    p.add_argument("--test-items", type=int, default=200, help="test digit strings (default 200)")
    p.add_argument("--work", default="runs/speech_fair", help="per-process files and logs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override passed to every coupled process, e.g. 'sampling.signal={steps: 5, sampler: pc}'")
    p.add_argument("--val-out", default=str(VAL), help=f"the validation picks file (default {VAL})")
    p.add_argument("--every-method", action="store_true",
                   help="test: every method's pick too, not only the headline's (about 3x the time)")
    p.add_argument("--task", choices=["digits", "keywords"], default="digits",
                   help="test: the digit strings (WER; default) or the keywords (accuracy, its own results file)")
    args = p.parse_args(argv)
    {"val": run_val, "test": run_test, "tables": run_tables}[args.phase](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
