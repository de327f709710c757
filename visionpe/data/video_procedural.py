"""Procedural videos of objects bouncing around a static background, rendered at any length and size.

A :class:`VideoScene` is a continuous description: time ``t`` is in seconds and frame ``i`` of a clip
is the scene at ``t = i / fps``; space is in scene units, one unit being the **shorter side** of the
frame, so the arena is ``[0, W/m] × [0, H/m]`` (``m = min(H, W)``, ``x`` right, ``y`` down).  A frame
of any size is a fresh rendering of the scene, never a resampled image, and a clip of any length is
the same motion observed for longer.

Objects (``num_objects``, default 2) are a disc, an axis-aligned square or an upward triangle
(:data:`VIDEO_SHAPES`), each inside a bounding box of half-side ``r ~ U(radius)`` (default
``U(0.09, 0.15)``) around its centre.  Each moves in a straight line at constant speed
``U(speed)`` scene units per second (default ``U(0.2, 0.5)``; at ``fps = 8`` and 32 px that is
0.8–2 px per frame) in a uniform random direction, and bounces elastically off the walls, so its
bounding box never leaves the frame and its speed never changes.  The centre follows the closed form
``c(t) = reflect(c₀ + v·t)`` (a triangle wave in each axis), which makes every frame a pure function
of its time: the first ``T`` frames of a ``2T``-frame rendering are the ``T``-frame rendering, and the
later frames hold positions the first ones never had (bounces are not loops).  Objects do not
collide with each other; object 0, the **main object**, is drawn on top and its shape is the label
(0 disc, 1 square, 2 triangle).

Background: a static base colour ``U(0.25, 0.75)³`` plus smooth value noise (σ = ``noise_std``,
default 0.08, per channel) on a lattice with a node every 1/3 scene unit, interpolated with Perlin's
quintic fade, as in the image tasks (:mod:`.procedural`).  Object colours are at RGB distance
``≥ 0.35`` from the base colour and from each other.  Two knobs make the distribution easier to
learn for a small model: ``shapes`` restricts the shapes drawn (default all three) and
``palette="mono"`` paints every object white on a black base (the colours are still drawn and then
replaced, so a scene's positions, sizes and motion do not depend on the palette).  Object coverage
is anti-aliased with 16 samples per pixel up to 64 px (shorter side), 4 above, in an n-rooks pattern
(every sample has its own ``x`` and ``y`` offset), so an edge moving by a fraction of a pixel changes
the coverage in 1/16-px steps and moving objects do not flicker.

Item ``i`` of a :class:`ProceduralVideoDataset` is drawn from ``numpy.random.default_rng([seed, i])``;
the objects' draws come first and do not depend on the frame size, so the same index gives the same
objects (relative start positions, radii, speeds, directions, colours) at every size, and the same
scene at every size of the same aspect ratio (the noise lattice, drawn last, covers the arena).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from .procedural import LATTICE_CELLS, NOISE_STD, _axis_weights, _contrasting_colour, supersampling

__all__ = ["VIDEO_SHAPES", "VIDEO_PALETTES", "DEFAULT_FPS", "DEFAULT_SPEED", "DEFAULT_RADIUS", "MovingObject",
           "VideoScene", "sample_video_scene", "render_video", "ProceduralVideoDataset"]

VIDEO_SHAPES = ("disc", "square", "triangle")
VIDEO_PALETTES = ("random", "mono")
DEFAULT_FPS = 8.0
DEFAULT_SPEED = (0.2, 0.5)      # scene units (shorter frame side) per second
DEFAULT_RADIUS = (0.09, 0.15)   # half-side of the bounding box, scene units
MAX_OBJECTS = 8


@dataclass(frozen=True)
class MovingObject:
    """One object of a :class:`VideoScene`.

    Attributes:
        shape: index into :data:`VIDEO_SHAPES` (0 disc, 1 square, 2 triangle).
        start: ``(x, y)`` centre of the bounding box at ``t = 0``, scene units.
        velocity: ``(vx, vy)`` at ``t = 0`` in scene units per second (its sign flips at each bounce).
        radius: half-side of the bounding box (disc radius, square half-side, triangle half-height).
        colour: RGB, ``(3,)`` in ``[0, 1]``.
    """

    shape: int
    start: tuple[float, float]
    velocity: tuple[float, float]
    radius: float
    colour: np.ndarray

    @property
    def speed(self) -> float:
        """Constant speed in scene units per second."""
        return math.hypot(*self.velocity)


@dataclass(frozen=True)
class VideoScene:
    """Continuous description of one procedural video.

    Attributes:
        label: the shape of ``objects[0]`` (0 disc, 1 square, 2 triangle).
        extent: ``(width, height)`` of the arena in scene units (the shorter one is 1).
        background: base colour, ``(3,)``.
        noise: lattice noise ``(ny, nx, 3)``; node ``[k, l]`` sits at ``(x, y) = (l/3, k/3)``.
        objects: the moving objects; ``objects[0]`` is the main one, drawn on top.
    """

    label: int
    extent: tuple[float, float]
    background: np.ndarray
    noise: np.ndarray
    objects: tuple[MovingObject, ...]

    def _unfolded(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Free-flight positions ``(T, N, 2)``, the walls' span ``(N, 2)`` and lower bound ``(N, 2)`` of each centre."""
        start = np.array([o.start for o in self.objects], dtype=np.float64)
        velocity = np.array([o.velocity for o in self.objects], dtype=np.float64)
        radius = np.array([o.radius for o in self.objects], dtype=np.float64)[:, None]
        lo = np.broadcast_to(radius, start.shape)
        span = np.array(self.extent)[None, :] - 2.0 * radius
        free = start[None] + velocity[None] * np.asarray(times, dtype=np.float64)[:, None, None]
        return np.mod(free - lo, 2.0 * span), span, lo

    def centres(self, times: Sequence[float] | np.ndarray) -> np.ndarray:
        """Bounding-box centres at ``times`` (seconds): ``(T, N, 2)`` as ``(x, y)`` in scene units."""
        folded, span, lo = self._unfolded(np.asarray(times, dtype=np.float64))
        return lo + np.where(folded <= span, folded, 2.0 * span - folded)

    def velocities(self, times: Sequence[float] | np.ndarray) -> np.ndarray:
        """Velocities at ``times`` (seconds): ``(T, N, 2)`` as ``(vx, vy)`` in scene units per second."""
        folded, span, _ = self._unfolded(np.asarray(times, dtype=np.float64))
        velocity = np.array([o.velocity for o in self.objects], dtype=np.float64)
        return np.where(folded <= span, 1.0, -1.0) * velocity[None]


