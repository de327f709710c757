"""The ``visionpe`` command line.

Commands:
    visionpe list                       the registered PEs, their hooks and grids
    visionpe check [--out DIR]          build every PE on a 2D and a 3D grid and run it through attention
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import __version__
from .registry import get_pe_class, list_pes

__all__ = ["main"]


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc else ""


def _cmd_list(args: argparse.Namespace, console: Console) -> int:
    table = Table(title="visionpe positional embeddings")
    for col in ("name", "class", "hooks", "axes", "summary"):
        table.add_column(col)
    for name in list_pes():
        cls = get_pe_class(name)
        table.add_row(name, cls.__name__, ", ".join(sorted(cls.hooks)) or "-",
                      "/".join(f"{a}D" for a in cls.supported_axes), _first_line(cls.__doc__))
    console.print(table)
    return 0


def _parse_grid(text: str) -> tuple[int, ...]:
    try:
        grid = tuple(int(v) for v in text.lower().replace("x", " ").replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid must look like 8x8 or 4x6x6, got {text!r}") from None
    if len(grid) not in (2, 3) or min(grid) < 1:
        raise argparse.ArgumentTypeError(f"grid must have 2 or 3 positive axes like 8x8 or 4x6x6, got {text!r}")
    return grid


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _cmd_check(args: argparse.Namespace, console: Console) -> int:
    from .check import run_checks

    names = args.pes.split(",") if args.pes else None
    if names:
        for n in names:
            get_pe_class(n)  # raises ValueError listing the known names
    results = run_checks(names, grids=args.grids, dim=args.dim, num_heads=args.heads, depth=args.depth,
                         num_prefix_tokens=args.prefix, progress=not args.no_progress)
    table = Table(title=f"visionpe check (dim={args.dim}, heads={args.heads}, depth={args.depth}, "
                        f"prefix={args.prefix})")
    for col in ("PE", "grid", "hooks", "params", "forward ms", "result"):
        table.add_column(col, justify="right" if col in ("params", "forward ms") else "left")
    for r in results:
        table.add_row(r.name, "x".join(map(str, r.grid)), ", ".join(r.hooks) or "-", f"{r.num_params:,}",
                      f"{r.forward_ms:.1f}", "[green]ok[/green]" if r.ok else f"[red]{r.message}[/red]")
    console.print(table)
    failed = [r for r in results if not r.ok]
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        _write_atomic(out / "check.json", json.dumps([r.as_dict() for r in results], indent=2))
        console.print(f"wrote {out / 'check.json'}")
    console.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``visionpe`` command."""
    parser = argparse.ArgumentParser(prog="visionpe", description="Positional embeddings for vision transformers.")
    parser.add_argument("--version", action="version", version=f"visionpe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the registered PEs").set_defaults(func=_cmd_list)
    check = sub.add_parser("check", help="run every PE through attention on 2D and 3D grids")
    check.add_argument("--pes", default="", help="comma-separated PE names (default: all)")
    check.add_argument("--grids", nargs="+", type=_parse_grid, default=[(8, 8), (4, 6, 6)],
                       help="grids to check, e.g. 8x8 4x6x6 (default)")
    check.add_argument("--dim", type=int, default=96, help="model width (default 96: head dim 24 with 4 heads, valid for every PE in 2D and 3D)")
    check.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    check.add_argument("--depth", type=int, default=2, help="blocks (default 2)")
    check.add_argument("--prefix", type=int, default=1, help="prefix tokens such as CLS (default 1)")
    check.add_argument("--out", default="", help="directory for check.json")
    check.add_argument("--no-progress", action="store_true", help="no progress bar")
    check.set_defaults(func=_cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``visionpe`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console()
    try:
        return args.func(args, console)
    except ValueError as err:
        console.print(f"[red]error:[/red] {err}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
