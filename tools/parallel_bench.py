"""Run the committed experiments (docs/results/) as many single-run processes in parallel.

``visionpe bench resolution`` and ``visionpe bench length`` run their (PE, seed) or seed runs one
after the other, and each run keeps its results in its own folder (``runs/<pe>-s<seed>/eval.json``,
``seed<s>/eval.json``).  On a machine with many cores (and a GPU), this script starts one
process per run, at most ``--jobs`` at a time, each limited to ``--threads`` CPU threads, and then
runs each benchmark once more with all its PEs and seeds: every run is then found finished, so that
last call only writes ``results.json``, ``results.md`` and the plots.

    python tools/parallel_bench.py --jobs 14 --accelerator gpu --out runs/exp dir8 fmnist length

A run that fails or is still going at ``--deadline`` seconds is reported; the benchmarks are
resumable, so the same command later finishes only what is missing.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from visionpe.bench import VARIANTS

#: name -> (``visionpe`` arguments before ``--pes``/``--seeds``, split over PEs?, seeds)
EXPERIMENTS: dict[str, tuple[list[str], bool, list[int]]] = {
    "dir8": (["bench", "resolution", "--dataset", "dir8", "--train-res", "32",
              "--eval-res", "16", "24", "32", "40", "48", "64", "96", "128"], True, [0, 1, 2]),
    "fmnist": (["bench", "resolution", "--dataset", "fashion-mnist", "--train-res", "28", "--steps", "1000",
                "--eval-res", "12", "16", "20", "28", "36", "44", "56", "84", "112"], True, [0, 1, 2]),
    "length": (["bench", "length"], False, [0, 1, 2]),
}


def _jobs(names: list[str], out: Path, accelerator: str,
          extra: dict[str, list[str]]) -> tuple[list[tuple[str, list[str]]], list[list[str]]]:
    """``(single-run jobs as (label, argv), one assembling argv per experiment)``.

    Experiments with one run per seed (``length``, minutes each) go first; the PE experiments follow
    seed by seed, so runs cut off by a deadline are the last seeds, not whole PEs or datasets.
    """
    jobs, final = [], []
    for name in names:
        base, by_pe, seeds = EXPERIMENTS[name]
        base = base + extra.get(name, [])
        common = ["--out", str(out / name), "--accelerator", accelerator, "--no-progress"]
        pes = list(VARIANTS) if by_pe else [None]
        for seed in seeds:
            for pe in pes:
                argv = base + (["--pes", pe] if pe else []) + ["--seeds", str(seed)] + common
                jobs.append(((by_pe, seed, names.index(name)), f"{name}-{pe or 'dit'}-s{seed}", argv))
        final.append(base + (["--pes", *pes] if by_pe else []) + ["--seeds", *map(str, seeds)] + common)
    return [(label, argv) for _, label, argv in sorted(jobs, key=lambda j: j[0])], final


def _run(label: str, argv: list[str], logs: Path, threads: int, deadline: float) -> tuple[str, int, float]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    start = time.time()
    remaining = deadline - start
    if remaining <= 0:
        return label, -1, 0.0
    with open(logs / f"{label}.log", "w") as log:
        try:
            rc = subprocess.run([sys.executable, "-m", "visionpe.cli", *argv], stdout=log, stderr=subprocess.STDOUT,
                                env=env, timeout=remaining).returncode
        except subprocess.TimeoutExpired:
            rc = -2
    return label, rc, time.time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiments", nargs="+", choices=list(EXPERIMENTS))
    parser.add_argument("--out", required=True, help="one sub-folder per experiment is written here")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run (default 1)")
    parser.add_argument("--accelerator", choices=["cpu", "gpu", "auto"], default="cpu")
    parser.add_argument("--deadline", type=float, default=None, help="stop starting and kill runs after this "
                                                                     "many seconds")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=ARGS",
                        help="more options for one experiment, e.g. dir8='--steps 5 --samples 50' (a smoke test)")
    args = parser.parse_args()
    extra = {}
    for item in args.extra:
        name, _, text = item.partition("=")
        if name not in EXPERIMENTS:
            parser.error(f"--extra {item!r}: use NAME=ARGS with NAME one of {', '.join(EXPERIMENTS)}")
        extra[name] = shlex.split(text)
    if args.jobs < 1 or args.threads < 1:
        parser.error("--jobs and --threads must be >= 1")
    out = Path(args.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + (args.deadline if args.deadline else 1e9)
    jobs, final = _jobs(args.experiments, out, args.accelerator, extra)
    print(f"{len(jobs)} runs, {args.jobs} at a time, {args.threads} thread(s) each, on {args.accelerator}", flush=True)
    failed = []
    with ThreadPoolExecutor(args.jobs) as pool:
        for label, rc, seconds in pool.map(lambda j: _run(*j, logs, args.threads, deadline), jobs):
            status = {0: "ok", -1: "not started (deadline)", -2: "killed at the deadline"}.get(rc, f"failed rc={rc}")
            print(f"{label:28s} {status:24s} {seconds:7.1f} s", flush=True)
            if rc != 0:
                failed.append(label)
    if failed:
        print(f"{len(failed)} runs unfinished: {' '.join(failed)}; run the same command again to finish them")
        return 1
    for argv in final:
        subprocess.run([sys.executable, "-m", "visionpe.cli", *argv], check=True,
                       env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
