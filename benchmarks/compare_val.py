"""Two validation runs of the fair comparison side by side: each method's best validation accuracy (over its
candidates and readouts) per corruption, and the difference. Used to compare a retrained bundle with the
one before it on the same candidates and the same 500 validation digits.

    git show COMMIT:docs/results/fair_val.json > /tmp/old_val.json
    .venv/bin/python benchmarks/compare_val.py /tmp/old_val.json docs/results/fair_val.json
"""

from __future__ import annotations

import argparse
import json


def best(path: str) -> dict:
    """{(corruption, method): (accuracy, label, readout)}: each method's best validation candidate."""
    out = {}
    for r in json.loads(open(path).read())["candidates"]:
        key = (r["corruption"], r["method"])
        if key not in out or r["accuracy"] > out[key][0]:
            out[key] = (r["accuracy"], r["label"], r["readout"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    args = ap.parse_args()
    old, new = best(args.old), best(args.new)
    print("| corruption | method | before | after | change | best candidate after |")
    print("|---|---|---:|---:|---:|---|")
    for key in sorted(set(old) & set(new)):
        (a, _, _), (b, label, readout) = old[key], new[key]
        print(f"| {key[0]} | {key[1]} | {a:.3f} | {b:.3f} | {b - a:+.3f} | {label} ({readout}) |")


if __name__ == "__main__":
    main()
