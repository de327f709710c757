"""Metrics on generated videos: repetition (NoRepeat), motion (Dynamic Degree), temporal consistency, quality.

Every function takes one video as a ``uint8`` numpy array ``(T, H, W, 3)`` (RGB) or in visionpe's
dataset convention, a float torch tensor or numpy array ``(C, T, H, W)`` in ``[0, 1]`` with ``C`` = 1 or 3;
:func:`to_frames` converts the latter to the former.  Distances are on the 0–255 scale.

=====================  ===========================================================================
metric                 definition (details in each docstring and in ``docs/video_metrics.md``)
=====================  ===========================================================================
NoRepeat               RIFLEx paper App. D: search a window around the intrinsic period for the frame
                       closest to frame 0, then compare the rest of the video with its beginning;
                       the video is non-repetitive if the mean distance exceeds a threshold
first repetition       the frame (after ``min_gap``) that comes back closest to frame 0: RIFLEx's ``N``
Dynamic Degree         VBench: per frame pair, the mean of the top 5% optical-flow magnitudes; dynamic if
                       enough pairs exceed a resolution-scaled threshold.  OpenCV flow instead of RAFT
temporal consistency   flow-warping error between consecutive frames and their SSIM
frame quality          per frame: sharpness (variance of the Laplacian) relative to reference frames and
                       colour-histogram distance to them.  No learned quality model (MUSIQ needs weights)
=====================  ===========================================================================

Optical flow, resizing, histograms and filters come from OpenCV (``opencv-python-headless``, in the
``video`` extra).  Every result is made of Python ``int``/``float``/``bool``/``None``/lists/dicts, so
it can be written with :func:`visionpe.results.write_json`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

import cv2
import numpy as np
import torch

__all__ = [
    "DISTANCES",
    "FLOW_METHODS",
    "NoRepeatResult",
    "distance_to_first",
    "dynamic_degree",
    "first_repetition_frame",
    "frame_distances",
    "frame_quality",
    "norepeat",
    "norepeat_score",
    "norepeat_sensitivity",
    "optical_flow",
    "temporal_consistency",
    "to_frames",
    "video_report",
]

#: Frame distances: ``"rms"`` = root mean square over pixels and channels (0–255; independent of the
#: resolution), ``"l2"`` = Euclidean norm of the whole difference (grows with ``sqrt(H·W·3)``).
DISTANCES = ("rms", "l2")
#: OpenCV optical flow: ``"farneback"`` (``cv2.calcOpticalFlowFarneback``) or ``"dis"`` (``cv2.DISOpticalFlow``).
FLOW_METHODS = ("farneback", "dis")

_TOP_FRACTION = 0.05  # VBench: mean of the top 5% flow magnitudes per pair
_BASE_THRESHOLD = 6.0  # VBench: pixels at 256 px
_BINS = 32  # histogram bins per channel for frame_quality

_VIDEO_FORMS = ("a uint8 array (T, H, W, 3) or a float tensor/array (C, T, H, W) in [0, 1] with C = 1 or 3 "
                "(visionpe's dataset convention)")


def to_frames(video: torch.Tensor | np.ndarray) -> np.ndarray:
    """One video as RGB ``uint8`` frames ``(T, H, W, 3)``.

    Args:
        video: a float torch tensor or numpy array ``(C, T, H, W)`` in ``[0, 1]`` with ``C`` = 1 (grey,
            repeated to RGB) or 3, rounded to ``round(255·x)``; or a ``uint8`` numpy array
            ``(T, H, W, 3)``, returned as it is.

    Returns:
        ``(T, H, W, 3)`` uint8, C-contiguous.

    Raises:
        ValueError: another type, dtype or shape (a batch ``(N, C, T, H, W)`` included: convert its
            videos one by one), non-finite values, or floats outside ``[0, 1]``.
    """
    if isinstance(video, torch.Tensor):
        if not video.is_floating_point():
            raise ValueError(f"a torch video must be a float tensor (C, T, H, W) in [0, 1], got dtype {video.dtype}; "
                             f"divide uint8 frames by 255 or pass them as a numpy array (T, H, W, 3)")
        video = video.detach().cpu().to(torch.float32).numpy()
    if not isinstance(video, np.ndarray):
        raise ValueError(f"a video must be {_VIDEO_FORMS}, got {type(video).__name__}")
    if video.dtype == np.uint8:
        if video.ndim != 4 or video.shape[-1] != 3 or min(video.shape[:3]) < 1:
            raise ValueError(f"a uint8 video must have shape (T, H, W, 3) with RGB last, got {video.shape}")
        return np.ascontiguousarray(video)
    if not np.issubdtype(video.dtype, np.floating):
        raise ValueError(f"a video must be {_VIDEO_FORMS}, got a {video.dtype} array")
    if video.ndim == 5:
        raise ValueError(f"got a batch of videos {video.shape}; convert them one at a time: "
                         f"[to_frames(v) for v in videos]")
    if video.ndim != 4 or video.shape[0] not in (1, 3) or min(video.shape[1:]) < 1:
        raise ValueError(f"a float video must have shape (C, T, H, W) with C = 1 or 3, got {video.shape}")
    if not np.isfinite(video).all():
        raise ValueError("the video contains NaN or inf; every pixel needs a finite value in [0, 1]")
    low, high = float(video.min()), float(video.max())
    if low < 0 or high > 1:
        raise ValueError(f"float video values must lie in [0, 1], got [{low:.3g}, {high:.3g}]; "
                         f"map [-1, 1] outputs with (x + 1) / 2 and clamp to [0, 1]")
    frames = np.rint(video * 255).astype(np.uint8).transpose(1, 2, 3, 0)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return np.ascontiguousarray(frames)


def _resize(frames: np.ndarray, resolution: tuple[int, int] | None) -> np.ndarray:
    """``(T, H, W, 3)`` frames resized to ``resolution = (height, width)`` with area interpolation."""
    if resolution is None:
        return frames
    if len(resolution) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in resolution):
        raise ValueError(f"resolution must be (height, width) in pixels, two ints >= 1, got {resolution!r}")
    height, width = resolution
    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])


def _check_distance(distance: str) -> str:
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; valid distances: {', '.join(DISTANCES)}")
    return distance


def frame_distances(frames_a: np.ndarray, frames_b: np.ndarray, distance: str = "rms") -> np.ndarray:
    """Distance between corresponding frames of two ``(N, H, W, 3)`` arrays on the 0–255 scale.

    Returns:
        ``(N,)`` float64: ``sqrt(mean((a − b)²))`` over pixels and channels (``"rms"``) or
        ``sqrt(sum((a − b)²))`` (``"l2"``).
    """
    _check_distance(distance)
    if frames_a.shape != frames_b.shape or frames_a.ndim != 4:
        raise ValueError(f"frame distances need two (N, H, W, C) arrays of the same shape, got {frames_a.shape} "
                         f"and {frames_b.shape}")
    diff = frames_a.astype(np.float64) - frames_b.astype(np.float64)
    squared = (diff * diff).reshape(len(diff), -1)
    return np.sqrt(squared.mean(axis=1) if distance == "rms" else squared.sum(axis=1))


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def distance_to_first(video: torch.Tensor | np.ndarray, distance: str = "rms") -> np.ndarray:
    """Distance of every frame to frame 0 (0–255 scale).

    A video that loops with period ``N`` comes back to 0 at ``t = N``; averaged over videos, a dip of
    this curve at the intrinsic period is the repetition RIFLEx describes.

    Args:
        video: ``(T, H, W, 3)`` uint8, or a float video ``(C, T, H, W)`` in ``[0, 1]`` (see
            :func:`to_frames`).
        distance: ``"rms"`` or ``"l2"`` (:func:`frame_distances`).

    Returns:
        ``(T,)`` float64, ``[0] = 0``.
    """
    frames = to_frames(video)
    return frame_distances(frames, np.broadcast_to(frames[:1], frames.shape), distance)


def first_repetition_frame(video: torch.Tensor | np.ndarray, min_gap: int = 4, tolerance: float = 0.1,
                           distance: str = "rms", resolution: tuple[int, int] | None = None) -> int | None:
    """The frame where the video first comes back to its first frame: RIFLEx's ``N`` (Eq. 7).

    With ``d_t`` the distance of frame ``t`` to frame 0, the candidates are the local minima
    ``t >= min_gap`` (``d_t < d_{t−1}`` and ``d_t <= d_{t+1}``; the last frame needs only the first).
    Frames closer than ``min_gap`` to frame 0 are skipped because consecutive frames of a smooth video
    are near-duplicates.  With ``d_min`` the smallest candidate distance, the earliest candidate with
    ``d_t <= d_min + tolerance·(max_{t >= min_gap} d_t − d_min)`` is returned, so a loop repeated
    twice reports its first return, not its second.

    Estimate ``N`` for :func:`visionpe.scaling.find_intrinsic_component` as the median of this over
    videos generated with plain extrapolation; the result is in frames of the measured video (for a VAE
    with temporal compression ``c``, about ``N/c`` latent frames).

    Args:
        video: see :func:`to_frames`.
        min_gap: first frame that may be a repetition (>= 1).
        tolerance: fraction (>= 0) of the distance range within which an earlier candidate wins.
        distance: ``"rms"`` or ``"l2"`` (:func:`frame_distances`).
        resolution: ``(height, width)`` to resize frames to first, or ``None``.

    Returns:
        The frame index, or ``None`` when there is no candidate: the distance to frame 0 never
        decreases after ``min_gap`` (the content drifts away and never comes back, or is static).

    Raises:
        ValueError: the video has ``<= min_gap`` frames, or an argument is invalid.
    """
    frames = _resize(to_frames(video), resolution)
    min_gap = _check_int("min_gap", min_gap, 1)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise ValueError(f"tolerance must be a number >= 0 (a fraction of the distance range), got {tolerance!r}")
    if len(frames) <= min_gap:
        raise ValueError(f"the video has {len(frames)} frames; a repetition after min_gap={min_gap} frames needs "
                         f"at least {min_gap + 1} frames (lower min_gap or pass a longer video)")
    d = distance_to_first(frames, distance)
    last = len(d) - 1
    candidates = [t for t in range(min_gap, last + 1) if d[t] < d[t - 1] and (t == last or d[t] <= d[t + 1])]
    if not candidates:
        return None
    best = min(d[t] for t in candidates)
    limit = best + tolerance * (float(d[min_gap:].max()) - best)
    return next(t for t in candidates if d[t] <= limit)


@dataclass(frozen=True)
class NoRepeatResult:
    """NoRepeat decision for one video (all frame indices and distances in the measured video).

    Attributes:
        repeat_start: frame in the search window closest to frame 0 (the start of a possible repeat),
            or ``None`` when the video ends before the window starts.
        start_distance: distance of ``repeat_start`` to frame 0 (``None`` without a window).
        mean_distance: mean distance of frames ``repeat_start … T−1`` to frames ``0 … T−1−repeat_start``
            (``None`` without a window).
        non_repetitive: ``mean_distance > threshold``; ``True`` when the video is too short to repeat.
        window: the searched frames ``[first, last]`` (``None`` when empty).
        threshold: the threshold used.
    """

    repeat_start: int | None
    start_distance: float | None
    mean_distance: float | None
    non_repetitive: bool
    window: tuple[int, int] | None
    threshold: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields (``window`` as a list)."""
        out = asdict(self)
        out["window"] = None if self.window is None else list(self.window)
        return out


