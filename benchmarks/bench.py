"""`coupled bench` from a checkout: `python benchmarks/bench.py [CONFIG] [--quick] ...` (same options).

The bench itself lives in the package (`coupled.evaluation.bench`), so the installed `coupled bench` runs it
without a checkout; this script only forwards to that command.
"""

import sys

from coupled.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
