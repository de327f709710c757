"""Clips of ``num_frames`` frames read from the user's video files.

Layout: either video files directly in ``root`` (every label 0), or one sub-folder per class
(``root/<class>/**/*.mp4``, labels index the sorted class names, as in torchvision's ImageFolder).
Extensions: :data:`VIDEO_EXTENSIONS` (case-insensitive); hidden files and folders are ignored.

Reading: decord first, PyAV when decord is not importable or fails to open or decode a file
(``backend="auto"``); which backend read which file is recorded in :attr:`VideoFolderDataset.backends`.
PyAV decodes from the first frame, so its frame numbers are exact without relying on seeking.  Frame counts are
read at construction (container metadata; PyAV counts packets when the container has no frame
count), so the dataset length and every clip position are known before training starts.

Clips: a clip of ``T`` frames with stride ``s`` takes frames ``start + s·k`` (``k = 0 … T−1``) and
needs ``(T−1)·s + 1`` frames.  Each video gives ``clips_per_video`` clips whose starts are spread
evenly from the first to the last possible start, or drawn uniformly at each access with
``random_start`` (torch's global generator, which Lightning seeds per worker).

Resize (bilinear with antialias): ``"crop"`` cuts the largest centred region with the target aspect
ratio (the same as resizing the shorter side and centre-cropping), ``"stretch"`` resizes the whole
frame to ``(H, W)``.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .video_procedural import _check_positive_int, _frame_size

__all__ = ["VIDEO_EXTENSIONS", "BACKENDS", "ON_ERROR", "RESIZE_MODES", "clip_span", "find_videos",
           "video_folder_classes", "count_frames", "read_frames", "resize_clip", "VideoFolderDataset"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".gif")
BACKENDS = ("auto", "decord", "pyav")
ON_ERROR = ("raise", "skip")
RESIZE_MODES = ("crop", "stretch")


def clip_span(num_frames: int, stride: int) -> int:
    """Frames a clip of ``num_frames`` frames taken every ``stride`` frames spans: ``(T−1)·s + 1``."""
    return (num_frames - 1) * stride + 1


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def _videos_under(folder: Path) -> list[Path]:
    """Sorted video files anywhere below ``folder``, skipping hidden files and folders."""
    return sorted(p for p in folder.rglob("*") if _is_video(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def find_videos(root: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """The videos of ``root`` with their labels and the class names.

    Returns:
        ``(paths, labels, classes)``: with class sub-folders, ``classes`` are their sorted names and
        ``labels[k]`` the index of the folder holding ``paths[k]``; with videos directly in ``root``,
        ``classes`` is empty and every label is 0.

    Raises:
        ValueError: ``root`` is missing, holds no video, mixes videos at the top level with class
            folders, or has a class folder without videos.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"video folder {root} does not exist; point root= at a directory of videos "
                         f"({', '.join(VIDEO_EXTENSIONS)}) or of class sub-folders holding them")
    loose = sorted(p for p in root.iterdir() if _is_video(p))
    folders = {d: _videos_under(d) for d in _class_dirs(root)}
    if not any(folders.values()):
        if not loose:
            raise ValueError(f"{root} holds no video file (extensions {', '.join(VIDEO_EXTENSIONS)}, also in "
                             f"sub-folders); add videos or point root= at the folder that has them")
        return loose, [0] * len(loose), []
    if loose:
        raise ValueError(f"{root} has class sub-folders with videos and also {len(loose)} video(s) directly in it "
                         f"(e.g. {loose[0].name}); move those into a class folder so that every video has a label")
    empty = [d.name for d, videos in folders.items() if not videos]
    if empty:
        raise ValueError(f"class folder(s) {', '.join(empty)} in {root} hold no video (extensions "
                         f"{', '.join(VIDEO_EXTENSIONS)}); add videos or remove the folder so labels stay unambiguous")
    classes = [d.name for d in folders]
    paths, labels = [], []
    for label, videos in enumerate(folders.values()):
        paths += videos
        labels += [label] * len(videos)
    return paths, labels, classes


def video_folder_classes(root: str | Path) -> list[str]:
    """Sorted class-folder names of ``root`` (empty when the videos sit directly in ``root``)."""
    return find_videos(root)[2]


def _decord():
    import decord

    return decord


def _pyav():
    import av

    return av


def _available(backend: str) -> bool:
    try:
        (_decord if backend == "decord" else _pyav)()
    except ImportError:
        return False
    return True


def _count_decord(path: Path) -> int:
    decord = _decord()
    return len(decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1))


def _count_pyav(path: Path) -> int:
    with _pyav().open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        if stream.frames > 0:
            return int(stream.frames)
        return sum(1 for packet in container.demux(stream) if packet.size > 0)