def norepeat(video: torch.Tensor | np.ndarray, period: float, window: float | None = None,
             threshold: float = 100.0, distance: str = "rms",
             resolution: tuple[int, int] | None = None) -> NoRepeatResult:
    """NoRepeat test of one video (RIFLEx paper, App. D; no official code was released).

    1. Search the frames ``t`` with ``|t − period| <= window`` (and ``1 <= t <= T−1``) for the one
       closest to frame 0: ``s = argmin_t d(frame_t, frame_0)``, the start of a possible repeat.
    2. ``mean_distance = mean_{i=0}^{T−1−s} d(frame_{s+i}, frame_i)``: the segment from ``s`` to the end
       against the same number of frames from the start.
    3. The video is non-repetitive if ``mean_distance > threshold``.

    The paper leaves the window, the distance and the resolution open; here they are parameters.
    The default threshold (100) is the paper's, but its scale is unknown: with the default per-frame
    RMS on 0–255 RGB, 100 is a large difference, and small synthetic videos rarely reach it.
    Calibrate it on videos known not to repeat (e.g. the training clips) with
    :func:`norepeat_sensitivity`.

    Args:
        video: see :func:`to_frames`.
        period: the intrinsic period ``N_k`` in frames of *this* video (> 0); for a latent period and a
            VAE with temporal compression ``c``, pass ``c·N_k`` pixel frames.
        window: half-width of the search window in frames (>= 0); ``None`` = ``period / 4``.
        threshold: distance above which the video counts as non-repetitive (> 0).
        distance: ``"rms"`` (default) or ``"l2"`` (:func:`frame_distances`).
        resolution: ``(height, width)`` to resize frames to first, or ``None`` (as given).
    """
    frames = _resize(to_frames(video), resolution)
    period = _check_positive("period", period)
    threshold = _check_positive("threshold", threshold)
    _check_distance(distance)
    half = period / 4 if window is None else window
    if isinstance(half, bool) or not isinstance(half, (int, float)) or not math.isfinite(half) or half < 0:
        raise ValueError(f"window must be a finite number >= 0 (half-width in frames) or None, got {window!r}")
    first, last = max(1, math.ceil(period - half)), min(len(frames) - 1, math.floor(period + half))
    if first > last:
        return NoRepeatResult(None, None, None, True, None, threshold)
    candidates = frames[first:last + 1]
    to_start = frame_distances(candidates, np.broadcast_to(frames[:1], candidates.shape), distance)
    start = first + int(np.argmin(to_start))
    length = len(frames) - start
    mean = float(frame_distances(frames[start:], frames[:length], distance).mean())
    return NoRepeatResult(start, float(to_start[start - first]), mean, mean > threshold, (first, last), threshold)


