"""Reports of ``visionpe bench speed``: the issue's targets checked, Markdown tables, a four-panel plot.

:func:`write_speed_report` writes ``results.json``, ``results.md`` and ``results.png`` atomically.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .results import atomic_write, write_json, write_text

__all__ = ["PEERS", "evaluate_targets", "speed_markdown", "plot_speed", "write_speed_report"]

PEERS = ("timm", "diffusers", "rotary-embedding-torch")
FLOOR = "clone (floor)"
#: families whose training-step overhead has the 3% target (additive and rotary)
OVERHEAD_TARGET_PES = ("learned", "sincos", "rope-axial", "rope-mixed")


def _rope_groups(rows: Sequence[dict]) -> dict[tuple[str, str, str], dict[str, dict]]:
    groups: dict[tuple[str, str, str], dict[str, dict]] = {}
    for r in rows:
        groups.setdefault((r["shape"], r["dtype"], r["layout"]), {})[r["contender"]] = r
    return groups


def evaluate_targets(result: dict) -> list[dict]:
    """One row ``{target, case, measured, goal, met}`` per target and case found in ``result``."""
    out = []
    for (shape, dtype, layout), by in _rope_groups(result.get("rope", [])).items():
        v = by["visionpe"]["median_ms"]
        peers = {p: by[p]["median_ms"] for p in PEERS if p in by}
        case = f"{shape} {dtype} {layout}"
        if peers:
            fastest = min(peers, key=peers.get)
            speedup = peers[fastest] / v
            out.append({"target": "RoPE apply ≥ 1.5× faster than the fastest peer", "case": case,
                        "measured": f"{speedup:.2f}× (fastest peer: {fastest})", "value": speedup, "goal": 1.5,
                        "met": speedup >= 1.5})
        ratio = v / by[FLOOR]["median_ms"]
        out.append({"target": "RoPE apply within 2× of the clone floor", "case": case,
                    "measured": f"{ratio:.2f}× clone", "value": ratio, "goal": 2.0, "met": ratio <= 2.0})
    for r in result.get("tables", []):
        if r["cacheable"]:
            pct = 100 * r["repeated_over_first"]
            out.append({"target": "cached table build < 1% of the first", "case": r["pe"],
                        "measured": f"{pct:.3f}%", "value": pct, "goal": 1.0, "met": pct < 1.0})
    for r in result.get("train", []):
        if r["pe"] in OVERHEAD_TARGET_PES:
            out.append({"target": "PE overhead in a ViT training step ≤ 3%", "case": r["pe"],
                        "measured": f"{r['overhead_pct']:+.1f}%", "value": r["overhead_pct"], "goal": 3.0,
                        "met": r["overhead_pct"] <= 3.0})
    decomposed = [r for r in result.get("memory", []) if r["pe"] == "rel-decomposed"]
    if len(decomposed) >= 2:
        small, large = sorted(decomposed, key=lambda r: r["tokens"])[-2:]
        if small["peak_mb"] > 0:
            # N·(d + H + W) on square grids grows like N^1 to N^1.5; an (N, N) tensor like N^2
            exponent = math.log(large["peak_mb"] / small["peak_mb"]) / math.log(large["tokens"] / small["tokens"])
            out.append({"target": "rel-decomposed memory O(N·(H+W)), not O(N²)",
                        "case": f"{small['tokens']} → {large['tokens']} tokens",
                        "measured": f"peak grows as N^{exponent:.2f}; {large['peak_mb']:.1f} MB vs "
                                    f"{large['full_table_mb']:.1f} MB for one (heads, N, N) bias",
                        "value": exponent, "goal": 1.6, "met": exponent <= 1.6})
    for label, breaks in result.get("graph_breaks", {}).items():
        out.append({"target": "torch.compile of the apply path: no graph breaks", "case": label,
                    "measured": f"{breaks} graph breaks", "value": breaks, "goal": 0, "met": breaks == 0})
    return out


def _err(x: float | None) -> str:
    return "–" if x is None else f"{x:.1e}"


def speed_markdown(result: dict, command: str | None = None) -> str:
    """The Markdown report: set-up, targets, and one table per section."""
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v)
    lines = ["# visionpe bench speed", "",
             f"Device: **{result['device']}**, {result['threads']} CPU threads; {versions}.", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    targets = result.get("targets") or evaluate_targets(result)
    if targets:
        lines += ["## Targets", "", "| target | case | measured | met |", "|---|---|---|---|"]
        lines += [f"| {t['target']} | {t['case']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |"
                  for t in targets]
        lines.append("")
    groups = _rope_groups(result.get("rope", []))
    if groups:
        lines += ["## RoPE apply to q and k", "",
                  "Median of interleaved rounds (IQR in brackets). *× clone*: the contender's time over the "
                  "clone floor's. *visionpe / this*: visionpe's time over the contender's (below 1: visionpe is "
                  "faster). *max err*: largest absolute difference from a float64 rotation of the same inputs.", ""]
        for (shape, dtype, layout), by in groups.items():
            first = next(iter(by.values()))
            lines += [f"### {shape} {tuple(first['qk_shape'])}, split {tuple(first['dims'])}, {dtype}, {layout}", "",
                      "| contender | median ms | IQR ms | × clone | visionpe / this | max err |", "|---|---|---|---|---|---|"]
            v, floor = by["visionpe"]["median_ms"], by[FLOOR]["median_ms"]
            for name, r in by.items():
                extra = f" (compile {r['compile_s']:.1f} s)" if r.get("compile_s") is not None else ""
                lines.append(f"| {name}{extra} | {r['median_ms']:.3f} | {r['p25_ms']:.3f}–{r['p75_ms']:.3f} | "
                             f"{r['median_ms'] / floor:.2f} | {v / r['median_ms']:.2f} | "
                             f"{_err(r['max_abs_err'])} |")
            lines.append("")
    for name, note in result.get("notes", {}).items():
        lines.append(f"- {name}: {note}")
    if result.get("notes"):
        lines.append("")
    if result.get("tables"):
        lines += ["## Table builds for a new grid", "",
                  "*cacheable*: the table depends on no trainable parameter, so visionpe caches it per "
                  "(grid, device); the others are rebuilt on every call by design (their cached part is an "
                  "index or coordinate table).  *first hit*: the one call right after the build; *cached*: the mean "
                  "of repeated calls, as every layer of a running model makes them (the target is judged on it).",
                  "", "| PE | grid | first ms | first hit ms | cached ms | cached / first | cacheable |",
                  "|---|---|---|---|---|---|---|"]
        for r in result["tables"]:
            lines.append(f"| {r['pe']} | {'×'.join(map(str, r['grid']))} | {r['first_ms']:.3f} | "
                         f"{r['cached_ms']:.4f} | {r['repeated_ms']:.4f} | {100 * r['repeated_over_first']:.2f}% | "
                         f"{'yes' if r['cacheable'] else 'no'} |")
        lines.append("")
    if result.get("train"):
        cfg = result["config"]
        lines += ["## One training step (forward, backward, AdamW)", "",
                  f"visionpe ViT size `{cfg['train_size']}`, {cfg['train_img']} px, batch {cfg['train_batch']}; "
                  f"overhead: median over pairs (IQR in brackets) of the step time over that of the same ViT "
                  f"without a PE, run right next to it.", "",
                  "| PE | median ms | IQR ms | overhead | overhead IQR |", "|---|---|---|---|---|"]
        for r in result["train"]:
            lines.append(f"| {r['pe']} | {r['median_ms']:.1f} | {r['p25_ms']:.1f}–{r['p75_ms']:.1f} | "
                         f"{r['overhead_pct']:+.1f}% | {r['overhead_p25_pct']:+.1f}% to {r['overhead_p75_pct']:+.1f}% |")
        lines.append("")
    if result.get("memory"):
        lines += ["## Peak memory of attention_bias (batch 1)", "",
                  "*full (H,N,N)*: one float32 bias for all heads; *decomposed*: the per-axis terms "
                  "(heads, N, H+W) of decomposed rel-pos.", "",
                  "| PE | grid | tokens | peak MB | full (H,N,N) MB | decomposed MB |", "|---|---|---|---|---|---|"]
        for r in result["memory"]:
            lines.append(f"| {r['pe']} | {'×'.join(map(str, r['grid']))} | {r['tokens']} | {r['peak_mb']:.1f} | "
                         f"{r['full_table_mb']:.1f} | {r['decomposed_mb']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def plot_speed(path: str | Path, result: dict) -> Path:
    """Four panels: RoPE apply time over the clone floor, table builds, training overhead, peak memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9), dpi=110)
    ax = axes[0, 0]
    groups = _rope_groups(result.get("rope", []))
    contenders = list(dict.fromkeys(r["contender"] for r in result.get("rope", [])))
    colours = plt.get_cmap("tab10").colors
    width = 0.8 / max(1, len(contenders))
    for i, name in enumerate(contenders):
        xs, ys = [], []
        for j, by in enumerate(groups.values()):
            if name in by:
                xs.append(j + (i - (len(contenders) - 1) / 2) * width)
                ys.append(by[name]["median_ms"] / by[FLOOR]["median_ms"])
        ax.bar(xs, ys, width, label=name, color=colours[i % 10])
    ax.set_xticks(range(len(groups)), ["\n".join(k) for k in groups], fontsize=7)
    ax.set_yscale("log")
    ax.axhline(2.0, color="0.3", ls="--", lw=1, label="2× clone (target)")
    ax.set_ylabel("time / clone of q and k")
    ax.set_title("RoPE apply (lower is better)")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    tables = result.get("tables", [])
    if tables:
        xs = range(len(tables))
        ax.bar([x - 0.2 for x in xs], [r["first_ms"] for r in tables], 0.4, label="first call")
        ax.bar([x + 0.2 for x in xs], [r["repeated_ms"] for r in tables], 0.4, label="cached call")
        ax.set_xticks(list(xs), [r["pe"] + ("" if r["cacheable"] else "*") for r in tables], rotation=40,
                      ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("ms")
        ax.legend(fontsize=8)
    ax.set_title("table build for a new grid (* depends on parameters)")
    ax = axes[1, 0]
    train = result.get("train", [])
    if train:
        ax.bar(range(len(train)), [r["overhead_pct"] for r in train],
               color=[colours[2] if r["pe"] in OVERHEAD_TARGET_PES else colours[7] for r in train])
        ax.set_xticks(range(len(train)), [r["pe"] for r in train], rotation=40, ha="right", fontsize=8)
        ax.axhline(3.0, color="0.3", ls="--", lw=1, label="3% (target for additive and rotary)")
        ax.axhline(0.0, color="0.5", lw=0.8)
        ax.set_ylabel("training step time over no PE (%)")
        ax.legend(fontsize=8)
    ax.set_title("PE overhead in a ViT training step")
    ax = axes[1, 1]
    memory = result.get("memory", [])
    for i, name in enumerate(dict.fromkeys(r["pe"] for r in memory)):
        pts = [r for r in memory if r["pe"] == name]
        ax.plot([r["tokens"] for r in pts], [max(r["peak_mb"], 1e-3) for r in pts], marker="o", label=name,
                color=colours[i % 10])
    if memory:
        first = [r for r in memory if r["pe"] == memory[0]["pe"]]
        ax.plot([r["tokens"] for r in first], [r["full_table_mb"] for r in first], "k--", lw=1,
                label="(heads, N, N) float32")
        ax.plot([r["tokens"] for r in first], [r["decomposed_mb"] for r in first], "k:", lw=1,
                label="(heads, N, H+W) float32")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tokens N")
        ax.set_ylabel("peak MB")
        ax.legend(fontsize=8)
    ax.set_title("peak memory of attention_bias")
    fig.suptitle(f"visionpe bench speed on {result['device']} ({result['threads']} threads)")
    fig.tight_layout()
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")
    plt.close(fig)
    return out


def write_speed_report(result: dict, out: str | Path, command: str | None = None) -> list[Path]:
    """Write ``results.json`` (with the targets), ``results.md``, ``results.png`` and, when the RoPE
    section ran, ``profile.txt`` (the profiler table of visionpe's apply per case) to ``out``."""
    out = Path(out)
    profiles = result.get("profiles", {})
    result = {**{k: v for k, v in result.items() if k != "profiles"}, "targets": evaluate_targets(result),
              "command": command}
    paths = [write_json(out / "results.json", result), write_text(out / "results.md", speed_markdown(result, command)),
             plot_speed(out / "results.png", result)]
    if profiles:
        text = "\n\n".join(f"== visionpe RoPE apply (q and k), {case} ==\n{table}" for case, table in profiles.items())
        paths.append(write_text(out / "profile.txt", f"{command}\n\n{text}\n"))
    return paths