def _read_decord(path: Path, indices: np.ndarray) -> np.ndarray:
    decord = _decord()
    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    return reader.get_batch(indices.tolist()).asnumpy()


def _read_pyav(path: Path, indices: np.ndarray) -> np.ndarray:
    """Decode from the first frame (exact frame numbers, no seeking) up to the last wanted one."""
    wanted = set(indices.tolist())
    frames = {}
    last = int(indices.max())
    decoded = 0
    with _pyav().open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if decoded in wanted:
                frames[decoded] = frame.to_ndarray(format="rgb24")
            decoded += 1
            if decoded > last:
                break
    if decoded <= last:
        raise ValueError(f"only {decoded} frames could be decoded but frame {last} was requested")
    return np.stack([frames[i] for i in indices.tolist()])


_COUNT = {"decord": _count_decord, "pyav": _count_pyav}
_READ = {"decord": _read_decord, "pyav": _read_pyav}


def _order(backend: str) -> list[str]:
    """Backends to try for ``backend``; ValueError when an explicitly requested one is not installed."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        if not _available(backend):
            package = "decord" if backend == "decord" else "av"
            raise ValueError(f"backend={backend!r} but {package} is not installed; pip install {package} or "
                             f"use backend='auto'")
        return [backend]
    order = [b for b in ("decord", "pyav") if _available(b)]
    if not order:
        raise ValueError("neither decord nor PyAV is installed; pip install decord av (or visionpe[video])")
    return order


def _unreadable(path: Path, errors: dict[str, str]) -> ValueError:
    details = "; ".join(f"{name}: {message}" for name, message in errors.items())
    return ValueError(f"cannot read video {path} ({details}); check that the file plays, re-encode or remove it")


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def count_frames(path: str | Path, backend: str = "auto") -> tuple[int, str]:
    """``(frame count, backend that read it)`` of one video, from its metadata.

    ``"auto"`` tries decord, then PyAV when decord is missing or fails on the file.

    Raises:
        ValueError: no backend can open the file (the message names it and each backend's error).
    """
    path = Path(path)
    errors = {}
    for name in _order(backend):
        try:
            return _COUNT[name](path), name
        except Exception as error:   # decord and PyAV raise their own error types for unreadable files
            errors[name] = _first_line(error)
    raise _unreadable(path, errors)


def read_frames(path: str | Path, indices: Sequence[int] | np.ndarray, backend: str = "auto") -> tuple[np.ndarray, str]:
    """Decode frames ``indices`` of a video.

    Returns:
        ``(frames (len(indices), H, W, 3) uint8 RGB, backend that read them)``.

    Raises:
        ValueError: no backend can decode them (the message names the file and each backend's error).
    """
    path = Path(path)
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 1 or not len(indices) or indices.min() < 0:
        raise ValueError(f"indices must be a non-empty list of non-negative frame numbers, got {indices.tolist()}")
    errors = {}
    for name in _order(backend):
        try:
            return _READ[name](path, indices), name
        except Exception as error:   # see count_frames
            errors[name] = _first_line(error)
    raise _unreadable(path, errors)


def resize_clip(frames: np.ndarray | torch.Tensor, size: int | Sequence[int], mode: str = "crop") -> torch.Tensor:
    """Resize RGB frames ``(T, H₀, W₀, 3)`` uint8 to a clip ``(3, T, H, W)`` float32 in ``[0, 1]``.

    Args:
        frames: decoded frames.
        size: ``S`` or ``(H, W)``.
        mode: ``"crop"`` (largest centred region of aspect ``W/H``, then resize: no distortion) or
            ``"stretch"`` (the whole frame, aspect ratio not kept).  Bilinear with antialias.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
    height, width = _frame_size(size)
    clip = torch.as_tensor(frames).permute(0, 3, 1, 2)                                   # (T, 3, H₀, W₀)
    h0, w0 = clip.shape[-2:]
    if mode == "crop":
        if h0 * width > w0 * height:                                                     # source is taller
            crop_h, crop_w = max(1, round(w0 * height / width)), w0
        else:
            crop_h, crop_w = h0, max(1, round(h0 * width / height))
        top, left = (h0 - crop_h) // 2, (w0 - crop_w) // 2
        clip = clip[:, :, top:top + crop_h, left:left + crop_w]
    if clip.shape[-2:] != (height, width):
        clip = F.interpolate(clip.contiguous(), size=(height, width), mode="bilinear", antialias=True,
                             align_corners=False)
    return clip.permute(1, 0, 2, 3).float().div_(255.0).contiguous()


class VideoFolderDataset(Dataset):
    """Clips from the videos of a folder (see the module docstring for layout, backends and resizing).

    Item ``i`` is ``(video float32 (3, num_frames, H, W) in [0, 1], label int)``: clip ``i % clips_per_video``
    of video ``i // clips_per_video``; the label is the index of its class folder, or 0 without class folders.

    Args:
        root: the folder.
        num_frames: frames per clip ``T``.
        size: ``S`` for ``S × S`` frames or ``(H, W)``.
        stride: take every ``stride``-th frame.
        clips_per_video: clips per video (evenly spread, or random with ``random_start``).
        backend: ``"auto"`` (decord, PyAV fallback), ``"decord"`` or ``"pyav"``.
        on_error: ``"raise"``: an unreadable or too-short file raises ValueError naming it;
            ``"skip"``: such files are left out, listed in :attr:`skipped` and reported with a warning.
        resize: ``"crop"`` or ``"stretch"``.
        random_start: draw each clip's start uniformly at every access (training) instead of the fixed,
            evenly spread starts.

    Attributes:
        videos, labels, frame_counts: the readable videos, their labels and frame counts.
        classes: class-folder names (empty without class folders).
        backends: ``{path: "decord" | "pyav"}``, the backend that read each file.
        skipped: ``[(path, reason)]`` of the files left out with ``on_error="skip"``.
    """

    def __init__(self, root: str | Path, num_frames: int, size: int | Sequence[int], stride: int = 1,
                 clips_per_video: int = 1, backend: str = "auto", on_error: str = "raise", resize: str = "crop",
                 random_start: bool = False) -> None:
        self.num_frames = _check_positive_int("num_frames", num_frames)
        self.size = _frame_size(size)
        self.stride = _check_positive_int("stride", stride)
        self.clips_per_video = _check_positive_int("clips_per_video", clips_per_video)
        _order(backend)
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
        self.root = Path(root).expanduser()
        self.backend, self.on_error, self.resize, self.random_start = backend, on_error, resize, bool(random_start)
        paths, labels, self.classes = find_videos(self.root)
        need = clip_span(self.num_frames, self.stride)
        self.videos: list[Path] = []
        self.labels: list[int] = []
        self.frame_counts: list[int] = []
        self.backends: dict[Path, str] = {}
        self.skipped: list[tuple[Path, str]] = []
        for path, label in zip(paths, labels):
            try:
                count, used = count_frames(path, backend)
            except ValueError as error:
                self._reject(path, str(error), "")
                continue
            if count < need:
                self._reject(path, f"video {path} has {count} frames but a clip of num_frames={self.num_frames} "
                                   f"with stride={self.stride} needs {need}", "lower num_frames or stride, ")
                continue
            self.videos.append(path)
            self.labels.append(label)
            self.frame_counts.append(count)
            self.backends[path] = used
        if self.skipped:
            warnings.warn(f"VideoFolderDataset skipped {len(self.skipped)} of {len(paths)} video files under "
                          f"{self.root} (unreadable or shorter than {need} frames), e.g. {self.skipped[0][1]}; "
                          f"the full list is in .skipped", stacklevel=2)
        if not self.videos:
            raise ValueError(f"none of the {len(paths)} video files under {self.root} is readable and at least "
                             f"{need} frames long; see the warning above, or lower num_frames or stride")

    def _reject(self, path: Path, reason: str, fix: str) -> None:
        """Raise for an unusable file (``on_error="raise"``) or record it in :attr:`skipped`."""
        if self.on_error == "raise":
            raise ValueError(f"{reason}; {fix}or pass on_error='skip' to leave such files out")
        self.skipped.append((path, reason))

    @property
    def num_classes(self) -> int:
        """Number of labels: the class folders, or 1 without them."""
        return max(1, len(self.classes))

    def __len__(self) -> int:
        return len(self.videos) * self.clips_per_video

    def frame_indices(self, index: int) -> np.ndarray:
        """Frame numbers ``(num_frames,)`` of clip ``index`` in its video (random with ``random_start``)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} clips")
        video, clip = divmod(int(index), self.clips_per_video)
        last = self.frame_counts[video] - clip_span(self.num_frames, self.stride)
        if self.random_start:
            start = int(torch.randint(last + 1, ()))
        elif self.clips_per_video == 1:
            start = 0
        else:
            start = round(clip * last / (self.clips_per_video - 1))
        return start + self.stride * np.arange(self.num_frames)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        indices = self.frame_indices(index)
        video = int(index) // self.clips_per_video
        path = self.videos[video]
        # "auto" retries a decord file with PyAV; a file decord could not open goes straight to PyAV
        backend = "pyav" if self.backends[path] == "pyav" else self.backend
        frames, used = read_frames(path, indices, backend)
        self.backends[path] = used
        return resize_clip(frames, self.size, self.resize), self.labels[video]