def norepeat_score(videos: Sequence[torch.Tensor | np.ndarray] | torch.Tensor, period: float,
                   window: float | None = None, threshold: float = 100.0, distance: str = "rms",
                   resolution: tuple[int, int] | None = None) -> dict[str, Any]:
    """NoRepeat score of a set of videos: the percentage judged non-repetitive by :func:`norepeat`.

    Args:
        videos: a sequence of videos (see :func:`to_frames`) or a float batch ``(N, C, T, H, W)``.
        period, window, threshold, distance, resolution: as in :func:`norepeat`.

    Returns:
        ``{"score": %, "threshold", "period", "window", "distance", "videos": [NoRepeatResult.as_dict()]}``.
    """
    results = [norepeat(v, period, window, threshold, distance, resolution) for v in _video_list(videos)]
    return {"score": 100.0 * sum(r.non_repetitive for r in results) / len(results), "threshold": float(threshold),
            "period": float(period), "window": float(period / 4 if window is None else window),
            "distance": distance, "videos": [r.as_dict() for r in results]}


def norepeat_sensitivity(results: Sequence[NoRepeatResult | dict[str, Any]],
                         thresholds: Sequence[float]) -> list[dict[str, float]]:
    """NoRepeat score at other thresholds, from per-video results (no recomputation).

    Args:
        results: :class:`NoRepeatResult` objects or their dicts (``norepeat_score(...)["videos"]``).
        thresholds: the thresholds to evaluate (each > 0).

    Returns:
        ``[{"threshold": τ, "score": %}, …]`` in the order given; a video too short to repeat counts as
        non-repetitive at every threshold.
    """
    if not results:
        raise ValueError("no NoRepeat results given; compute them with norepeat() or norepeat_score()")
    means = [r["mean_distance"] if isinstance(r, dict) else r.mean_distance for r in results]
    return [{"threshold": tau, "score": 100.0 * sum(m is None or m > tau for m in means) / len(means)}
            for tau in (_check_positive("threshold", t) for t in thresholds)]


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def _check_method(method: str) -> str:
    if method not in FLOW_METHODS:
        raise ValueError(f"unknown optical-flow method {method!r}; valid methods: {', '.join(FLOW_METHODS)}")
    return method


