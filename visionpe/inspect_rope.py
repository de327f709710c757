"""``visionpe inspect rope``: the periods of every RoPE component and what each scaling rule does to them.

    visionpe inspect rope --preset hunyuanvideo|cogvideox|wan [--test-length L'] [--k K | --repetition-length N]
    visionpe inspect rope --dims 16 56 56 --base 256 --train-length 33 [--test-length 66] ...
                          [--axis t] [--rules pi,ntk,yarn,riflex] [--riflex-mode repo|paper]
                          [--temporal-compression 4] [--all-axes] [--no-table] [--out DIR [--no-plot]]

For one RoPE axis with rotary dim ``d`` and base ``b``, component ``j = 1 … d/2`` (1-indexed as in
the RIFLEx paper) turns by ``θ_j = b^(−2(j−1)/d)`` per position.  Its period is ``N_j = 2π/θ_j``
positions and it completes ``r_j = L·θ_j/(2π)`` cycles over ``L`` positions.  A component that
completes less than one cycle over the training length but more than one over the test length
*repeats*: the model never saw it wrap around, and content tied to it comes back (RIFLEx §3).
The intrinsic component ``k`` is the one whose period is closest to the observed repetition
(:func:`visionpe.scaling.find_intrinsic_component`).  The rules (:mod:`visionpe.scaling`) act on one
axis, the *target* axis (time by default), with ``s = L′/L``.

Lengths are in positions, i.e. latent frames for a video DiT.  With a VAE whose temporal compression
is ``c`` (4 for HunyuanVideo, CogVideoX and Wan), a length of ``n`` latent frames is ``c·(n−1)+1``
pixel frames and a period of ``N`` latent frames lasts ``c·N`` pixel frames.

:func:`inspect_rope` / :func:`inspect_preset` build a :class:`RopeReport`; :func:`add_parser` adds
the command (handler :func:`run_inspect_rope`), which prints rich tables and with ``--out`` writes
``results.json``, ``results.md`` and ``results.png`` atomically.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .results import atomic_write, write_json, write_text
from .scaling import RIFLEX_PRESETS, YaRN, find_intrinsic_component, length_rule, rope_frequencies

__all__ = [
    "RULES",
    "VAE_TEMPORAL_COMPRESSION",
    "AxisReport",
    "ComponentReport",
    "RopeReport",
    "RuleEffect",
    "add_parser",
    "inspect_preset",
    "inspect_rope",
    "plot_report",
    "report_from_args",
    "run_inspect_rope",
]

#: The scaling rules the report can apply, in table order.
RULES = ("pi", "ntk", "yarn", "riflex")
_LABELS = {"pe": "PE", "pi": "PI", "ntk": "NTK", "yarn": "YaRN", "riflex": "RIFLEx"}
#: Temporal compression of each preset's VAE (pixel frames = c·(latent frames − 1) + 1).
VAE_TEMPORAL_COMPRESSION = {"hunyuanvideo": 4, "cogvideox": 4, "wan": 4}
_RIFLEX_MODES = ("repo", "paper")


@dataclass(frozen=True)
class RuleEffect:
    """One component of the target axis under one rule.

    Attributes:
        theta: the new frequency ``θ′_j`` (radians per position).
        period: ``2π/θ′_j`` positions.
        cycles_test: ``L′·θ′_j/(2π)``, cycles over the test length.
        repeats: the component completes more than one cycle over the test length but less than one
            over the training length (with the original ``θ_j``), so it wraps around where it never did
            in training.
    """

    theta: float
    period: float
    cycles_test: float
    repeats: bool


@dataclass(frozen=True)
class ComponentReport:
    """One rotary component of one axis.

    Attributes:
        index: ``j``, 1-indexed (RIFLEx's convention; ``θ_j = rope_frequencies(d, b)[j − 1]``).
        theta: ``θ_j = b^(−2(j−1)/d)``.
        period: ``2π/θ_j`` positions.
        cycles_train: ``L·θ_j/(2π)`` (``None`` when the axis has no training length).
        cycles_test: ``L′·θ_j/(2π)`` with the original frequency, i.e. plain extrapolation (PE).
        repeats: ``cycles_train < 1 < cycles_test`` (see :class:`RuleEffect`).
        rules: rule name -> :class:`RuleEffect` (target axis only).
    """

    index: int
    theta: float
    period: float
    cycles_train: float | None
    cycles_test: float | None
    repeats: bool
    rules: dict[str, RuleEffect] = field(default_factory=dict)


@dataclass(frozen=True)
class AxisReport:
    """Every component of one axis; lengths are ``None`` for axes other than the target."""

    name: str
    dim: int
    base: float
    train_length: float | None
    test_length: float | None
    components: tuple[ComponentReport, ...]


@dataclass(frozen=True)
class RopeReport:
    """What :func:`inspect_rope` found; :meth:`to_dict` is JSON-ready.

    Attributes:
        axes: one :class:`AxisReport` per axis.
        axis: name of the target axis (the one with lengths and rules).
        scale: ``s = L′/L``.
        rules: the rules applied to the target axis.
        k: the intrinsic component (1-indexed) or ``None`` when unknown.
        k_source: ``"preset"``, ``"given"`` or ``"repetition_length"`` (``None`` with ``k``).
        repetition_length: the observed repetition ``N`` that ``k`` was found from, if any.
        riflex_mode: ``"repo"`` (``θ′_k = 0.9·2π/L′``) or ``"paper"`` (``2π/L′``).
        yarn: ``{"alpha", "beta", "attention_factor"}``.
        temporal_compression: the VAE's ``c`` for pixel-frame figures, or ``None``.
        preset: the preset's name, or ``None``.
        notes: remarks printed under the table (e.g. why a rule was left out).
    """

    axes: tuple[AxisReport, ...]
    axis: str
    scale: float
    rules: tuple[str, ...]
    k: int | None
    k_source: str | None
    repetition_length: float | None
    riflex_mode: str
    yarn: dict[str, float]
    temporal_compression: int | None
    preset: str | None
    notes: tuple[str, ...]

    @property
    def target(self) -> AxisReport:
        """The axis the rules act on."""
        return next(a for a in self.axes if a.name == self.axis)

    @property
    def intrinsic(self) -> ComponentReport | None:
        """Component ``k`` of the target axis, or ``None`` when ``k`` is unknown."""
        return None if self.k is None else self.target.components[self.k - 1]

    def to_dict(self) -> dict[str, Any]:
        """Nested dict of plain Python values."""
        out = asdict(self)
        out["summary"] = self.summary_lines()
        return out

    def _length(self, value: float, period: bool = False) -> str:
        """A length (or, with ``period``, a duration) in latent frames, plus pixel frames when ``c`` is known."""
        text = f"{value:.1f}" if period else f"{value:g}"
        c = self.temporal_compression
        if c is None:
            return f"{text} positions"
        pixel = c * value if period else c * (value - 1) + 1
        return f"{text} latent frames ({pixel:.0f} pixel frames)"

    def summary_lines(self) -> list[str]:
        """The plain-text summary printed above the table (also stored in ``results.json``)."""
        target = self.target
        head = f"{self.preset}: " if self.preset else ""
        lines = [f"{head}axis {target.name}, rotary dim {target.dim}, base {target.base:g}, "
                 f"s = L′/L = {self.scale:.3g}",
                 f"training length L = {self._length(target.train_length)}, "
                 f"test length L′ = {self._length(target.test_length)}"]
        comp = self.intrinsic
        if comp is None:
            lines.append("intrinsic component unknown: pass k or the observed repetition length to see RIFLEx")
        else:
            if self.k_source == "repetition_length":
                source = f"closest to the observed repetition at {self.repetition_length:g}"
            else:
                source = "from the preset" if self.k_source == "preset" else "given"
            lines.append(f"intrinsic component k={self.k}, period {self._length(comp.period, period=True)}, {source}")
            lines.append(f"  {'PE':<7} {comp.cycles_train:.2f} cycles over L, {comp.cycles_test:.2f} over L′: "
                         f"{'repeats' if comp.repeats else 'no repeat'}")
            for rule, effect in comp.rules.items():
                lines.append(f"  {_LABELS[rule]:<7} period {self._length(effect.period, period=True)}, "
                             f"{effect.cycles_test:.2f} cycles over L′: {'repeats' if effect.repeats else 'no repeat'}")
        repeating = {"pe": [c.index for c in target.components if c.repeats]}
        repeating.update({r: [c.index for c in target.components if c.rules[r].repeats] for r in self.rules})
        lines.append("components that repeat (< 1 cycle over L, > 1 over L′): " + "; ".join(
            f"{_LABELS[r]} {', '.join(map(str, idx)) or 'none'}" for r, idx in repeating.items()))
        return lines + list(self.notes)

    def markdown(self) -> str:
        """``results.md``: the summary and one table per axis."""
        lines = ["# visionpe inspect rope", "", "```text", *self.summary_lines(), "```", ""]
        for axis in self.axes:
            header, rows = _axis_rows(self, axis)
            lines += [f"## axis {axis.name} (rotary dim {axis.dim}, base {axis.base:g})", "",
                      "| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
            lines += ["| " + " | ".join(cell for cell, _ in row) + " |" for row in rows]
            lines.append("")
        lines += ["Periods in positions (latent frames). Rule columns: new period (cycles over the test length). "
                  "`!` = repeats: less than one cycle over the training length, more than one over the test length. "
                  "`k` marks the intrinsic component.", ""]
        return "\n".join(lines)


def _check_length(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number of positions (latent frames) > 0, got {value!r}")
    return float(value)


def _axis_names(dims: Sequence[int], names: Sequence[str] | None) -> tuple[str, ...]:
    if names is None:
        defaults = {1: ("t",), 2: ("h", "w"), 3: ("t", "h", "w")}
        return defaults.get(len(dims), tuple(f"a{i}" for i in range(len(dims))))
    names = tuple(names)
    if len(names) != len(dims) or len(set(names)) != len(names):
        raise ValueError(f"axis_names {names} must give one distinct name per axis of dims={tuple(dims)}")
    return names


def _components(dim: int, base: float, train: float | None = None, test: float | None = None,
                new_theta: dict[str, list[float]] | None = None) -> tuple[ComponentReport, ...]:
    """Components of one axis; with lengths and the rules' new frequencies for the target axis."""
    out = []
    for j, theta in enumerate(rope_frequencies(dim, base).tolist(), start=1):
        if train is None:
            out.append(ComponentReport(j, theta, 2 * math.pi / theta, None, None, False))
            continue
        cycles_train, cycles_test = train * theta / (2 * math.pi), test * theta / (2 * math.pi)
        effects = {}
        for rule, thetas in new_theta.items():
            cycles = test * thetas[j - 1] / (2 * math.pi)
            effects[rule] = RuleEffect(thetas[j - 1], 2 * math.pi / thetas[j - 1], cycles, cycles_train < 1 < cycles)
        out.append(ComponentReport(j, theta, 2 * math.pi / theta, cycles_train, cycles_test,
                                   cycles_train < 1 < cycles_test, effects))
    return tuple(out)


def inspect_rope(
    dims: Sequence[int],
    base: float | Sequence[float],
    train_length: float,
    test_length: float | None = None,
    repetition_length: float | None = None,
    k: int | None = None,
    axis_names: Sequence[str] | None = None,
    axis: str | None = None,
    rules: Sequence[str] = RULES,
    riflex_mode: str = "repo",
    yarn_alpha: float = 1.0,
    yarn_beta: float = 32.0,
    temporal_compression: int | None = None,
    preset: str | None = None,
) -> RopeReport:
    """Frequencies, periods and cycles of every component, and what each rule does on the target axis.

    Args:
        dims: one even rotary dim per axis, e.g. ``(16, 56, 56)``; the target axis needs >= 2.
        base: the RoPE base, one for every axis or one per axis.
        train_length: ``L``, training length of the target axis in positions (latent frames).
        test_length: ``L′`` (default ``2·L``).
        repetition_length: the observed first repetition ``N`` (positions); ``k`` becomes the component
            with the closest period (RIFLEx Eq. 7).
        k: the intrinsic component, 1-indexed (at most one of ``k`` and ``repetition_length``).  Without
            either, RIFLEx is left out and a note says so.
        axis_names: one name per axis (default ``t, h, w`` for 3 axes, ``h, w`` for 2, ``t`` for 1).
        axis: the target axis by name (default ``"t"`` if there is one, else the first axis).
        rules: any of :data:`RULES`.
        riflex_mode: ``"repo"`` (official code, ``θ′_k = 0.9·2π/L′``) or ``"paper"`` (``2π/L′``).
        yarn_alpha, yarn_beta: YaRN ramp ends in rotations (:class:`visionpe.scaling.YaRN`).
        temporal_compression: VAE temporal compression ``c`` (>= 1) to also show pixel frames.
        preset: a name to show in the report (set by :func:`inspect_preset`).

    Raises:
        ValueError: odd or negative dims, a per-axis base of the wrong length, a non-positive base or
            length, an unknown axis or rule, ``k`` outside ``1 … d/2``, or both ``k`` and
            ``repetition_length``.
    """
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence) or not dims:
        raise ValueError(f"dims must be a non-empty sequence with one even rotary dim per axis, got {dims!r}")
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int) or d < 0 or d % 2:
            raise ValueError(f"every rotary dim must be an even int >= 0, got dims={tuple(dims)}; rotary channels "
                             f"come in pairs, so use e.g. 16 instead of 15")
    names = _axis_names(dims, axis_names)
    bases = tuple(base) if isinstance(base, Sequence) and not isinstance(base, (str, bytes)) else (base,) * len(dims)
    if len(bases) != len(dims):
        raise ValueError(f"base has {len(bases)} values for {len(dims)} axes; give one base or one per axis")
    for b in bases:
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b <= 1:
            raise ValueError(f"every base must be a finite number > 1, got base={bases}")
    if axis is None:
        axis = "t" if "t" in names else names[0]
    if axis not in names:
        raise ValueError(f"unknown axis {axis!r}; the axes are {', '.join(names)}")
    target = names.index(axis)
    dim, target_base = dims[target], float(bases[target])
    if dim < 2:
        raise ValueError(f"the target axis {axis!r} has rotary dim {dim}; pick an axis with channels (--axis)")
    train = _check_length("train_length", train_length)
    test = 2 * train if test_length is None else _check_length("test_length", test_length)
    unknown = [r for r in rules if r not in RULES]
    if unknown or len(set(rules)) != len(rules):
        raise ValueError(f"rules must be distinct names from {', '.join(RULES)}, got {list(rules)}")
    if riflex_mode not in _RIFLEX_MODES:
        raise ValueError(f"unknown RIFLEx mode {riflex_mode!r}; valid modes: {', '.join(_RIFLEX_MODES)}")
    if temporal_compression is not None and (isinstance(temporal_compression, bool)
                                             or not isinstance(temporal_compression, int) or temporal_compression < 1):
        raise ValueError(f"temporal_compression must be an integer >= 1 (4 for HunyuanVideo, CogVideoX and Wan), "
                         f"got {temporal_compression!r}")
    k_source = None
    if k is not None and repetition_length is not None:
        raise ValueError("give either k (the intrinsic component) or repetition_length (to find k from), not both")
    if repetition_length is not None:
        k = find_intrinsic_component(dim, target_base, _check_length("repetition_length", repetition_length))[0]
        k_source = "repetition_length"
    elif k is not None:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= dim // 2:
            raise ValueError(f"k={k!r} is out of range for rotary dim {dim} on axis {axis!r}: valid k are "
                             f"1..{dim // 2} (1-indexed)")
        k_source = "given"
    notes = []
    rules = tuple(rules)
    if "riflex" in rules and k is None:
        rules = tuple(r for r in rules if r != "riflex")
        notes.append("RIFLEx left out: it needs k or the repetition length")
    scale = test / train
    built = {r: length_rule(r, train, test, k, riflex_mode, yarn_alpha, yarn_beta) for r in rules}
    new_theta = {r: rule.frequencies(dim, target_base).tolist() for r, rule in built.items()}
    if "riflex" in rules and 2 * math.pi / float(rope_frequencies(dim, target_base)[k - 1]) >= test:
        notes.append(f"RIFLEx changes nothing: the period of k={k} is already at least the test length {test:g}")
    axes = tuple(AxisReport(name, d, float(b), train, test, _components(d, b, train, test, new_theta))
                 if a == target else AxisReport(name, d, float(b), None, None, _components(d, b))
                 for a, (name, d, b) in enumerate(zip(names, dims, bases)))
    yarn = {"alpha": float(yarn_alpha), "beta": float(yarn_beta),
            "attention_factor": YaRN(scale, train, alpha=yarn_alpha, beta=yarn_beta).attention_factor}
    return RopeReport(axes, axis, scale, rules, k, k_source,
                      None if repetition_length is None else float(repetition_length), riflex_mode, yarn,
                      temporal_compression, preset, tuple(notes))


