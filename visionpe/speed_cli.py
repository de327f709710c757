"""``visionpe bench speed``: the command-line front of :mod:`visionpe.speed_bench`."""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

__all__ = ["add_parser", "run_from_args"]


def run_from_args(args: argparse.Namespace, console) -> int:
    """Run the benchmark for parsed arguments, write the reports and print the Markdown."""
    import torch

    from .speed_bench import preset, run_speed_bench
    from .speed_report import write_speed_report

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.rounds is not None and args.rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {args.rounds}")
    cfg = preset("quick" if args.quick else "full", {
        "sections": args.sections, "dtypes": args.dtypes, "rounds": args.rounds, "device": args.device,
        "compile": False if args.no_compile else None})
    console.print(f"[bold]visionpe bench speed[/bold] ({'quick' if args.quick else 'full'}): "
                  f"{', '.join(cfg.sections)} on {cfg.device}, {torch.get_num_threads()} threads -> {args.out}")
    result = run_speed_bench(cfg, progress=not args.no_progress)
    command = "visionpe " + " ".join(shlex.quote(a) for a in args.argv)
    paths = write_speed_report(result, args.out, command)
    console.print(Path(paths[1]).read_text())
    console.print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def add_parser(bench_parser: argparse._SubParsersAction) -> None:
    """Add ``speed`` under ``visionpe bench``."""
    from .speed_bench import SECTIONS

    speed = bench_parser.add_parser(
        "speed", help="time RoPE apply vs timm/diffusers/rotary-embedding-torch and the clone floor, table builds, "
                      "training-step overhead, peak memory of relative biases")
    speed.add_argument("--quick", action="store_true", help="small shapes and few rounds (seconds; for CI)")
    speed.add_argument("--sections", nargs="+", choices=SECTIONS, default=None,
                       help=f"what to measure (default: all of {' '.join(SECTIONS)})")
    speed.add_argument("--dtypes", nargs="+", choices=["float32", "bfloat16", "float16"], default=None,
                       help="q/k dtypes of the RoPE section (default float32 bfloat16)")
    speed.add_argument("--rounds", type=int, default=None, help="timed rounds per RoPE case and table (full: 15)")
    speed.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    speed.add_argument("--device", choices=["cpu", "cuda"], default=None, help="where to run (default cpu)")
    speed.add_argument("--no-compile", action="store_true",
                       help="leave out the torch.compile'd visionpe contender (it needs a C++ compiler on the CPU)")
    speed.add_argument("--out", required=True, help="directory for results.json, results.md, results.png")
    speed.add_argument("--no-progress", action="store_true", help="no progress bar")
    speed.set_defaults(func=run_from_args)