def optical_flow(frame_a: np.ndarray, frame_b: np.ndarray, method: str = "farneback") -> np.ndarray:
    """Dense optical flow from ``frame_a`` to ``frame_b`` (RGB uint8 ``(H, W, 3)``), computed on grey levels.

    ``"farneback"`` uses OpenCV's reference settings (pyramid scale 0.5, 3 levels, window 15, 3
    iterations, polynomial 5 / σ 1.2); ``"dis"`` uses ``cv2.DISOpticalFlow`` with the MEDIUM preset.

    Returns:
        ``(H, W, 2)`` float32 displacements ``(dx, dy)`` in pixels:
        ``frame_a[y, x] ≈ frame_b[y + dy, x + dx]``.
    """
    _check_method(method)
    if frame_a.shape != frame_b.shape or frame_a.ndim != 3 or frame_a.shape[-1] != 3 or frame_a.dtype != np.uint8:
        raise ValueError(f"optical flow needs two uint8 RGB frames (H, W, 3) of the same size, got "
                         f"{frame_a.shape} {frame_a.dtype} and {frame_b.shape} {frame_b.dtype}")
    a, b = _gray(frame_a), _gray(frame_b)
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a, b, None)


def _flows(frames: np.ndarray, step: int, method: str) -> list[np.ndarray]:
    """Flows between frames ``0, step, 2·step, …``, one per consecutive sampled pair."""
    sampled = frames[::step]
    return [optical_flow(a, b, method) for a, b in pairwise(sampled)]


def _top_mean(magnitude: np.ndarray, fraction: float) -> float:
    """Mean of the largest ``int(fraction·n)`` values (at least one), as VBench's ``get_score``."""
    flat = magnitude.ravel()
    count = max(1, int(flat.size * fraction))
    return float(np.partition(flat, flat.size - count)[flat.size - count:].mean())


