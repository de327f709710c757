"""Writing generated videos so a person can look at them: animated GIF grids and PNG filmstrips.

Videos follow visionpe's convention: float ``(N, C, T, H, W)`` in ``[0, 1]`` (``C`` = 1 or 3).
Files are written atomically with ordinary permissions (:func:`visionpe.results.atomic_write`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from torch import Tensor
from torchvision.utils import make_grid

from .results import atomic_write

__all__ = ["save_filmstrip", "save_video_grid", "video_grid_frames"]


def _check_videos(videos: Tensor) -> Tensor:
    if not isinstance(videos, Tensor) or videos.dim() != 5 or videos.shape[1] not in (1, 3):
        shape = tuple(videos.shape) if isinstance(videos, Tensor) else type(videos).__name__
        raise ValueError(f"videos must be a float tensor (N, C, T, H, W) with C = 1 or 3, got {shape}")
    if not videos.is_floating_point() or videos.min() < 0 or videos.max() > 1:
        raise ValueError("videos must be floats in [0, 1]; convert uint8 frames with x.float() / 255")
    return videos.detach().cpu().float()


def _label_column(frame: np.ndarray, labels: Sequence[str], cell: int, width: int) -> np.ndarray:
    """Prepend a white column with one text label per grid row."""
    column = Image.new("RGB", (width, frame.shape[0]), "white")
    draw = ImageDraw.Draw(column)
    for i, text in enumerate(labels):
        draw.text((2, i * cell + cell // 2 - 5), text, fill="black")
    return np.concatenate([np.asarray(column), frame], axis=1)


def video_grid_frames(videos: Tensor, nrow: int, scale: int = 1, padding: int = 2,
                      row_labels: Sequence[str] | None = None) -> np.ndarray:
    """Tile ``N`` videos into one video whose frames are grids with ``nrow`` videos per row.

    Videos shorter than the longest one show a grey frame once they have ended.

    Returns:
        ``(T_max, H', W', 3)`` uint8 frames.
    """
    videos = _check_videos(videos)
    if row_labels is not None and len(row_labels) != -(-videos.shape[0] // nrow):
        raise ValueError(f"{len(row_labels)} row labels for {-(-videos.shape[0] // nrow)} grid rows")
    if videos.shape[1] == 1:
        videos = videos.expand(-1, 3, -1, -1, -1)
    if scale > 1:
        videos = videos.repeat_interleave(scale, dim=-1).repeat_interleave(scale, dim=-2)
    frames = []
    for t in range(videos.shape[2]):
        grid = make_grid(videos[:, :, t], nrow=nrow, padding=padding, pad_value=1.0)
        frame = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        if row_labels is not None:
            frame = _label_column(frame, row_labels, videos.shape[-2] + padding, 64)
        frames.append(frame)
    return np.stack(frames)


def save_video_grid(videos: Tensor, path: str | Path, nrow: int = 4, fps: float = 8.0, scale: int = 2,
                    row_labels: Sequence[str] | None = None) -> Path:
    """Save ``videos`` ``(N, C, T, H, W)`` in ``[0, 1]`` as one looping animated GIF grid.

    Args:
        nrow: videos per grid row.
        fps: playback speed.
        scale: integer up-scaling (nearest neighbour) so small videos are visible.
        row_labels: optional text at the start of each grid row (e.g. the rule that made it).
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    frames = [Image.fromarray(f) for f in video_grid_frames(videos, nrow, scale, row_labels=row_labels)]
    duration = max(int(round(1000 / fps)), 20)
    return atomic_write(path, lambda p: frames[0].save(p, format="GIF", save_all=True, append_images=frames[1:],
                                                       duration=duration, loop=0), suffix=".gif")


def save_filmstrip(videos: Tensor, path: str | Path, every: int = 1, scale: int = 2,
                   row_labels: Sequence[str] | None = None) -> Path:
    """Save a PNG with one row per video and its frames ``0, every, 2·every, …`` left to right."""
    videos = _check_videos(videos)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")
    strips = videos[:, :, ::every].permute(0, 2, 1, 3, 4)          # (N, T', C, H, W)
    n, t = strips.shape[:2]
    frame = video_grid_frames(strips.reshape(n * t, *strips.shape[2:])[:, :, None], nrow=t, scale=scale,
                              row_labels=row_labels)[0]
    return atomic_write(path, lambda p: Image.fromarray(frame).save(p, format="PNG"), suffix=".png")
