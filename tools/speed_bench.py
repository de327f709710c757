"""Run ``visionpe bench speed`` as a script: ``python tools/speed_bench.py --out DIR [--quick] [...]``.

The same arguments as ``visionpe bench speed --help``.  For timings that mean something, run it on
an otherwise idle machine; ``--threads`` pins torch's CPU threads (the figures in
docs/performance.md name theirs).
"""
from __future__ import annotations

import sys

from visionpe.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "speed", *sys.argv[1:]]))