def _dynamic_from_flows(flows: list[np.ndarray], num_sampled: int, size: tuple[int, int], fps: float, step: int,
                        top_fraction: float, base_threshold: float, method: str) -> dict[str, Any]:
    magnitudes = [np.hypot(f[..., 0], f[..., 1]) for f in flows]
    pair = [_top_mean(m, top_fraction) for m in magnitudes]
    threshold = max(1.0, 8.0 / fps) * base_threshold * min(size) / 256.0
    required = max(1, round(4 * num_sampled / 16))
    above = sum(p > threshold for p in pair)
    return {"dynamic": above >= required, "pair_magnitudes": pair, "threshold": threshold, "pairs_above": above,
            "pairs_required": required, "mean_motion": float(np.mean([m.mean() for m in magnitudes])) / step,
            "top_motion": float(np.mean(pair)) / step, "frame_step": step, "fps": fps, "method": method}


def _sampling(fps: float, frame_step: int | None, num_frames: int) -> int:
    _check_positive("fps", fps)
    step = max(1, round(fps / 8)) if frame_step is None else _check_int("frame_step", frame_step, 1)
    if len(range(0, num_frames, step)) < 2:
        raise ValueError(f"motion needs at least 2 frames after sampling every {step}th frame, the video has "
                         f"{num_frames}; pass a longer video or a smaller frame_step")
    return step


def dynamic_degree(video: torch.Tensor | np.ndarray, fps: float = 8.0, frame_step: int | None = None,
                   method: str = "farneback", top_fraction: float = _TOP_FRACTION,
                   base_threshold: float = _BASE_THRESHOLD) -> dict[str, Any]:
    """VBench's Dynamic Degree of one video, with OpenCV optical flow instead of RAFT, plus raw motion.

    VBench (``vbench/dynamic_degree.py``): frames are sampled every ``round(fps/8)`` frames (about
    8 fps); for each consecutive sampled pair, the score is the mean of the top 5% optical-flow
    magnitudes; the threshold is ``max(1, 8/fps)·6·min(H, W)/256`` pixels; the video is *dynamic* if at
    least ``round(4·n/16)`` pairs exceed it (``n`` sampled frames).

    Deviations: the flow is OpenCV's (:func:`optical_flow`), not RAFT (whose weights must be
    downloaded), so magnitudes differ somewhat on real footage; ``pairs_required`` is at least 1
    (VBench's ``round`` gives 0 for ``n <= 2``, which makes every such video dynamic) and the top
    fraction keeps at least one pixel (VBench's mean of an empty slice is NaN below 20 pixels).  The
    default ``fps = 8`` samples every frame, as VBench does for image folders.

    Args:
        video: see :func:`to_frames`.
        fps: frame rate of the video (> 0); sets the sampling step and the threshold factor.
        frame_step: sample every ``frame_step``-th frame instead of ``round(fps/8)``.
        method: ``"farneback"`` or ``"dis"``.
        top_fraction: the fraction of largest magnitudes averaged per pair (VBench: 0.05).
        base_threshold: VBench's 6.0 pixels at 256 px.

    Returns:
        ``dynamic`` (bool); ``pair_magnitudes`` (per sampled pair, pixels per pair); ``threshold``;
        ``pairs_above``/``pairs_required``; ``mean_motion``, the mean flow magnitude over all pixels and
        pairs, and ``top_motion``, the mean of ``pair_magnitudes``, both in pixels per frame (divided by
        the step), to compare speeds with ground-truth videos; ``frame_step``, ``fps``, ``method``.
    """
    frames = to_frames(video)
    step = _sampling(fps, frame_step, len(frames))
    _check_method(method)
    if isinstance(top_fraction, bool) or not isinstance(top_fraction, (int, float)) or not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction!r}; VBench uses 0.05")
    _check_positive("base_threshold", base_threshold)
    return _dynamic_from_flows(_flows(frames, step, method), len(frames[::step]), frames.shape[1:3], fps, step,
                               top_fraction, base_threshold, method)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two RGB uint8 frames: Gaussian window 11×11, σ 1.5, per channel, averaged."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (11, 11), 1.5)

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x ** 2, blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def _warp_error(frame: np.ndarray, following: np.ndarray, flow: np.ndarray) -> float:
    """RMS (0–255) between ``frame`` and ``following`` warped back onto it with the flow ``frame → following``."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    warped = cv2.remap(following, grid_x + flow[..., 0], grid_y + flow[..., 1], interpolation=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    diff = warped.astype(np.float64) - frame.astype(np.float64)
    return float(np.sqrt((diff * diff).mean()))


def _consistency_from_flows(frames: np.ndarray, flows: list[np.ndarray], method: str) -> dict[str, Any]:
    warp = [_warp_error(a, b, f) for (a, b), f in zip(pairwise(frames), flows)]
    ssim = [_ssim(a, b) for a, b in pairwise(frames)]
    return {"warp_error": warp, "warp_error_mean": float(np.mean(warp)), "ssim": ssim,
            "ssim_mean": float(np.mean(ssim)), "method": method}


def temporal_consistency(video: torch.Tensor | np.ndarray, method: str = "farneback") -> dict[str, Any]:
    """How smoothly consecutive frames follow each other: flow-warping error and SSIM.

    For each pair ``(t, t+1)``:

    * ``warp_error``: the flow ``F`` from frame ``t`` to ``t+1`` (:func:`optical_flow`) warps frame
      ``t+1`` back onto frame ``t`` (``cv2.remap``, bilinear, ``W(y, x) = frame_{t+1}(y + F_y, x + F_x)``,
      samples outside the frame take the nearest border pixel); the error is the RMS of
      ``W − frame_t`` over all pixels and RGB channels on 0–255.  About 0 for a static video or a
      perfectly tracked motion (Farneback's flow between identical frames is ~0.003 px, not exactly 0,
      so a static textured video scores ~0.1); occlusions and newly revealed pixels are not masked,
      so real motion has a floor above 0: compare with ground-truth videos measured the same way.
      Lower is better.
    * ``ssim``: SSIM (Wang et al. 2004: Gaussian window 11×11, σ = 1.5, ``C1 = (0.01·255)²``,
      ``C2 = (0.03·255)²``, reflected borders) of frames ``t`` and ``t+1``, per RGB channel, averaged over
      the frame.  1 for identical frames, about 0 for independent noise.  It also drops with fast but
      smooth motion, so read it together with the motion of :func:`dynamic_degree`.

    Returns:
        ``{"warp_error": [T−1], "warp_error_mean", "ssim": [T−1], "ssim_mean", "method"}``.
    """
    frames = to_frames(video)
    if len(frames) < 2:
        raise ValueError(f"temporal consistency needs at least 2 frames, the video has {len(frames)}")
    return _consistency_from_flows(frames, _flows(frames, 1, _check_method(method)), method)


def _reference_frames(reference: Any) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 reference frames from one video/frame array or several videos."""
    if isinstance(reference, (np.ndarray, torch.Tensor)) and reference.ndim == 4:
        return to_frames(reference)
    videos = _video_list(reference)
    if len({v.shape[1:] for v in videos}) > 1:
        raise ValueError(f"reference videos have different frame sizes {sorted({v.shape[1:3] for v in videos})}; "
                         f"resize them to one size")
    return np.concatenate(videos)


