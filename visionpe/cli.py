"""The ``visionpe`` command line.

Commands:
    visionpe list                       the registered PEs, their hooks and grids
    visionpe check [--out DIR]          build every PE on a 2D and a 3D grid and run it through attention
    visionpe eval resolution CKPT ...   accuracy of trained classifiers at a list of resolutions
    visionpe bench resolution [--quick] train one model per PE and seed, evaluate, report mean ± std
    visionpe eval length CKPT ...       sample a video DiT at longer lengths under each RoPE rule, measure the videos
    visionpe bench length [--quick]     train a video DiT per seed, compare PI/NTK/YaRN/RIFLEx at 1x-3x length
    visionpe bench speed [--quick]      RoPE apply vs peers and the clone floor, table builds, step overhead, memory
    visionpe adapt ...                  move a timm ViT to a new size and/or swap its PE
    visionpe inspect rope ...           periods of every RoPE component and what each scaling rule does to them
"""
from __future__ import annotations

import argparse
import sys
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
        from .results import write_json

        path = write_json(Path(args.out) / "check.json", [r.as_dict() for r in results])
        console.print(f"wrote {path}")
    console.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _cmd_eval_resolution(args: argparse.Namespace, console: Console) -> int:
    from .evaluation import evaluate_checkpoints, write_results

    results = evaluate_checkpoints(args.checkpoints, args.res, args.protocol, args.dataset, args.root,
                                   args.samples, args.labels, progress=not args.no_progress)
    paths = write_results(results, args.out)
    console.print(Path(paths[1]).read_text())
    console.print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _cmd_bench_resolution(args: argparse.Namespace, console: Console) -> int:
    from .bench import config_from_args, run_resolution_bench

    cfg = config_from_args("quick" if args.quick else None, {
        "pes": args.pes, "dataset": args.dataset, "root": args.root, "train_res": args.train_res,
        "eval_res": args.eval_res, "protocols": args.protocols, "seeds": args.seeds, "steps": args.steps,
        "batch_size": args.batch_size, "eval_samples": args.samples, "accelerator": args.accelerator})
    console.print(f"[bold]visionpe bench resolution[/bold]: {len(cfg.pes)} PEs x {len(cfg.seeds)} seeds, "
                  f"{cfg.steps} steps each, on {cfg.dataset} at {cfg.train_res} px -> {args.out}")
    run_resolution_bench(cfg, args.out, progress=not args.no_progress)
    console.print((Path(args.out) / "results.md").read_text())
    console.print(f"wrote {args.out}/results.json, results.md, results.png")
    return 0


def _add_resolution_commands(eval_parser: argparse._SubParsersAction, bench_parser: argparse._SubParsersAction) -> None:
    res = eval_parser.add_parser("resolution", help="accuracy of classifier checkpoints at several resolutions")
    res.add_argument("checkpoints", nargs="+", help="Lightning checkpoints (.ckpt) from train.py or bench")
    res.add_argument("--res", nargs="+", type=int, default=[16, 24, 32, 48, 64, 96, 128],
                     help="test resolutions in px (default 16 24 32 48 64 96 128)")
    res.add_argument("--protocol", choices=["R", "C"], default="R",
                     help="R: same images, more pixels; C: same object size, larger canvas")
    res.add_argument("--dataset", default=None, help="dataset (default: the one the checkpoint was trained on)")
    res.add_argument("--root", default=None, help="dataset root for fashion-mnist/folder")
    res.add_argument("--samples", type=int, default=1000, help="test images per resolution (default 1000)")
    res.add_argument("--labels", nargs="+", default=None, help="one legend label per checkpoint (default: PE)")
    res.add_argument("--out", required=True, help="directory for results.json, results.md, results.png")
    res.add_argument("--no-progress", action="store_true", help="no progress bar")
    res.set_defaults(func=_cmd_eval_resolution)

    bench = bench_parser.add_parser("resolution", help="train one model per PE and seed, evaluate at many sizes")
    bench.add_argument("--quick", action="store_true",
                       help="small preset (4 PEs, 1 seed, 800 steps; about 10 minutes on 2 CPU cores)")
    bench.add_argument("--pes", nargs="+", default=None, help="PE variants (default: all; see visionpe.bench)")
    bench.add_argument("--dataset", default=None, help="dir8 (default), abs9, fashion-mnist or folder")
    bench.add_argument("--root", default=None, help="dataset root for fashion-mnist/folder")
    bench.add_argument("--train-res", type=int, default=None, help="training resolution (default 32)")
    bench.add_argument("--eval-res", nargs="+", type=int, default=None, help="test resolutions")
    bench.add_argument("--protocols", nargs="+", default=None, help="R and/or C (default both)")
    bench.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default 0 1 2)")
    bench.add_argument("--steps", type=int, default=None, help="training steps per run (default 2000)")
    bench.add_argument("--batch-size", type=int, default=None, help="batch size (default 128)")
    bench.add_argument("--samples", type=int, default=None, help="test images per resolution (default 1000)")
    bench.add_argument("--accelerator", choices=["cpu", "gpu", "auto"], default=None,
                       help="where to train (default cpu; the device is recorded with every run)")
    bench.add_argument("--out", required=True, help="output directory (finished runs in it are reused)")
    bench.add_argument("--no-progress", action="store_true", help="no progress bars")
    bench.set_defaults(func=_cmd_bench_resolution)


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
    eval_parser = sub.add_parser("eval", help="evaluate trained models").add_subparsers(dest="what", required=True)
    bench_parser = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="what", required=True)
    _add_resolution_commands(eval_parser, bench_parser)
    from .adapt_cli import add_parser as add_adapt_parser
    from .inspect_rope import add_parser as add_inspect_parser
    from .length_cli import add_parsers as add_length_parsers
    from .speed_cli import add_parser as add_speed_parser

    add_length_parsers(eval_parser, bench_parser)
    add_speed_parser(bench_parser)
    add_adapt_parser(sub)
    add_inspect_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``visionpe`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line, for result files
    console = Console()
    try:
        return args.func(args, console)
    except ValueError as err:
        console.print(f"[red]error:[/red] {err}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
