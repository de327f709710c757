"""Length extrapolation of a trained video DiT: sample longer videos under each RoPE rule and measure them.

For a model trained on ``L`` frames and a test length ``L′`` (``s = L′/L``), the temporal axis of its
``rope-axial`` PE gets one rule (:func:`temporal_rule`):

=========  =================================================================================
rule       temporal RoPE at ``L′`` frames
=========  =================================================================================
none       plain extrapolation: integer positions ``0 … L′−1``, training frequencies
pi         :class:`~visionpe.scaling.PI` ``(s)``: every frequency divided by ``s``
ntk        :class:`~visionpe.scaling.NTK` ``(s)``: base raised to ``base·s^(d/(d−2))``
yarn       :class:`~visionpe.scaling.YaRN` ``(s, L)`` with the LLM ramp (α = 1, β = 32 rotations)
riflex     :class:`~visionpe.scaling.RIFLEx` ``(L′, k)``: only the intrinsic component ``k`` slowed
=========  =================================================================================

RIFLEx's ``k`` is given, or found as in the paper (Eq. 7): generate videos with plain extrapolation
at the longest test length, take the median first-repetition frame ``N`` of those videos, and pick
the component whose period is closest to ``N`` (:func:`visionpe.scaling.find_intrinsic_component`),
among the components whose period is longer than the training length: a component that completes a
cycle within the training clips was seen wrapping around in training and is not what extrapolation
breaks (every RIFLEx preset has ``N_k > L``).  Small models' videos return near their first frame
early by chance (bouncing objects), and unrestricted Eq. 7 then picks the fastest component; the
unrestricted answer is kept as ``eq7_k`` in the results.

Every (rule, length) uses the same initial noise (seed ``seed + i`` for video ``i``), so rules are
compared on paired samples.  Metrics come from :mod:`visionpe.video_metrics`.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .results import atomic_write, summarize, write_json, write_text
from .rope import AxialRoPE
from .scaling import LENGTH_RULES as RULES
from .scaling import find_intrinsic_component, length_rule, rope_frequencies
from .training.video_diffusion import VideoDiffusionModule
from .video_metrics import first_repetition_frame, video_report

__all__ = ["RULES", "REFERENCE_SEED", "LengthEvalConfig", "estimate_intrinsic_component", "evaluate_length",
           "evaluate_video_folder", "generate_rule_videos", "reference_clips", "temporal_rule",
           "write_length_reports"]

#: seed of the ground-truth procedural clips every length is measured against (no training seed uses it)
REFERENCE_SEED = 54321
#: NoRepeat threshold = this percentile of the ground-truth clips' NoRepeat distance at the same length
NOREPEAT_PERCENTILE = 5.0


def temporal_rule(name: str, train_frames: int, test_frames: int, k: int | None = None, riflex_mode: str = "repo",
                  yarn_alpha: float = 1.0, yarn_beta: float = 32.0):
    """The :mod:`visionpe.scaling` rule ``name`` for going from ``train_frames`` to ``test_frames`` positions.

    Returns ``None`` for ``"none"`` (plain extrapolation).  ``"riflex"`` needs ``k``.
    """
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; use one of {', '.join(RULES)}")
    if name == "none":
        return None
    if name == "riflex" and k is None:
        raise ValueError("the RIFLEx rule needs k, the intrinsic component (1-indexed); pass k or let the "
                         "evaluation estimate it from plain-extrapolation samples")
    return length_rule(name, train_frames, test_frames, k, riflex_mode, yarn_alpha, yarn_beta)


@dataclass
class LengthEvalConfig:
    """What to generate: lengths in frames, rules, how many videos and sampler steps."""

    test_frames: list[int] = field(default_factory=lambda: [16, 32, 48])
    rules: list[str] = field(default_factory=lambda: list(RULES))
    num_videos: int = 32
    sample_steps: int = 25
    seed: int = 1000
    k: int | None = None
    riflex_mode: str = "repo"
    yarn_alpha: float = 1.0
    yarn_beta: float = 32.0
    batch_size: int = 16
    #: keywords of :class:`~visionpe.data.video_procedural.ProceduralVideoDataset` for the ground-truth
    #: clips: the training clips' scene (``VideoDataModule.scene``); empty for its defaults
    scene: dict = field(default_factory=dict)

    def check(self, module: VideoDiffusionModule) -> None:
        """Raise ``ValueError`` for settings the model cannot run (names the fix)."""
        unknown = [r for r in self.rules if r not in RULES]
        if unknown:
            raise ValueError(f"unknown rules {unknown}; use any of {', '.join(RULES)}")
        if not self.test_frames or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in self.test_frames):
            raise ValueError(f"test frame counts must be a non-empty list of positive ints, got {self.test_frames}")
        for name, value in (("num_videos", self.num_videos), ("sample_steps", self.sample_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        model = module.sampling_model
        t, h, w = model.video_size
        for frames in self.test_frames:
            model.grid_for((frames, h, w))
        if any(r != "none" for r in self.rules) and not isinstance(model.pe, AxialRoPE):
            raise ValueError(f"the rules {[r for r in self.rules if r != 'none']} change a rotary PE, but this model "
                             f"uses {model.pe_name!r}; evaluate it with --rules none")
        if isinstance(model.pe, AxialRoPE) and model.pe.dims[0] == 0:
            raise ValueError("this model's RoPE gives the temporal axis no channels (dims[0] = 0), so no rule can "
                             "act on time; train with a split such as dims=(8, 12, 12)")
        unknown = sorted(set(self.scene) - {"fps", "num_objects", "speed", "radius", "noise_std", "shapes", "palette"})
        if unknown:
            raise ValueError(f"unknown scene parameters {unknown}; the ground-truth clips take fps, num_objects, "
                             f"speed, radius, noise_std, shapes and palette")
        from .data.video_procedural import ProceduralVideoDataset

        ProceduralVideoDataset(1, 1, (h, w), REFERENCE_SEED, **self.scene)   # bad values fail here, not after sampling
        if self.k is not None and isinstance(model.pe, AxialRoPE) and not 1 <= self.k <= model.pe.dims[0] // 2:
            raise ValueError(f"k={self.k} is out of range for the temporal rotary dim {model.pe.dims[0]}: "
                             f"valid k are 1..{model.pe.dims[0] // 2}")

    def as_dict(self) -> dict:
        return asdict(self)


def estimate_intrinsic_component(repetition_frames: Sequence[int], dim: int, base: float) -> dict:
    """RIFLEx Eq. 7 from observed first repetitions (one per plain-extrapolation video, in latent frames).

    Returns:
        ``{"repetition_frame": median N, "k": component, "period": its period, "observed": list}``.
    """
    if not repetition_frames:
        raise ValueError("no repetition frames to estimate k from; generate plain-extrapolation videos first")
    median = float(statistics.median(repetition_frames))
    k, period = find_intrinsic_component(dim, base, median)
    return {"repetition_frame": median, "k": k, "period": period, "observed": [int(n) for n in repetition_frames]}


def generate_rule_videos(module: VideoDiffusionModule, cfg: LengthEvalConfig, k: int | None,
                         frames: int, rule: str, progress: bool = False) -> Tensor:
    """``cfg.num_videos`` videos ``(N, C, frames, H, W)`` in ``[0, 1]`` under ``rule`` on the temporal axis."""
    train_frames = module.model.grid[0] * module.model.patch_size[0]
    scaling = None
    if rule != "none" and frames != train_frames:
        pt = module.model.patch_size[0]
        scaling = (temporal_rule(rule, train_frames // pt, frames // pt, k, cfg.riflex_mode, cfg.yarn_alpha,
                                 cfg.yarn_beta), None, None)
    with torch.inference_mode():
        return module.sample(cfg.num_videos, num_frames=frames, scaling=scaling, num_steps=cfg.sample_steps,
                             seed=cfg.seed, batch_size=cfg.batch_size, progress=progress)


def reference_clips(num_videos: int, frames: int, size: Sequence[int], seed: int = REFERENCE_SEED,
                    scene: dict | None = None) -> Tensor:
    """Ground-truth procedural clips ``(num_videos, 3, frames, H, W)`` in ``[0, 1]``, from the training distribution.

    ``scene`` holds the training clips' scene keywords (``fps``, ``num_objects``, ``speed``, ``radius``,
    ``noise_std``, ``shapes``, ``palette``; see :class:`~visionpe.data.video_procedural.ProceduralVideoDataset`), the defaults
    when ``None``.  The scenes are continuous, so a clip of any length is a fresh rendering (no
    looping, no resampling).
    """
    from .data.video_procedural import ProceduralVideoDataset

    dataset = ProceduralVideoDataset(num_videos, frames, tuple(size), seed, **(scene or {}))
    return torch.stack([dataset.render(i) for i in range(num_videos)])


def _window_exists(period: float, frames: int) -> bool:
    """Whether NoRepeat's search window ``period ± period/4`` holds a frame of a ``frames``-frame video."""
    return max(1, math.ceil(period - period / 4)) <= min(frames - 1, math.floor(period + period / 4))


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one :func:`~visionpe.video_metrics.video_report` that the tables and plots use."""
    quality = report["quality"]
    dynamic = report["dynamic_degree"]
    curves = [v["pair_magnitudes"] for v in dynamic["videos"]]
    beyond = quality["summary"]["sharpness_ratio"].get("beyond_train")
    out = {
        "num_videos": report["num_videos"],
        "first_repetition": report["first_repetition"]["median"],
        "motion": dynamic["mean_motion"], "top_motion": dynamic["top_motion"], "dynamic": dynamic["score"],
        "warp_error": report["temporal_consistency"]["warp_error"], "ssim": report["temporal_consistency"]["ssim"],
        "sharpness_ratio": quality["summary"]["sharpness_ratio"]["all"], "sharpness_ratio_beyond": beyond,
        "histogram_distance": quality["summary"]["histogram_distance"]["all"],
        "histogram_distance_beyond": quality["summary"]["histogram_distance"].get("beyond_train"),
        "norepeat": None, "norepeat_threshold": None,
        "curves": {"top_motion": [_mean([c[t] for c in curves if t < len(c)]) for t in range(max(map(len, curves)))],
                   "sharpness_ratio": quality["per_frame"]["sharpness_ratio"],
                   "histogram_distance": quality["per_frame"]["histogram_distance"],
                   "distance_to_first": report["distance_to_first"]},
    }
    if "norepeat" in report:
        out["norepeat"] = report["norepeat"]["score"]
        out["norepeat_threshold"] = report["norepeat"]["threshold"]
        out["norepeat_sensitivity"] = report["norepeat"]["sensitivity"]
    return out


def _norepeat_threshold(reference: Tensor, period: float) -> float:
    """The :data:`NOREPEAT_PERCENTILE` percentile of the ground-truth clips' NoRepeat distances."""
    from .video_metrics import norepeat_score

    distances = [v["mean_distance"] for v in norepeat_score(reference, period, threshold=1.0)["videos"]]
    return float(np.percentile(distances, NOREPEAT_PERCENTILE))