def _sharpness(frame: np.ndarray) -> float:
    """Variance of the Laplacian of the grey-level frame (``cv2.Laplacian``, 3×3 kernel, float64)."""
    return float(cv2.Laplacian(_gray(frame), cv2.CV_64F).var())


def _histogram(frame: np.ndarray, bins: int) -> list[np.ndarray]:
    """Per-channel histograms of one RGB frame, each ``(bins, 1)`` float32 summing to 1."""
    hists = [cv2.calcHist([frame], [c], None, [bins], [0, 256]) for c in range(3)]
    return [h / h.sum() for h in hists]


def _reference_stats(ref: np.ndarray, bins: int) -> tuple[float, list[np.ndarray]]:
    """Mean sharpness and mean per-channel histograms of ``(N, H, W, 3)`` reference frames."""
    hists = [np.mean(channel, axis=0) for channel in zip(*(_histogram(f, bins) for f in ref))]
    return float(np.mean([_sharpness(f) for f in ref])), hists


def _quality(frames: np.ndarray, ref_sharpness: float, ref_hist: list[np.ndarray], bins: int) -> dict[str, Any]:
    sharpness = [_sharpness(f) for f in frames]
    distances = [float(np.mean([cv2.compareHist(h, r, cv2.HISTCMP_BHATTACHARYYA)
                                for h, r in zip(_histogram(f, bins), ref_hist)])) for f in frames]
    return {"sharpness": sharpness,
            "sharpness_ratio": [s / ref_sharpness if ref_sharpness > 0 else None for s in sharpness],
            "histogram_distance": distances, "reference_sharpness": ref_sharpness}


