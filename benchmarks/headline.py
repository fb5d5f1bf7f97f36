"""The headline table of docs/results.md, read from a results.json (spec section 6 shape).

Per corruption and severity: noisy, sequential, and the coupled method/readout chosen on the VALIDATION
results (`--select-on`; the highest validation accuracy per corruption, so test data never picks it), with
its paired difference to sequential on the test items and that difference's 95% bootstrap interval.

    .venv/bin/python benchmarks/headline.py docs/results/image.json --select-on docs/results/image_val.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COUPLED = ("parallel", "alternating", "nested")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results")
    p.add_argument("--select-on", required=True, help="validation results.json that picks the strategy")
    p.add_argument("--levels", nargs="+", default=["heavy"])
    args = p.parse_args()
    res = json.loads(Path(args.results).read_text())
    val = json.loads(Path(args.select_on).read_text())
    if val["split"] != "val":
        raise SystemExit(f"--select-on must be validation results, got split {val['split']!r}")
    rows = res["rows"]
    levels = {(r["corruption"], r["severity"]): r.get("level") for r in rows}
    print(f"Clean accuracy {res['clean']['value']:.3f}; {res['split']} split.\n")
    print("| corruption | severity | noisy | sequential | coupled, chosen on val (method, readout) | Δ vs sequential [95%] | above 0 |")
    print("|---|---|---|---|---|---|---|")
    for (corr, sev), level in levels.items():
        if level is not None and level not in args.levels:
            continue
        at = [r for r in rows if r["corruption"] == corr and r["severity"] == sev]
        get = lambda m, ro: next(r for r in at if r["method"] == m and r["readout"] == ro)  # noqa: E731
        cands = [r for r in val["rows"] if r["corruption"] == corr and r["method"] in COUPLED]
        same = [r for r in cands if r.get("level") == level]  # else the corruption's choice at another level
        if not cands:
            raise SystemExit(f"{args.select_on} has no coupled rows for {corr}")
        pick = max(same or cands, key=lambda r: r["value"])
        best = get(pick["method"], pick["readout"])
        lo, hi = best["delta_ci95"]
        print(f"| {corr} | {sev} ({level}) | {get('noisy', 'classifier')['value']:.3f} "
              f"| {get('sequential', 'classifier')['value']:.3f} | {best['value']:.3f} ({best['method']}, {best['readout']}) "
              f"| {best['delta_vs_sequential']:+.3f} [{lo:+.3f}, {hi:+.3f}] | {'yes' if lo > 0 else 'no'} |")


if __name__ == "__main__":
    main()