def inspect_preset(name: str, test_length: float | None = None, train_length: float | None = None,
                   **kwargs: Any) -> RopeReport:
    """:func:`inspect_rope` for a model in :data:`visionpe.scaling.RIFLEX_PRESETS`.

    The preset gives the dims, base, training length (latent frames), temporal axis ``t``, ``k`` and
    the VAE's temporal compression (:data:`VAE_TEMPORAL_COMPRESSION`); ``test_length`` defaults to
    twice the training length.  ``k=...`` or ``repetition_length=...`` replace the preset's ``k``; other
    keyword arguments go to :func:`inspect_rope`.

    Raises:
        ValueError: for an unknown preset (the message lists the valid ones).
    """
    if name not in RIFLEX_PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(RIFLEX_PRESETS)}")
    preset = RIFLEX_PRESETS[name]
    from_preset = kwargs.get("k") is None and kwargs.get("repetition_length") is None
    if from_preset:
        kwargs["k"] = preset.k
    if kwargs.get("temporal_compression") is None:
        kwargs["temporal_compression"] = VAE_TEMPORAL_COMPRESSION[name]
    train = preset.train_length if train_length is None else train_length
    report = inspect_rope(preset.dims, preset.base, train, test_length, axis_names=("t", "h", "w"), axis="t",
                          preset=name, **kwargs)
    return replace(report, k_source="preset") if from_preset else report


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _axis_rows(report: RopeReport, axis: AxisReport) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """Header and rows ``[(cell text, repeats?)]`` of one axis' table."""
    if axis.train_length is None:
        return ["j", "θ_j", "period"], [[(str(c.index), False), (_fmt(c.theta), False), (_fmt(c.period), False)]
                                        for c in axis.components]
    header = ["j", "θ_j", "period", "cycles L", "cycles L′"] + [_LABELS[r] for r in report.rules]
    rows = []
    for c in axis.components:
        row = [(f"{c.index}{' k' if c.index == report.k else ''}", False), (_fmt(c.theta), False),
               (_fmt(c.period), False), (f"{c.cycles_train:.3g}", False),
               (f"{c.cycles_test:.3g}{' !' if c.repeats else ''}", c.repeats)]
        for r in report.rules:
            e = c.rules[r]
            row.append((f"{_fmt(e.period)} ({e.cycles_test:.3g}){' !' if e.repeats else ''}", e.repeats))
        rows.append(row)
    return header, rows