def _intrinsic(cfg: LengthEvalConfig, rope: AxialRoPE, train_latent: int, pt: int,
               none_longest: Tensor | None) -> dict[str, Any]:
    """RIFLEx's ``k`` for the temporal axis: given, estimated from plain extrapolation (Eq. 7), or the prior."""
    dim, base = rope.dims[0], rope.bases[0]
    periods = (2 * math.pi / rope_frequencies(dim, base)).tolist()
    info: dict[str, Any] = {"dim": dim, "base": base, "periods": periods}
    if cfg.k is not None:
        return {**info, "k": cfg.k, "period": periods[cfg.k - 1], "source": "given"}
    firsts = [first_repetition_frame(v) for v in none_longest]
    found = [f / pt for f in firsts if f is not None]
    beyond = [j for j, p in enumerate(periods) if p > train_latent]
    if found and beyond:
        est = estimate_intrinsic_component(found, dim, base)
        median = est["repetition_frame"]
        k = min(beyond, key=lambda j: abs(periods[j] - median)) + 1
        return {**info, "k": k, "period": periods[k - 1], "repetition_frame": median, "observed": est["observed"],
                "eq7_k": est["k"],
                "source": f"estimated (RIFLEx Eq. 7 over the components with a period beyond the {train_latent} "
                          f"training frames): median first repetition {median:g} of {len(found)} of {len(firsts)} "
                          f"plain-extrapolation videos at {none_longest.shape[2]} frames"}
    k = beyond[0] + 1 if beyond else len(periods)
    return {**info, "k": k, "period": periods[k - 1], "observed": [],
            "source": "no plain-extrapolation video came back to its first frame, so k is the component with the "
                      "shortest period beyond the training length"}