def _checked_reference(reference: Any, size: tuple[int, int]) -> np.ndarray:
    ref = _reference_frames(reference)
    if ref.shape[1:3] != size:
        raise ValueError(f"reference frames are {ref.shape[1]}x{ref.shape[2]} but the video is {size[0]}x{size[1]}; "
                         f"sharpness depends on the size, so resize the reference (e.g. cv2.resize with INTER_AREA) "
                         f"to the video's size")
    return ref


def _check_bins(bins: int) -> int:
    bins = _check_int("bins", bins, 2)
    if bins > 256:
        raise ValueError(f"bins must be at most 256 for uint8 frames, got {bins}")
    return bins


def frame_quality(video: torch.Tensor | np.ndarray, reference: Any = None, reference_frames: int = 1,
                  bins: int = _BINS) -> dict[str, Any]:
    """Per-frame quality without a learned model: sharpness and colour statistics against reference frames.

    A learned no-reference score such as VBench's MUSIQ needs downloaded weights, so it is not
    offered.  Instead, per frame ``t``:

    * ``sharpness``: variance of the Laplacian of the grey-level frame (``cv2.Laplacian``, 3×3
      aperture, float64; higher = more fine detail: blur lowers it, noise raises it);
    * ``sharpness_ratio``: ``sharpness_t`` / mean sharpness of the reference frames (1 = as sharp as the
      reference; ``None`` if the reference frames are flat);
    * ``histogram_distance``: Bhattacharyya distance (``cv2.compareHist``, 0 = same, 1 = disjoint)
      between the frame's per-channel ``bins``-bin histograms and the mean histogram of the reference
      frames, averaged over R, G, B; it catches colour drift, fading and saturation.

    Args:
        video: see :func:`to_frames`.
        reference: reference frames of the same frame size: one video (any form :func:`to_frames`
            takes, so also ``(N, H, W, 3)`` uint8 frames), a float batch ``(N, C, T, H, W)`` or a
            sequence of videos (e.g. training clips); ``None`` = the video's own first
            ``reference_frames`` frames.
        reference_frames: frames of the video used as reference when ``reference`` is ``None`` (>= 1;
            e.g. the training length, to measure degradation beyond it).
        bins: histogram bins per channel (2 … 256).

    Returns:
        ``{"sharpness": [T], "sharpness_ratio": [T], "histogram_distance": [T], "reference_sharpness"}``.
    """
    frames = to_frames(video)
    bins = _check_bins(bins)
    if reference is None:
        ref = frames[:_check_int("reference_frames", reference_frames, 1)]
    else:
        ref = _checked_reference(reference, frames.shape[1:3])
    return _quality(frames, *_reference_stats(ref, bins), bins)


def _video_list(videos: Any) -> list[np.ndarray]:
    """Videos as a list of ``(T, H, W, 3)`` uint8 arrays from a batch ``(N, C, T, H, W)`` or a sequence."""
    if isinstance(videos, (torch.Tensor, np.ndarray)):
        if videos.ndim != 5:
            raise ValueError(f"a batch of videos must be (N, C, T, H, W), got shape {tuple(videos.shape)}; "
                             f"wrap a single video in a list")
        videos = list(videos)
    if isinstance(videos, (str, bytes)) or not isinstance(videos, Sequence) or len(videos) == 0:
        raise ValueError(f"videos must be a non-empty sequence of videos or a batch (N, C, T, H, W), "
                         f"got {type(videos).__name__}")
    return [to_frames(v) for v in videos]


def _per_frame_mean(curves: list[list[float | None]]) -> list[float | None]:
    """Mean over videos at each frame index (videos may differ in length; ``None`` entries skipped)."""
    out = []
    for t in range(max(len(c) for c in curves)):
        values = [c[t] for c in curves if t < len(c) and c[t] is not None]
        out.append(float(np.mean(values)) if values else None)
    return out


def _split_mean(curve: list[float | None], train_length: int | None) -> dict[str, float | None]:
    """Means of a per-frame curve within and beyond the training length."""
    def mean(values: list[float | None]) -> float | None:
        kept = [v for v in values if v is not None]
        return float(np.mean(kept)) if kept else None

    if train_length is None:
        return {"all": mean(curve)}
    return {"all": mean(curve), "within_train": mean(curve[:train_length]), "beyond_train": mean(curve[train_length:])}


