"""The papers' expected orderings (research notes §17.6) checked on a resolution benchmark's results.

A check compares two PEs, ``A`` and ``B``, on one *summary* of the accuracy curve: the mean accuracy
over a group of test resolutions (``down`` = 0.5-0.75x the training size, ``up2`` = 1.5-2x,
``up4`` = 3-4x, or one size under protocol C).  Each seed gives one summary per PE, and the notes'
rule (§17.5) decides::

    A > B  iff  mean_A - mean_B > max(1, 2 * sqrt(s_A^2 / n_A + s_B^2 / n_B))   (points, s = sample std)

(two standard errors of the difference, and never less than one point); ``A < B`` likewise, and
``tie`` otherwise.  With one seed the standard errors are unknown and the margin is the 1-point floor.

The input is the ``results.json`` of ``visionpe bench resolution``; :func:`checks_table` gives the
Markdown table committed next to it (``tools/paper_checks.py`` writes it).
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Check", "DIR8_CHECKS", "GATE", "GROUPS", "compare", "group_sizes", "seed_summaries", "run_checks",
           "gate_rows", "checks_table"]

#: H1 on Dir8: every PE but ``none`` and the direction-blind ``alibi`` reaches this top-1 (%) at the training size
GATE = 90.0

#: summary name -> (protocol, lowest and highest test size as a multiple of the training size)
GROUPS: dict[str, tuple[str, float, float]] = {
    "down": ("R", 0.5, 0.75),
    "up2": ("R", 1.5, 2.0),
    "up4": ("R", 3.0, 4.0),
    "C2x": ("C", 2.0, 2.0),
    "C4x": ("C", 4.0, 4.0),
}


#: expected ordering -> the verdicts that agree with it
_AGREE: dict[str, tuple[str, ...]] = {">": (">",), ">=": (">", "tie"), "tie": ("tie",)}


@dataclass(frozen=True)
class Check:
    """One expected ordering of ``a`` and ``b`` on summary ``group``.

    ``expect`` is ``">"`` (A above B), ``">="`` (A above or tied with B: the notes' "≥" and "≳") or ``"tie"``.
    """

    label: str
    group: str
    a: str
    b: str
    expect: str = ">"
    anchor: str = ""

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"unknown summary group {self.group!r}; known: {', '.join(GROUPS)}")
        if self.expect not in _AGREE:
            raise ValueError(f"expect must be one of {', '.join(_AGREE)}, got {self.expect!r}")


def _checks() -> list[Check]:
    rows = [
        Check("H4", "down", "glpe-mr", "learned", anchor="ResFormer 96 px: 73.6 vs 17.6"),
        Check("H4", "down", "glpe-mr", "glpe", anchor="ResFormer: 73.6 vs 57.8"),
        Check("H4", "down", "glpe", "learned", anchor="ResFormer: 57.8 vs 17.6"),
        Check("S1", "up2", "rope-mixed", "rope-axial", expect=">=", anchor="RoPE-ViT ViT-S 384: 81.8 vs 80.0"),
        Check("S1", "up2", "rope-axial", "learned", expect=">=", anchor="RoPE-ViT ViT-S 384: 80.0 vs 79.4"),
        Check("S1", "up2", "rope-mixed", "learned", expect=">=", anchor="RoPE-ViT ViT-S 384: 81.8 vs 79.4"),
        Check("S1", "up2", "peg", "learned", anchor="CPVT 384: 73.2 vs 71.2"),
        Check("S1", "up2", "glpe", "learned", anchor="ResFormer 384: 80.65 vs 78.10"),
        Check("S1", "up2", "alibi", "learned", anchor="LookHere 448: 79.6 vs 77.5"),
        Check("S3", "up4", "alibi", "learned", anchor="LookHere 1024: 63.6 vs 55.7"),
        Check("S3", "up4", "learned", "sincos", expect=">=", anchor="LookHere 1024: 55.7 vs 53.7"),
        Check("S3", "up4", "sincos", "rope-axial", anchor="LookHere 1024: 53.7 vs 51.4"),
        Check("S3", "up4", "rope-axial", "rel-bias", anchor="LookHere 1024: RPB worst (36.8)"),
        Check("S3", "up4", "learned", "rel-bias", anchor="LookHere 1024: RPB worst (36.8)"),
        Check("S4", "up2", "cpb", "rel-bias", anchor="Swin-v2: 79.1 vs 68.7 at 3x window"),
        Check("S4", "up4", "cpb", "rel-bias", anchor="Swin-v2: 79.1 vs 68.7 at 3x window"),
    ]
    for group in ("C2x", "C4x"):
        for a in ("rope-mixed", "rope-axial", "alibi", "peg", "cpb"):
            for b in ("learned", "rel-bias", "rel-decomposed"):
                rows.append(Check("H3", group, a, b, anchor="mechanism: stretched tables distort patch geometry"))
    return rows


#: the §17.6 pairwise checks for the 12 benchmark PEs (H1, the convergence gate, is a per-PE check)
DIR8_CHECKS: list[Check] = _checks()


def compare(a: Sequence[float], b: Sequence[float]) -> tuple[str, float, float]:
    """The §17.5 verdict on per-seed summaries in points: ``(">" | "<" | "tie", mean_A - mean_B, margin)``."""
    if not a or not b:
        raise ValueError(f"both PEs need at least one seed's summary, got {len(a)} and {len(b)}")
    var_a = statistics.variance(a) / len(a) if len(a) > 1 else 0.0
    var_b = statistics.variance(b) / len(b) if len(b) > 1 else 0.0
    gap = statistics.fmean(a) - statistics.fmean(b)
    margin = max(1.0, 2.0 * math.sqrt(var_a + var_b))
    return (">" if gap > margin else "<" if gap < -margin else "tie"), gap, margin


def group_sizes(results: Mapping, group: str) -> list[int]:
    """The test sizes of summary ``group`` present in ``results`` (``GROUPS`` gives the range)."""
    if group not in GROUPS:
        raise ValueError(f"unknown summary group {group!r}; known: {', '.join(GROUPS)}")
    protocol, lo, hi = GROUPS[group]
    train = results["config"]["train_res"]
    sizes = {int(s) for run in results["runs"] for s in run["accuracy"].get(protocol, {})}
    return sorted(s for s in sizes if lo * train - 1e-9 <= s <= hi * train + 1e-9)


def seed_summaries(results: Mapping, pe: str, protocol: str, sizes: Sequence[int]) -> list[float]:
    """Per seed, ``pe``'s mean top-1 (in points) over ``sizes`` under ``protocol``."""
    values = []
    for run in results["runs"]:
        if run["variant"] != pe:
            continue
        acc = run["accuracy"].get(protocol, {})
        missing = [s for s in sizes if str(s) not in acc]
        if missing:
            raise ValueError(f"run {pe} seed {run['seed']} has no {protocol} accuracy at {missing} px; "
                             f"evaluate it there (visionpe bench resolution --eval-res ...)")
        values.append(100.0 * statistics.fmean(acc[str(s)] for s in sizes))
    return values


def run_checks(results: Mapping, checks: Sequence[Check] = DIR8_CHECKS) -> list[dict]:
    """One row per check whose PEs and sizes are in ``results``: means, stds, gap, margin, verdict, agreement."""
    pes = {run["variant"] for run in results["runs"]}
    rows = []
    for check in checks:
        sizes = group_sizes(results, check.group)
        if not sizes or check.a not in pes or check.b not in pes:
            continue
        protocol = GROUPS[check.group][0]
        a = seed_summaries(results, check.a, protocol, sizes)
        b = seed_summaries(results, check.b, protocol, sizes)
        verdict, gap, margin = compare(a, b)
        rows.append({
            "label": check.label, "group": check.group, "sizes": sizes, "a": check.a, "b": check.b,
            "mean_a": statistics.fmean(a), "std_a": statistics.stdev(a) if len(a) > 1 else 0.0, "n_a": len(a),
            "mean_b": statistics.fmean(b), "std_b": statistics.stdev(b) if len(b) > 1 else 0.0, "n_b": len(b),
            "gap": gap, "margin": margin, "verdict": verdict, "expect": check.expect,
            "agree": verdict in _AGREE[check.expect], "anchor": check.anchor,
        })
    return rows


def gate_rows(results: Mapping) -> list[dict]:
    """H1: each PE's per-seed top-1 (points) at the training resolution under protocol R."""
    train = results["config"]["train_res"]
    pes = list(dict.fromkeys(run["variant"] for run in results["runs"]))
    return [{"pe": pe, "values": seed_summaries(results, pe, "R", [train])} for pe in pes]


def _cell(mean: float, std: float, n: int) -> str:
    return f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}"