def evaluate_length(module: VideoDiffusionModule, cfg: LengthEvalConfig, out_dir: str | Path, progress=None,
                    sample_grids: bool = True) -> dict[str, Any]:
    """Sample ``module`` at every length of ``cfg`` under every rule and measure the videos.

    Order: plain extrapolation (``none``) at the longest length first, RIFLEx's ``k`` from it (unless
    ``cfg.k``), then every (rule, length).  At the training length every rule is the identity, so the
    ``none`` videos stand for all of them.  Ground-truth procedural clips (:func:`reference_clips`) of
    each length are measured the same way (row ``ground truth``); they also set the NoRepeat threshold
    (the :data:`NOREPEAT_PERCENTILE` percentile of their NoRepeat distances, since the paper's 100 has
    no stated scale) and the quality reference (clips of the training length).

    Args:
        module: a trained video DiT module.
        cfg: lengths, rules, number of videos, sampler steps, seed, ``k``.
        out_dir: where ``samples/`` (GIF grids and filmstrips) go when ``sample_grids``.
        progress: a ``rich.progress.Progress`` to add a task to, or ``None``.
        sample_grids: write ``samples/length<T>.gif`` (4 videos per rule, ground truth on top) and
            ``samples/filmstrip-length<T>.png`` (video 0 per rule) for every test length.

    Returns:
        ``{"train_frames", "temporal_patch", "size", "rope", "k", "period_frames", "lengths", "rules",
        "config", "metrics": {method: {str(T): summary}}}`` (JSON-ready); ``method`` is a rule or
        ``"ground truth"``.
    """
    cfg.check(module)
    model = module.sampling_model
    pt = model.patch_size[0]
    train_frames = model.video_size[0]
    size = tuple(model.video_size[1:])
    lengths = sorted(set(cfg.test_frames))
    rope = model.pe if isinstance(model.pe, AxialRoPE) else None
    jobs = [("none", lengths[-1])]          # plain extrapolation first: it sets k
    for t in lengths:
        for r in cfg.rules:
            job = ("none" if t == train_frames else r, t)   # at the training length every rule is the identity
            if job not in jobs:
                jobs.append(job)
    task = progress.add_task("  sampling", total=len(jobs)) if progress is not None else None
    videos: dict[tuple[str, int], Tensor] = {}

    def sample(rule: str, frames: int, k: int | None) -> Tensor:
        if progress is not None:
            progress.update(task, description=f"  sampling {rule} at {frames} frames")
        out = generate_rule_videos(module, cfg, k, frames, rule)
        if progress is not None:
            progress.advance(task)
        return out

    videos[jobs[0]] = sample(*jobs[0], None)
    if rope is not None:
        intrinsic = _intrinsic(cfg, rope, train_frames // pt, pt, videos[("none", lengths[-1])])
        period = intrinsic["period"] * pt
    else:
        intrinsic = None
        firsts = [f for f in (first_repetition_frame(v) for v in videos[("none", lengths[-1])]) if f is not None]
        period = float(statistics.median(firsts)) if firsts else None
    k = None if intrinsic is None else intrinsic["k"]
    for rule, frames in jobs:
        if (rule, frames) not in videos:
            videos[(rule, frames)] = sample(rule, frames, k)
    if progress is not None:
        progress.remove_task(task)

    # one rendering at the longest length serves every length: a shorter clip is its prefix
    clips = reference_clips(cfg.num_videos, max(lengths[-1], train_frames), size, scene=cfg.scene)
    quality_reference = clips[:, :, :train_frames]
    metrics: dict[str, dict[str, Any]] = {}
    for frames in lengths:
        truth = clips[:, :, :frames]
        use_period = period if period is not None and _window_exists(period, frames) else None
        threshold = _norepeat_threshold(truth, use_period) if use_period is not None else 100.0
        kwargs = dict(reference=quality_reference, period=use_period, train_length=train_frames,
                      threshold=threshold)
        metrics.setdefault("ground truth", {})[str(frames)] = _summary(video_report(truth, **kwargs))
        for rule in cfg.rules:
            made = videos[(rule if frames != train_frames else "none", frames)]
            metrics.setdefault(rule, {})[str(frames)] = _summary(video_report(made, **kwargs))
        if sample_grids:
            _save_samples(Path(out_dir) / "samples", frames, truth, {r: videos[(r if frames != train_frames else "none",
                                                                              frames)] for r in cfg.rules})
    return {"train_frames": train_frames, "temporal_patch": pt, "size": list(size), "rope": intrinsic,
            "k": k, "period_frames": period, "lengths": lengths, "rules": list(cfg.rules), "config": cfg.as_dict(),
            "metrics": metrics}


def _save_samples(folder: Path, frames: int, truth: Tensor, by_rule: dict[str, Tensor], per_row: int = 4) -> None:
    from .video_io import save_filmstrip, save_video_grid

    n = min(per_row, len(truth))
    labels = ["truth", *by_rule]
    grid = torch.cat([truth[:n], *(v[:n] for v in by_rule.values())])
    save_video_grid(grid, folder / f"length{frames}.gif", nrow=n, row_labels=labels)
    strip = torch.cat([truth[:1], *(v[:1] for v in by_rule.values())])
    save_filmstrip(strip, folder / f"filmstrip-length{frames}.png", every=max(1, round(frames / 24)),
                   row_labels=labels)


def evaluate_video_folder(folder: str | Path, period: float | None = None, train_frames: int | None = None,
                          threshold: float = 100.0, progress: bool = False) -> dict[str, Any]:
    """Measure existing videos (e.g. from a diffusers pipeline) with the metrics of :func:`evaluate_length`.

    Args:
        folder: videos directly in it (one method, ``"videos"``) or one sub-folder per method (e.g.
            ``none/``, ``riflex/``); any format decord or PyAV reads.
        period: intrinsic period in frames for NoRepeat (e.g. ``4·N_k`` for a VAE with temporal
            compression 4); ``None`` skips NoRepeat.
        train_frames: the model's training length in frames; quality is then also split within/beyond
            it, with each video's first ``train_frames`` frames as its own reference.
        threshold: NoRepeat threshold (the paper's 100 on 0–255 RGB; calibrate it on real clips).
        progress: show a progress bar over the videos.

    Returns:
        A record like :func:`evaluate_length`'s, with ``metrics[method][str(T)]`` for each frame count ``T``.
    """
    from rich.progress import track

    from .data.video_folder import count_frames, find_videos, read_frames

    paths, labels, classes = find_videos(folder)
    methods = classes or ["videos"]
    groups: dict[tuple[str, int], list[np.ndarray]] = {}
    for path, label in track(list(zip(paths, labels)), description="reading videos", disable=not progress):
        total, _ = count_frames(path)
        if total < 2:
            raise ValueError(f"{path} has {total} frame(s); motion and repetition need at least 2 frames")
        frames, _ = read_frames(path, np.arange(total))
        groups.setdefault((methods[label], len(frames)), []).append(frames)
    metrics: dict[str, dict[str, Any]] = {}
    for (method, frames), vids in track(sorted(groups.items()), description="measuring", disable=not progress):
        use_period = period if period is not None and _window_exists(period, frames) else None
        report = video_report(vids, period=use_period, train_length=train_frames, threshold=threshold)
        metrics.setdefault(method, {})[str(frames)] = _summary(report)
    return {"train_frames": train_frames, "period_frames": period, "lengths": sorted({t for _, t in groups}),
            "rules": methods, "metrics": metrics, "folder": str(folder)}


#: (key in a summary, table title, format of one value, whether higher is better)
REPORT_METRICS: tuple[tuple[str, str, str, bool | None], ...] = (
    ("norepeat", "NoRepeat score (% of videos that do not repeat at the intrinsic period)", "{:.0f}", True),
    ("first_repetition", "first repetition (median frame where a video returns to its first frame)", "{:.1f}", None),
    ("motion", "motion (mean optical-flow magnitude, px/frame)", "{:.3f}", None),
    ("dynamic", "dynamic degree (% of videos with VBench-style large motion)", "{:.0f}", True),
    ("warp_error", "temporal consistency: flow warp error (RMS, 0-255)", "{:.2f}", False),
    ("ssim", "temporal consistency: SSIM of consecutive frames", "{:.3f}", True),
    ("sharpness_ratio_beyond", "sharpness beyond the training length (ratio to ground-truth frames)", "{:.2f}", None),
    ("histogram_distance_beyond", "colour histogram distance beyond the training length (Bhattacharyya)", "{:.3f}",
     False),
)


def _aggregate(records: Sequence[dict[str, Any]]) -> tuple[list[str], list[int], dict]:
    """Methods, lengths and ``summary[method][T][metric] = {"mean", "std", "n"}`` over the records."""
    methods: list[str] = []
    for record in records:
        for method in record["metrics"]:
            if method not in methods:
                methods.append(method)
    if "ground truth" in methods:
        methods.remove("ground truth")
        methods.append("ground truth")
    lengths = sorted({int(t) for record in records for per in record["metrics"].values() for t in per})
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for method in methods:
        for t in lengths:
            cells = [r["metrics"][method][str(t)] for r in records if str(t) in r["metrics"].get(method, {})]
            if not cells:
                continue
            stats = {}
            for key, *_ in REPORT_METRICS:
                values = [c[key] for c in cells if c.get(key) is not None]
                if values:
                    stats[key] = summarize(values)
            curves = {}
            for key in cells[0]["curves"]:
                per_frame = [c["curves"][key] for c in cells]
                curves[key] = [_mean([p[i] for p in per_frame if i < len(p)])
                               for i in range(max(map(len, per_frame)))]
            stats["curves"] = curves
            summary.setdefault(method, {})[str(t)] = stats
    return methods, lengths, summary


def _table(summary: dict, methods: list[str], lengths: list[int], key: str, title: str, fmt: str,
           train_frames: int | None) -> str:
    header = [f"{t}*" if t == train_frames else str(t) for t in lengths]
    lines = [f"### {title}", "", "| method | " + " | ".join(header) + " |", "|---|" + "---:|" * len(lengths)]
    for method in methods:
        cells = []
        for t in lengths:
            stats = summary.get(method, {}).get(str(t), {}).get(key)
            if stats is None:
                cells.append("–")
            elif stats["n"] > 1:
                cells.append(f"{fmt.format(stats['mean'])} ± {fmt.format(stats['std'])}")
            else:
                cells.append(fmt.format(stats["mean"]))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_length_reports(out: str | Path, records: Sequence[dict[str, Any]], config: dict[str, Any],
                         train_frames: int | None) -> dict[str, Any]:
    """Write ``results.json``, ``results.md`` and ``results.png`` / ``results-frames.png`` atomically.

    Args:
        out: the output directory.
        records: one :func:`evaluate_length` (or :func:`evaluate_video_folder`) record per seed.
        config: stored as ``config`` in ``results.json``.
        train_frames: the training length (marked ``*`` in the tables, a dashed line in the plots).

    Returns:
        the ``results.json`` content: ``config``, ``runs`` (the records), ``summary`` (mean/std/n per
        method, length and metric, and mean per-frame curves).
    """
    if not records:
        raise ValueError("no records to report; evaluate at least one model or video folder first")
    out = Path(out)
    methods, lengths, summary = _aggregate(records)
    seeds = len(records)
    lines = ["# Length extrapolation", ""]
    if train_frames is not None:
        lines.append(f"Trained on {train_frames} frames; columns are test lengths in frames (* = training length).")
    ks = [r.get("rope") for r in records if r.get("rope")]
    if ks:
        texts = [f"k={r['k']} (period {r['period']:.1f} latent frames; {r['source']})" for r in ks]
        if len(set(texts)) == 1 and len(texts) > 1:
            lines.append(f"RIFLEx intrinsic component, the same in all {len(texts)} runs: {texts[0]}.")
        else:
            lines.append(f"RIFLEx intrinsic component per run: {', '.join(texts)}.")
    if seeds > 1:
        lines.append(f"Cells are mean ± std over {seeds} runs (seeds).")
    thresholds = {t: records[0]["metrics"].get("ground truth", {}).get(str(t), {}).get("norepeat_threshold")
                  for t in lengths}
    if any(v is not None for v in thresholds.values()):
        lines.append("NoRepeat thresholds (RMS distance on 0-255 RGB): "
                     + ", ".join(f"{t} frames: {v:.1f}" for t, v in thresholds.items() if v is not None)
                     + f" — the {NOREPEAT_PERCENTILE:g}th percentile of the ground-truth clips' distances "
                       f"(run 1); '–' where a video is too short to reach the intrinsic period.")
    lines.append("")
    for key, title, fmt, _ in REPORT_METRICS:
        if any(key in summary.get(m, {}).get(str(t), {}) for m in methods for t in lengths):
            lines.append(_table(summary, methods, lengths, key, title, fmt, train_frames))
    results = {"config": config, "train_frames": train_frames, "methods": methods, "lengths": lengths,
               "runs": list(records), "summary": summary}
    _plot_metrics(out / "results.png", summary, methods, lengths, train_frames)
    _plot_frames(out / "results-frames.png", summary, methods, lengths[-1], train_frames)
    write_json(out / "results.json", results)
    write_text(out / "results.md", "\n".join(lines))
    return results


def _style(method: str) -> dict[str, Any]:
    return {"color": "black", "ls": "--"} if method == "ground truth" else {}


def _save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")
    finally:
        plt.close(fig)


def _plot_metrics(path: Path, summary: dict, methods: list[str], lengths: list[int], train_frames: int | None) -> Path:
    """One panel per metric, value vs test length, one line per method with a ±std band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(key, title) for key, title, *_ in REPORT_METRICS
              if key != "first_repetition" and any(key in summary.get(m, {}).get(str(t), {})
                                                    for m in methods for t in lengths)]
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), dpi=110, squeeze=False)
    for ax, (key, title) in zip(axes.flat, panels):
        for method in methods:
            xs = [t for t in lengths if key in summary.get(method, {}).get(str(t), {})]
            mean = np.array([summary[method][str(t)][key]["mean"] for t in xs])
            std = np.array([summary[method][str(t)][key]["std"] for t in xs])
            (line,) = ax.plot(xs, mean, marker="o", ms=3.5, lw=1.4, label=method, **_style(method))
            if std.any():
                ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.12, lw=0)
        if train_frames is not None:
            ax.axvline(train_frames, color="0.5", ls=":", lw=1)
        ax.set_xticks(lengths)
        ax.set_xlabel("frames")
        ax.set_title(title if len(title) < 48 else title.split(" (")[0], fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return _save_figure(fig, path)


def _plot_frames(path: Path, summary: dict, methods: list[str], frames: int, train_frames: int | None) -> Path:
    """Per-frame motion (top optical-flow magnitude), sharpness ratio and distance to frame 0 at the longest
    length (a dip of the last at the intrinsic period is a repetition)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), dpi=110)
    for ax, key, label in ((axes[0], "top_motion", "motion between frames t and t+1 (px, top 5%)"),
                           (axes[1], "sharpness_ratio", "sharpness of frame t / ground truth"),
                           (axes[2], "distance_to_first", "RMS distance of frame t to frame 0 (0-255)")):
        for method in methods:
            curve = summary.get(method, {}).get(str(frames), {}).get("curves", {}).get(key)
            if curve:
                xs = [i for i, v in enumerate(curve) if v is not None]
                ax.plot(xs, [curve[i] for i in xs], lw=1.3, label=method, **_style(method))
        if train_frames is not None:
            ax.axvline(train_frames, color="0.5", ls=":", lw=1, label="training length")
        ax.set_xlabel("frame")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"per frame at {frames} frames", fontsize=10)
    fig.tight_layout()
    return _save_figure(fig, path)