def video_report(videos: Sequence[torch.Tensor | np.ndarray] | torch.Tensor, reference: Any = None,
                 period: float | None = None, train_length: int | None = None, fps: float = 8.0,
                 method: str = "farneback", threshold: float = 100.0, window: float | None = None,
                 sensitivity: Sequence[float] = (5.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0),
                 min_gap: int = 4, per_video: bool = True) -> dict[str, Any]:
    """Every metric of this module on a set of videos, as one JSON-serialisable dict.

    Args:
        videos: a sequence of videos (see :func:`to_frames`) or a float batch ``(N, C, T, H, W)``.
        reference: reference frames for :func:`frame_quality` (e.g. ground-truth clips); ``None`` = each
            video's first ``train_length`` frames (or its first frame without ``train_length``).
        period: intrinsic period in frames of these videos for NoRepeat; ``None`` skips NoRepeat.
        train_length: training length in frames; per-frame quality is also summarised within/beyond it.
        fps: frame rate for :func:`dynamic_degree` (default 8: every frame sampled).
        method: optical flow, ``"farneback"`` or ``"dis"``.
        threshold, window: NoRepeat parameters (:func:`norepeat`).
        sensitivity: extra NoRepeat thresholds reported by :func:`norepeat_sensitivity`.
        min_gap: for :func:`first_repetition_frame`.
        per_video: keep per-video details (otherwise only the aggregates).

    Returns:
        ``{"num_videos", "frames", "size", "first_repetition": {"frames", "median"}, "distance_to_first"
        (the mean over videos of :func:`distance_to_first` at each frame index),
        "norepeat": {...} (with ``period``), "dynamic_degree": {"score", "mean_motion", "top_motion", ...},
        "temporal_consistency": {"warp_error", "ssim", ...}, "quality": {per-frame means and summaries}}``.
        ``score`` values are percentages of videos; ``first_repetition["median"]`` is ``None`` when no
        video repeats.
    """
    frames = _video_list(videos)
    _check_method(method)
    if train_length is not None:
        train_length = _check_int("train_length", train_length, 1)
    sizes = {v.shape[1:3] for v in frames}
    firsts = [first_repetition_frame(v, min_gap) if len(v) > min_gap else None for v in frames]
    found = [f for f in firsts if f is not None]
    report: dict[str, Any] = {
        "num_videos": len(frames), "frames": sorted({len(v) for v in frames}),
        "size": list(next(iter(sizes))) if len(sizes) == 1 else None,
        "first_repetition": {"frames": firsts, "median": float(np.median(found)) if found else None,
                             "min_gap": min_gap},
        "distance_to_first": _per_frame_mean([distance_to_first(v).tolist() for v in frames])}
    if period is not None:
        nr = norepeat_score(frames, period, window, threshold)
        nr["sensitivity"] = norepeat_sensitivity(nr["videos"], sensitivity)
        if not per_video:
            del nr["videos"]
        report["norepeat"] = nr
    shared_reference = None
    if reference is not None:
        if len(sizes) > 1:
            raise ValueError(f"the videos have different frame sizes {sorted(sizes)}; one reference set needs one "
                             f"size, so measure each size separately")
        shared_reference = _reference_stats(_checked_reference(reference, next(iter(sizes))), _BINS)
    dynamic, consistency, quality = [], [], []
    for v in frames:
        step = _sampling(fps, None, len(v))
        flows = _flows(v, 1, method)
        sampled = flows if step == 1 else _flows(v, step, method)
        dynamic.append(_dynamic_from_flows(sampled, len(v[::step]), v.shape[1:3], fps, step, _TOP_FRACTION,
                                           _BASE_THRESHOLD, method))
        consistency.append(_consistency_from_flows(v, flows, method))
        stats = shared_reference or _reference_stats(v[:train_length or 1], _BINS)
        quality.append(_quality(v, *stats, _BINS))
    report["dynamic_degree"] = {
        "score": 100.0 * sum(d["dynamic"] for d in dynamic) / len(dynamic),
        "mean_motion": float(np.mean([d["mean_motion"] for d in dynamic])),
        "top_motion": float(np.mean([d["top_motion"] for d in dynamic])), "fps": fps, "method": method,
        **({"videos": dynamic} if per_video else {})}
    report["temporal_consistency"] = {
        "warp_error": float(np.mean([c["warp_error_mean"] for c in consistency])),
        "ssim": float(np.mean([c["ssim_mean"] for c in consistency])), "method": method,
        **({"videos": consistency} if per_video else {})}
    curves = {key: _per_frame_mean([q[key] for q in quality])
              for key in ("sharpness", "sharpness_ratio", "histogram_distance")}
    report["quality"] = {"per_frame": curves, "summary": {k: _split_mean(c, train_length) for k, c in curves.items()},
                         "reference": "given" if reference is not None else f"first {train_length or 1} frame(s)"}
    return report