def _rich_table(report: RopeReport, axis: AxisReport) -> Table:
    header, rows = _axis_rows(report, axis)
    title = f"axis {axis.name}: rotary dim {axis.dim}, base {axis.base:g}"
    if axis.train_length is not None:
        title += f", L = {axis.train_length:g}, L′ = {axis.test_length:g}"
    table = Table(title=title)
    for col in header:
        table.add_column(col, justify="right")
    for c, row in zip(axis.components, rows):
        table.add_row(*(f"[red]{text}[/red]" if repeats else text for text, repeats in row),
                      style="bold" if axis.train_length is not None and c.index == report.k else None)
    return table


def plot_report(report: RopeReport, path: str | Path) -> Path:
    """PNG of the target axis: period per component (log scale) under PE and each rule, ``L`` and ``L′`` marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = report.target
    index = [c.index for c in target.components]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for rule, marker in zip(report.rules, "s^vD"):
        ax.plot(index, [c.rules[rule].period for c in target.components], marker=marker, ms=4.5, lw=1,
                label=_LABELS[rule])
    ax.plot(index, [c.period for c in target.components], marker="o", ms=3, lw=1.5, color="black", label="PE",
            zorder=5)
    ax.axhline(target.train_length, color="0.4", ls="--", lw=1, label=f"training length L = {target.train_length:g}")
    ax.axhline(target.test_length, color="tab:red", ls=":", lw=1.2, label=f"test length L′ = {target.test_length:g}")
    if report.k is not None:
        ax.axvline(report.k, color="0.6", ls="-.", lw=1, label=f"intrinsic component k = {report.k}")
    ax.set_yscale("log")
    ax.set_xticks(index)
    ax.set_xlabel(f"component j (axis {target.name}, rotary dim {target.dim}, base {target.base:g})")
    ax.set_ylabel(r"period $2\pi/\theta_j$ (positions)")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(f"{report.preset or 'RoPE'}, axis {target.name}: periods from L = {target.train_length:g} "
                 f"to L′ = {target.test_length:g} (s = {report.scale:.3g})")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")
    finally:
        plt.close(fig)


def _rules_arg(text: str) -> list[str]:
    names = [r.strip().lower() for r in text.split(",") if r.strip()]
    if names == ["all"]:
        return list(RULES)
    if names == ["none"]:
        return []
    unknown = [r for r in names if r not in RULES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown rules {unknown}; use a comma-separated subset of "
                                         f"{','.join(RULES)}, 'all' or 'none'")
    return names


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``inspect`` command group with its ``rope`` subcommand (handler :func:`run_inspect_rope`)."""
    group = subparsers.add_parser("inspect", help="look inside positional embeddings").add_subparsers(
        dest="what", required=True)
    p = group.add_parser("rope", help="periods of every RoPE component and what each scaling rule does to them",
                         description="Per axis and component: the frequency, the period, the cycles over the training "
                                     "and test lengths, RIFLEx's intrinsic component, and the new periods under PI, "
                                     "NTK, YaRN and RIFLEx on the target axis. Lengths are in latent frames.")
    p.add_argument("--preset", default=None, help=f"a video DiT: {', '.join(RIFLEX_PRESETS)} (dims, base, training "
                                                  f"length and k from the RIFLEx paper/code)")
    p.add_argument("--dims", nargs="+", type=int, default=None, help="rotary dim per axis, e.g. 16 56 56 (instead of "
                                                                     "--preset)")
    p.add_argument("--base", nargs="+", type=float, default=None, help="RoPE base, one or one per axis "
                                                                       "(default 10000 with --dims)")
    p.add_argument("--axis-names", nargs="+", default=None, help="axis names (default t h w for 3 axes)")
    p.add_argument("--train-length", type=float, default=None, help="training length of the target axis in latent "
                                                                    "frames (required with --dims)")
    p.add_argument("--test-length", type=float, default=None, help="test length in latent frames (default 2x train)")
    p.add_argument("--repetition-length", type=float, default=None,
                   help="observed first repetition N in latent frames; k = the component with the closest period")
    p.add_argument("--k", type=int, default=None, help="intrinsic component, 1-indexed (default: the preset's)")
    p.add_argument("--axis", default=None, help="axis the rules act on (default t)")
    p.add_argument("--rules", type=_rules_arg, default=list(RULES),
                   help=f"comma-separated rules (default all: {','.join(RULES)}), or none")
    p.add_argument("--riflex-mode", choices=list(_RIFLEX_MODES), default="repo",
                   help="RIFLEx θ′_k = 0.9·2π/L′ (repo, default) or 2π/L′ (paper)")
    p.add_argument("--yarn-alpha", type=float, default=1.0, help="YaRN ramp start in rotations (default 1)")
    p.add_argument("--yarn-beta", type=float, default=32.0, help="YaRN ramp end in rotations (default 32)")
    p.add_argument("--temporal-compression", type=int, default=None,
                   help="VAE temporal compression c to also show pixel frames (default 4 for the presets)")
    p.add_argument("--all-axes", action="store_true", help="print the tables of the other axes too")
    p.add_argument("--no-table", action="store_true", help="print only the summary")
    p.add_argument("--out", default=None, help="directory for results.json, results.md and results.png")
    p.add_argument("--no-plot", action="store_true", help="with --out: skip results.png")
    p.set_defaults(func=run_inspect_rope)