def checks_table(results: Mapping, checks: Sequence[Check] = DIR8_CHECKS, gate: float | None = GATE) -> str:
    """Markdown: each PE at the training size (H1; with ``gate``, whether every seed reaches it), then one
    row per pairwise check with the §17.5 verdict."""
    train = results["config"]["train_res"]
    lines = [f"### H1: top-1 % at the training resolution ({train} px, protocol R)", "",
             "| PE | per seed | mean ± std |" + (f" ≥ {gate:g}% in every seed? |" if gate is not None else ""),
             "|---|---|---:|" + ("---|" if gate is not None else "")]
    for row in gate_rows(results):
        v = row["values"]
        cells = [row["pe"], " / ".join(f"{x:.1f}" for x in v),
                 _cell(statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))]
        if gate is not None:
            cells.append("yes" if min(v) >= gate else "no")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "### Pairwise checks (notes §17.6, rule §17.5)", "",
              "| check | summary (px) | A | B | A (%) | B (%) | A − B | margin | verdict | papers | agree? | anchor |",
              "|---|---|---|---|---:|---:|---:|---:|---|---|---|---|"]
    for r in run_checks(results, checks):
        sizes = ", ".join(map(str, r["sizes"]))
        verdict = {">": "A > B", "<": "A < B", "tie": "tie"}[r["verdict"]]
        expect = {">": "A > B", ">=": "A ≥ B", "tie": "tie"}[r["expect"]]
        lines.append(
            f"| {r['label']} | {r['group']} ({sizes}) | `{r['a']}` | `{r['b']}` | {_cell(r['mean_a'], r['std_a'], r['n_a'])} "
            f"| {_cell(r['mean_b'], r['std_b'], r['n_b'])} | {r['gap']:+.1f} | {r['margin']:.1f} | {verdict} | {expect} "
            f"| {'yes' if r['agree'] else '**no**'} | {r['anchor']} |")
    seeds = sorted({run["seed"] for run in results["runs"]})
    lines += ["", f"Per-seed summaries over {len(seeds)} seed(s) ({', '.join(map(str, seeds))}); margin = "
              "max(1, 2·sqrt(s_A²/n_A + s_B²/n_B)) points; groups are mean top-1 over the listed sizes "
              "(C2x/C4x: protocol C)."]
    return "\n".join(lines) + "\n"
