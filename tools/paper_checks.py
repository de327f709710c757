"""Check a resolution benchmark's results against the papers' orderings (research notes §17.5-17.6).

Reads the ``results.json`` of ``visionpe bench resolution`` and writes a Markdown table: the
convergence gate (H1: every PE's accuracy at the training resolution, per seed) and one row per
expected ordering (H3, H4, S1, S3, S4) with both PEs' mean ± std over seeds, the gap, the §17.5
margin and the verdict.  See :mod:`visionpe.paper_checks` for the groups and the rule.

    python tools/paper_checks.py docs/results/dir8-v2/results.json --out docs/results/dir8-v2/checks.md
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from visionpe.paper_checks import GATE, checks_table
from visionpe.results import write_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="results.json of visionpe bench resolution")
    parser.add_argument("--out", type=Path, help="Markdown file to write (default: print)")
    parser.add_argument("--gate", type=float, default=None,
                        help=f"H1 threshold in %% at the training size (default {GATE:g} for Dir8, none otherwise)")
    args = parser.parse_args(argv)
    if not args.results.is_file():
        parser.error(f"{args.results} does not exist; run visionpe bench resolution ... --out DIR first")
    results = json.loads(args.results.read_text())
    if "runs" not in results or "config" not in results:
        parser.error(f"{args.results} is not a resolution benchmark's results.json (no 'runs' and 'config')")
    dataset = results["config"].get("dataset", "?")
    gate = args.gate if args.gate is not None else GATE if dataset == "dir8" else None
    table = f"# Paper checks: {dataset}\n\nFrom `{args.results}`.\n\n" + checks_table(results, gate=gate)
    if args.out:
        write_text(args.out, table)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