def report_from_args(args: argparse.Namespace) -> RopeReport:
    """The :class:`RopeReport` that ``visionpe inspect rope`` arguments ask for."""
    common = {"test_length": args.test_length, "repetition_length": args.repetition_length, "rules": args.rules,
              "riflex_mode": args.riflex_mode, "yarn_alpha": args.yarn_alpha, "yarn_beta": args.yarn_beta}
    if args.temporal_compression is not None:
        common["temporal_compression"] = args.temporal_compression
    if args.preset is not None:
        custom = (args.dims, args.base, args.axis_names)
        if any(v is not None for v in custom) or args.axis not in (None, "t"):
            raise ValueError("--preset sets the dims, base and axes; drop --dims/--base/--axis-names/--axis or drop "
                             "--preset")
        if args.k is not None:
            common["k"] = args.k
        return inspect_preset(args.preset, train_length=args.train_length, **common)
    if args.dims is None:
        raise ValueError(f"give --preset ({', '.join(RIFLEX_PRESETS)}) or --dims with --train-length")
    if args.train_length is None:
        raise ValueError("--dims needs --train-length, the training length of the target axis in latent frames")
    base = [10000.0] if args.base is None else args.base
    return inspect_rope(args.dims, base[0] if len(base) == 1 else base, args.train_length, k=args.k,
                        axis_names=args.axis_names, axis=args.axis, **common)


def run_inspect_rope(args: argparse.Namespace, console: Console) -> int:
    """Handler of ``visionpe inspect rope``: print the summary and tables, write ``--out``; returns 0.

    Raises:
        ValueError: for invalid arguments (the ``visionpe`` entry point turns it into exit code 2).
    """
    report = report_from_args(args)
    for line in report.summary_lines():
        console.print(line, markup=False, highlight=False)
    if not args.no_table:
        for axis in report.axes:
            if axis.name == report.axis or args.all_axes:
                console.print(_rich_table(report, axis))
        console.print("rule columns: new period (cycles over L′); ! = repeats (< 1 cycle over L, > 1 over L′); "
                      "k = intrinsic component", markup=False, highlight=False)
    if args.out:
        out = Path(args.out)
        written = [write_json(out / "results.json", report.to_dict()),
                   write_text(out / "results.md", report.markdown())]
        if not args.no_plot:
            written.append(plot_report(report, out / "results.png"))
        console.print(f"wrote {', '.join(str(p) for p in written)}", markup=False, highlight=False)
    return 0
