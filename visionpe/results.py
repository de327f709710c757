"""Result files for evaluations and benchmarks: atomic JSON/Markdown/PNG writing, tables and plots.

Every file is written to a temporary name in the target directory and moved into place with
``os.replace``, so a crash never leaves a half-written result behind.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["atomic_write", "write_json", "write_text", "summarize", "accuracy_table", "plot_accuracy"]


def atomic_write(path: str | Path, write: Callable[[str], None], suffix: str = "") -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; results are ordinary files
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path: str | Path, data: object) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    return write_text(path, json.dumps(data, indent=2) + "\n")


def summarize(values: Sequence[float]) -> dict[str, float]:
    """``{"mean", "std", "n"}`` of ``values`` (sample std; 0 for a single value)."""
    values = list(values)
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def accuracy_table(
    rows: Mapping[str, Mapping[int, Mapping[str, float]]], sizes: Sequence[int], train_size: int | None = None,
    title: str | None = None,
) -> str:
    """Markdown table: one row per model, one column per resolution, cells ``mean ± std`` in %.

    Args:
        rows: ``label -> size -> {"mean", "std", "n"}`` with accuracies in [0, 1].
        sizes: the column order.
        train_size: marked with ``*`` in the header.
    """
    header = [f"{s}*" if s == train_size else str(s) for s in sizes]
    lines = [f"### {title}", ""] if title else []
    lines += ["| PE | " + " | ".join(header) + " |", "|---|" + "---:|" * len(sizes)]
    for label, per_size in rows.items():
        cells = []
        for s in sizes:
            stats = per_size.get(s)
            if stats is None:
                cells.append("–")
            elif stats["n"] > 1:
                cells.append(f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}")
            else:
                cells.append(f"{100 * stats['mean']:.1f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    n = {stats["n"] for per_size in rows.values() for stats in per_size.values()}
    note = f"top-1 %, mean ± std over {max(n)} seeds" if n and max(n) > 1 else "top-1 %"
    lines += ["", note + (f"; * = training resolution ({train_size} px)" if train_size else "")]
    return "\n".join(lines) + "\n"


def plot_accuracy(
    path: str | Path, rows: Mapping[str, Mapping[int, Mapping[str, float]]], sizes: Sequence[int],
    train_size: int | None = None, title: str = "", chance: float | None = None,
) -> Path:
    """PNG of accuracy vs resolution (log2 x axis), one line per model, ±std band; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    colours = plt.get_cmap("tab10").colors
    for i, (label, per_size) in enumerate(rows.items()):
        xs = [s for s in sizes if s in per_size]
        mean = [100 * per_size[s]["mean"] for s in xs]
        std = [100 * per_size[s]["std"] for s in xs]
        # ten colours, then the same colours dashed with square markers: no two lines look alike
        style = {"color": colours[i % 10], "ls": "-" if i < 10 else "--", "marker": "o" if i < 10 else "s"}
        (line,) = ax.plot(xs, mean, ms=3.5, lw=1.5, label=label, **style)
        if any(std):
            ax.fill_between(xs, [m - d for m, d in zip(mean, std)], [m + d for m, d in zip(mean, std)],
                            color=line.get_color(), alpha=0.15, lw=0)
    if train_size is not None:
        ax.axvline(train_size, color="0.4", ls="--", lw=1, label=f"train ({train_size} px)")
    if chance is not None:
        ax.axhline(100 * chance, color="0.6", ls=":", lw=1, label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(sizes), [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("test resolution (px)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2 if len(rows) > 6 else 1, loc="best")
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")
    finally:
        plt.close(fig)

