"""The speech noisy sweep of part 1 (docs/speech.md): the frozen recogniser on every degradation, SNR and RT60 of
configs/speech.yaml, both tasks at once (digit WER and keyword accuracy), with SI-SDR / ESTOI of the degraded
input and example WAVs. `coupled evaluate configs/speech.yaml --methods noisy` gives the same WER (and, with
`--set evaluation.task=keywords`, the same accuracy) through the generic runner; this script keeps the published
table's extra columns.

    python benchmarks/speech_noisy.py [--out runs/speech_noisy] [--results docs/results/speech_noisy.json]
"""

from __future__ import annotations

import argparse
import sys

from coupled.config import load_config
from coupled.domains.speech.evaluate import evaluate_speech, speech_report
from coupled.errors import CoupledError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/speech.yaml", help="a speech config (domain: speech)")
    p.add_argument("--out", default="runs/speech_noisy", help="folder for results.json, report.md, plot and WAVs")
    p.add_argument("--results", default=None, help="also write results.json here (docs/results/speech_noisy.json)")
    p.add_argument("--corruptions", nargs="+", default=None, help="only these degradations")
    args = p.parse_args(argv)
    try:
        res = evaluate_speech(load_config(args.config), out=args.out, corruptions=args.corruptions,
                              results_path=args.results)
    except CoupledError as e:
        print(f"speech_noisy: error: {e}", file=sys.stderr)
        return 2
    print(speech_report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