def _check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _frame_size(size: int | Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` from an int (square frames) or a pair; ValueError for anything else."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        pair = (size, size)
    else:
        try:
            pair = tuple(size)
        except TypeError:
            pair = ()
    if len(pair) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in pair):
        raise ValueError(f"size must be a positive integer or a pair (H, W) of positive integers, got {size!r}")
    return int(pair[0]), int(pair[1])


def _extent(height: int, width: int) -> tuple[float, float]:
    """Arena ``(width, height)`` in scene units: the frame's shorter side is one unit."""
    short = min(height, width)
    return width / short, height / short


def _check_range(name: str, value: Sequence[float], lo: float, hi: float, strict_lo: bool) -> tuple[float, float]:
    try:
        pair = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        pair = ()
    ok = len(pair) == 2 and pair[0] <= pair[1] and pair[1] < hi and (pair[0] > lo if strict_lo else pair[0] >= lo)
    if not ok:
        bound = ">" if strict_lo else ">="
        raise ValueError(f"{name} must be (lo, hi) with lo {bound} {lo}, lo <= hi and hi < {hi}, got {value!r}")
    return pair


def _check_shapes(shapes: Sequence[str]) -> tuple[str, ...]:
    names = (shapes,) if isinstance(shapes, str) else tuple(shapes)
    if not names or any(n not in VIDEO_SHAPES for n in names) or len(set(names)) != len(names):
        raise ValueError(f"shapes must be distinct names among {', '.join(VIDEO_SHAPES)}, got {shapes!r}")
    return tuple(n for n in VIDEO_SHAPES if n in names)


def _check_palette(palette: str) -> str:
    if palette not in VIDEO_PALETTES:
        raise ValueError(f"palette must be one of {', '.join(VIDEO_PALETTES)}, got {palette!r}")
    return palette


def _scene_args(num_objects: int, speed: Sequence[float], radius: Sequence[float],
                noise_std: float) -> tuple[int, tuple[float, float], tuple[float, float], float]:
    """Checked and normalised scene parameters (see :func:`sample_video_scene`)."""
    if not 1 <= _check_positive_int("num_objects", num_objects) <= MAX_OBJECTS:
        raise ValueError(f"num_objects must be between 1 and {MAX_OBJECTS}, got {num_objects}")
    speed = _check_range("speed", speed, 0.0, math.inf, strict_lo=False)
    radius = _check_range("radius", radius, 0.0, 0.5, strict_lo=True)
    try:
        std = float(noise_std)
    except (TypeError, ValueError):
        std = math.nan
    if isinstance(noise_std, bool) or not std >= 0.0:
        raise ValueError(f"noise_std must be a number >= 0, got {noise_std!r}")
    return int(num_objects), speed, radius, std


def sample_video_scene(rng: np.random.Generator, extent: tuple[float, float] = (1.0, 1.0), num_objects: int = 2,
                       speed: tuple[float, float] = DEFAULT_SPEED, radius: tuple[float, float] = DEFAULT_RADIUS,
                       noise_std: float = NOISE_STD, shapes: Sequence[str] = VIDEO_SHAPES,
                       palette: str = "random") -> VideoScene:
    """Draw one scene in an arena of ``extent = (width, height)`` scene units (the shorter side 1).

    Args:
        rng: the generator (the dataset uses ``default_rng([seed, index])``).
        extent: arena size; :func:`render_video` renders it at any frame size of aspect ``width / height``.
        num_objects: 1 to 8; object 0 is the main object whose shape is the label.
        speed: speed range in scene units per second.
        radius: bounding-box half-side range in scene units (``< 0.5`` so every object fits the arena).
        noise_std: standard deviation of the background value noise (0 for a flat background).
        shapes: the shape names drawn from (uniformly), a subset of :data:`VIDEO_SHAPES`.
        palette: ``"random"`` (contrasting random colours) or ``"mono"`` (white objects, black base).
    """
    num_objects, speed, radius, noise_std = _scene_args(num_objects, speed, radius, noise_std)
    allowed = [VIDEO_SHAPES.index(n) for n in _check_shapes(shapes)]
    mono = _check_palette(palette) == "mono"
    width, height = float(extent[0]), float(extent[1])
    if not (min(width, height) == 1.0 and max(width, height) < math.inf):
        raise ValueError(f"extent must be (width, height) with the shorter side 1, got {extent!r}")

    background = rng.uniform(0.25, 0.75, 3)
    colours, objects = [background], []
    for _ in range(num_objects):
        shape = allowed[int(rng.integers(len(allowed)))]
        r = float(rng.uniform(*radius))
        u, w = (float(f) for f in rng.uniform(0.0, 1.0, 2))
        angle = float(rng.uniform(0.0, 2.0 * math.pi))
        v = float(rng.uniform(*speed))
        colour = _contrasting_colour(rng, colours)
        colours.append(colour)
        objects.append(MovingObject(shape, (r + u * (width - 2 * r), r + w * (height - 2 * r)),
                                    (v * math.cos(angle), v * math.sin(angle)), r,
                                    np.ones(3) if mono else colour))
    nodes = (math.ceil(LATTICE_CELLS * height - 1e-9) + 1, math.ceil(LATTICE_CELLS * width - 1e-9) + 1)
    noise = rng.normal(0.0, noise_std, (*nodes, 3))
    return VideoScene(objects[0].shape, (width, height), np.zeros(3) if mono else background, noise, tuple(objects))


def _inside(shape: int) -> Callable[[np.ndarray, np.ndarray, float], np.ndarray]:
    """``inside(dx, dy, r) -> bool`` for offsets ``(dx, dy)`` from the centre of a shape of half-side ``r``."""
    if shape == 0:
        return lambda dx, dy, r: dx * dx + dy * dy <= r * r
    if shape == 1:
        return lambda dx, dy, r: (np.abs(dx) <= r) & (np.abs(dy) <= r)
    return lambda dx, dy, r: (dy <= r) & (np.abs(dx) <= 0.5 * (dy + r))


def _paint_frames(video: np.ndarray, obj: MovingObject, centres: np.ndarray, scale: float, ss: int) -> None:
    """Composite ``obj`` over every frame of ``video`` ``(T, H, W, 3)``; ``centres`` ``(T, 2)`` in pixels.

    Each frame is painted inside a fixed-size window around the object.  The coverage of a pixel is the
    fraction of its ``ss²`` samples inside the shape; the samples form an n-rooks pattern (an ``ss × ss``
    grid whose rows and columns are shifted by ``1/ss²`` px steps), so every sample has its own ``x`` and
    its own ``y`` and edges parallel to the axes move in ``1/ss²``-px steps instead of ``1/ss``.
    """
    frames, height, width, _ = video.shape
    r = obj.radius * scale
    n = math.ceil(2.0 * r) + 1
    wh, ww = min(n, height), min(n, width)
    x0 = np.clip(np.floor(centres[:, 0] - r), 0, width - ww).astype(np.int64)
    y0 = np.clip(np.floor(centres[:, 1] - r), 0, height - wh).astype(np.int64)
    jx, jy = np.arange(ww * ss), np.arange(wh * ss)                                   # sub-sample columns, rows
    shift_x, shift_y = (jy % ss + 0.5) / ss, (jx % ss + 0.5) / ss
    dx = (x0 - centres[:, 0])[:, None, None] + (jx[None, None, :] + shift_x[None, :, None]) / ss   # (T, wh·ss, ww·ss)
    dy = (y0 - centres[:, 1])[:, None, None] + (jy[None, :, None] + shift_y[None, None, :]) / ss
    mask = _inside(obj.shape)(dx, dy, r)
    coverage = mask.reshape(frames, wh, ss, ww, ss).mean(axis=(2, 4))[..., None]     # (T, wh, ww, 1)
    t = np.arange(frames)[:, None, None]
    rows = (y0[:, None] + np.arange(wh))[:, :, None]
    cols = (x0[:, None] + np.arange(ww))[:, None, :]
    region = video[t, rows, cols]
    video[t, rows, cols] = region + coverage * (obj.colour - region)


def render_video(scene: VideoScene, num_frames: int, size: int | Sequence[int], fps: float = DEFAULT_FPS) -> np.ndarray:
    """Render frames ``0 … num_frames − 1`` (frame ``i`` at ``t = i / fps``) of ``scene`` at ``size``.

    Args:
        scene: the scene; its arena's aspect ratio must be ``W / H`` of ``size``.
        num_frames: clip length ``T``.
        size: ``S`` for ``S × S`` frames or ``(H, W)``.
        fps: frames per second (the time step between frames is ``1 / fps``).

    Returns:
        ``(3, T, H, W)`` float32 in ``[0, 1]``.
    """
    num_frames = _check_positive_int("num_frames", num_frames)
    height, width = _frame_size(size)
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    if not math.isclose(width / height, scene.extent[0] / scene.extent[1], rel_tol=1e-9):
        raise ValueError(f"the scene's arena is {scene.extent[0]:g}×{scene.extent[1]:g} (width×height) but size "
                         f"{height}×{width} (H×W) has another aspect ratio; sample the scene for this size")
    scale = min(height, width)                        # pixels per scene unit
    wy = _axis_weights(height, scale, 0, 0, scene.noise.shape[0])
    wx = _axis_weights(width, scale, 0, 0, scene.noise.shape[1])
    background = scene.background[:, None, None] + wy @ scene.noise.transpose(2, 0, 1) @ wx.T   # (3, H, W)
    np.clip(background, 0.0, 1.0, out=background)
    video = np.repeat(background.transpose(1, 2, 0)[None], num_frames, axis=0)               # (T, H, W, 3)
    centres = scene.centres(np.arange(num_frames) / fps) * scale                              # (T, N, 2) px
    ss = supersampling(min(height, width))
    for k in reversed(range(len(scene.objects))):
        _paint_frames(video, scene.objects[k], centres[:, k], scale, ss)
    return np.ascontiguousarray(video.transpose(3, 0, 1, 2), dtype=np.float32)


class ProceduralVideoDataset(Dataset):
    """Map-style dataset of freshly rendered bouncing-object videos.

    Item ``i`` is ``(video, label)``: ``video`` float32 ``(3, num_frames, H, W)`` in ``[0, 1]`` and
    ``label`` the shape of the main object (0 disc, 1 square, 2 triangle).  The scene is a pure
    function of ``(seed, i)`` and the aspect ratio of ``size``.

    Args:
        num_samples: dataset length.
        num_frames: frames per clip ``T``.
        size: ``S`` for ``S × S`` frames or ``(H, W)``.
        seed: non-negative integer.
        fps: frames per second; frame ``i`` is the scene at ``t = i / fps``.
        num_objects: objects per scene (1 to 8).
        speed: object speed range in scene units (shorter frame side) per second.
        radius: bounding-box half-side range in scene units (``< 0.5``).
        noise_std: background value-noise strength (0: flat background).
        shapes: the shape names drawn (a subset of :data:`VIDEO_SHAPES`; labels stay indices into it).
        palette: ``"random"`` or ``"mono"`` (white objects on black).
    """

    def __init__(self, num_samples: int, num_frames: int, size: int | Sequence[int], seed: int,
                 fps: float = DEFAULT_FPS, num_objects: int = 2, speed: tuple[float, float] = DEFAULT_SPEED,
                 radius: tuple[float, float] = DEFAULT_RADIUS, noise_std: float = NOISE_STD,
                 shapes: Sequence[str] = VIDEO_SHAPES, palette: str = "random") -> None:
        self.num_samples = _check_positive_int("num_samples", num_samples)
        self.num_frames = _check_positive_int("num_frames", num_frames)
        self.size = _frame_size(size)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        self.seed, self.fps = int(seed), float(fps)
        self.num_objects, self.speed, self.radius, self.noise_std = _scene_args(num_objects, speed, radius, noise_std)
        self.shapes, self.palette = _check_shapes(shapes), _check_palette(palette)

    @property
    def num_classes(self) -> int:
        """Number of labels: the main object's shapes (3)."""
        return len(VIDEO_SHAPES)

    def __len__(self) -> int:
        return self.num_samples

    def _check_index(self, index: int) -> int:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for a dataset of {self.num_samples} samples")
        return int(index)

    def scene(self, index: int, size: int | Sequence[int] | None = None) -> VideoScene:
        """The scene of item ``index`` for frames of ``size`` (default: the dataset's size)."""
        rng = np.random.default_rng([self.seed, self._check_index(index)])
        extent = _extent(*(self.size if size is None else _frame_size(size)))
        return sample_video_scene(rng, extent, self.num_objects, self.speed, self.radius, self.noise_std,
                                  self.shapes, self.palette)

    def centres_px(self, index: int, num_frames: int | None = None,
                   size: int | Sequence[int] | None = None) -> np.ndarray:
        """Object centres of item ``index`` at each frame, in pixels of frames of ``size``.

        Args:
            index: the item.
            num_frames, size: the clip (defaults: the dataset's).

        Returns:
            ``(T, N, 2)`` float64 ``(x, y)`` (column, row; pixel ``(j, k)`` covers ``[j, j+1) × [k, k+1)``)
            for ``T`` frames and ``N`` objects; ``[:, 0]`` is the main object.
        """
        frames = self.num_frames if num_frames is None else _check_positive_int("num_frames", num_frames)
        size = self.size if size is None else _frame_size(size)
        return self.scene(index, size).centres(np.arange(frames) / self.fps) * min(size)

    def speeds_px(self, index: int, size: int | Sequence[int] | None = None) -> np.ndarray:
        """Constant speed of each object of item ``index`` in pixels per frame at ``size`` (default: the
        dataset's): ``(N,)``, ``[0]`` the main object.  The same at every length and aspect ratio."""
        size = self.size if size is None else _frame_size(size)
        return np.array([o.speed for o in self.scene(index, size).objects]) * min(size) / self.fps

    def render(self, index: int, num_frames: int | None = None,
               size: int | Sequence[int] | None = None) -> torch.Tensor:
        """Item ``index`` rendered with another length and/or size (defaults: the dataset's).

        Returns:
            ``(3, num_frames, H, W)`` float32 in ``[0, 1]``.
        """
        frames = self.num_frames if num_frames is None else num_frames
        size = self.size if size is None else _frame_size(size)
        return torch.from_numpy(render_video(self.scene(index, size), frames, size, self.fps))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        scene = self.scene(index)
        return torch.from_numpy(render_video(scene, self.num_frames, self.size, self.fps)), scene.label
