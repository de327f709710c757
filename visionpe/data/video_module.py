"""Lightning data module for the video diffusion transformer: procedural videos or the user's video folder.

Batches are ``(videos (B, 3, num_frames, H, W) float32 in [0, 1], labels (B,) int64)``.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset, Subset

from .module import EVAL_SEED, _check_int
from .procedural import NOISE_STD
from .video_folder import BACKENDS, ON_ERROR, RESIZE_MODES, VideoFolderDataset, video_folder_classes
from .video_procedural import (DEFAULT_FPS, DEFAULT_RADIUS, DEFAULT_SPEED, VIDEO_SHAPES, ProceduralVideoDataset,
                               _frame_size)

__all__ = ["VIDEO_DATASETS", "VideoDataModule", "procedural_scene"]

VIDEO_DATASETS = ("procedural", "folder")


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


class VideoDataModule(L.LightningDataModule):
    """Training and validation clips for the video DiT (LightningCLI ``data:`` section).

    * ``"procedural"``: :class:`~.video_procedural.ProceduralVideoDataset`; an epoch is ``train_samples``
      scenes of seed ``seed`` (item ``i`` is a pure function of ``(seed, i)``, so every epoch sees the same
      scenes); validation is ``val_samples`` scenes of the fixed seed 12345, which training refuses.
      ``stride`` ``s`` samples the scene every ``s / fps`` seconds (a clip with every ``s``-th frame of
      the ``fps`` video); labels are the main object's shape.
    * ``"folder"``: :class:`~.video_folder.VideoFolderDataset` over ``root``; training clips start at
      random positions (``clips_per_video`` per video and epoch) and are shuffled; validation reads
      ``val_root`` (held-out videos) or, without it, up to ``val_samples`` fixed clips (evenly spread
      starts, a subset drawn with seed 12345) of ``root`` itself.

    Args:
        dataset: ``"procedural"`` or ``"folder"``.
        root: the video folder (required for ``"folder"``).
        val_root: folder of validation videos (``"folder"`` only; default: clips of ``root``).
        num_frames: frames per clip ``T``.
        size: frame size ``S`` (``S × S``) or ``[H, W]``.
        stride: frame step (see above).
        batch_size, num_workers: DataLoader settings.
        train_samples: procedural training scenes per epoch.
        val_samples: procedural validation scenes; folder: the most validation clips taken from ``root``.
        seed: procedural training seed (any non-negative integer except 12345).
        fps, num_objects, speed, radius, noise_std, shapes, palette: procedural scene parameters (see
            :class:`~.video_procedural.ProceduralVideoDataset`).
        clips_per_video, backend, on_error, resize: folder reading (see
            :class:`~.video_folder.VideoFolderDataset`).
    """

    def __init__(self, dataset: str = "procedural", root: str | None = None, val_root: str | None = None,
                 num_frames: int = 16, size: int | tuple[int, int] = 32, stride: int = 1, batch_size: int = 32,
                 num_workers: int = 0, train_samples: int = 10_000, val_samples: int = 256, seed: int = 0,
                 fps: float = DEFAULT_FPS, num_objects: int = 2, speed: tuple[float, float] = DEFAULT_SPEED,
                 radius: tuple[float, float] = DEFAULT_RADIUS, noise_std: float = NOISE_STD,
                 shapes: tuple[str, ...] = VIDEO_SHAPES, palette: str = "random", clips_per_video: int = 1,
                 backend: str = "auto", on_error: str = "raise", resize: str = "crop") -> None:
        super().__init__()
        _check_choice("dataset", dataset, VIDEO_DATASETS)
        if dataset == "folder" and root is None:
            raise ValueError("dataset 'folder' needs root= the directory holding the videos (or class sub-folders)")
        if dataset == "procedural" and (root is not None or val_root is not None):
            raise ValueError("root and val_root are for dataset 'folder'; the procedural videos are rendered, "
                             "so drop them or pass dataset='folder'")
        _check_int("num_frames", num_frames, 1)
        _frame_size(size)
        for name, value, minimum in (("stride", stride, 1), ("batch_size", batch_size, 1),
                                     ("num_workers", num_workers, 0), ("train_samples", train_samples, 1),
                                     ("val_samples", val_samples, 1), ("seed", seed, 0),
                                     ("clips_per_video", clips_per_video, 1)):
            _check_int(name, value, minimum)
        if seed == EVAL_SEED:
            raise ValueError(f"seed {EVAL_SEED} draws the fixed validation scenes; pick another training seed")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        _check_choice("backend", backend, BACKENDS)
        _check_choice("on_error", on_error, ON_ERROR)
        _check_choice("resize", resize, RESIZE_MODES)
        # kept in checkpoints but not sent to the loggers: Lightning refuses to merge hparams whose keys clash,
        # and ``size`` (frame size here) is also VideoDiffusionModule's model preset; the model logs video_size
        self.save_hyperparameters(logger=False)
        self.dataset, self.root, self.val_root = dataset, root, val_root
        self.num_frames, self.size, self.stride = num_frames, size, stride
        self.batch_size, self.num_workers = batch_size, num_workers
        self.train_samples, self.val_samples, self.seed = train_samples, val_samples, seed
        self.fps, self.num_objects, self.speed, self.noise_std = float(fps), num_objects, speed, noise_std
        self.radius, self.shapes, self.palette = radius, tuple(shapes), palette
        self.clips_per_video, self.backend, self.on_error, self.resize = clips_per_video, backend, on_error, resize
        if dataset == "procedural":
            self._procedural(1, seed)                    # checks the scene parameters now

    @property
    def num_classes(self) -> int:
        """Number of labels: 3 shapes (procedural), the class folders of ``root`` or 1 without them."""
        if self.dataset == "procedural":
            return len(VIDEO_SHAPES)
        return max(1, len(video_folder_classes(self.root)))

    def _procedural(self, num_samples: int, seed: int) -> ProceduralVideoDataset:
        return ProceduralVideoDataset(num_samples, self.num_frames, self.size, seed, **self.scene)

    @property
    def scene(self) -> dict:
        """The procedural scene parameters as :class:`~.video_procedural.ProceduralVideoDataset` keywords
        (``fps`` is the clip's frame rate, ``fps / stride``)."""
        return {"fps": self.fps / self.stride, "num_objects": self.num_objects, "speed": tuple(self.speed),
                "radius": tuple(self.radius), "noise_std": self.noise_std, "shapes": self.shapes,
                "palette": self.palette}

    def _folder(self, root: str | Path, train: bool) -> VideoFolderDataset:
        return VideoFolderDataset(root, self.num_frames, self.size, stride=self.stride,
                                  clips_per_video=self.clips_per_video, backend=self.backend,
                                  on_error=self.on_error, resize=self.resize, random_start=train)

    def train_dataset(self) -> Dataset:
        """The training dataset; items ``(video (3, num_frames, H, W), label)``."""
        if self.dataset == "procedural":
            return self._procedural(self.train_samples, self.seed)
        return self._folder(self.root, train=True)

    def val_dataset(self) -> Dataset:
        """The validation dataset (fixed: the same clips at every call)."""
        if self.dataset == "procedural":
            return self._procedural(self.val_samples, EVAL_SEED)
        if self.val_root is not None:
            return self._folder(self.val_root, train=False)
        data = self._folder(self.root, train=False)
        if len(data) <= self.val_samples:
            return data
        keep = np.sort(np.random.default_rng(EVAL_SEED).permutation(len(data))[:self.val_samples])
        return Subset(data, keep.tolist())

    def _loader(self, data: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(data, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        """Training batches; procedural scenes are already i.i.d., so only folder clips are shuffled."""
        return self._loader(self.train_dataset(), shuffle=self.dataset == "folder")

    def val_dataloader(self) -> DataLoader:
        """Validation batches in a fixed order."""
        return self._loader(self.val_dataset(), shuffle=False)


def procedural_scene(hparams: dict | None) -> dict | None:
    """The scene keywords (:attr:`VideoDataModule.scene`) of a data module's saved hyper-parameters.

    ``hparams`` is what a Lightning checkpoint keeps as ``datamodule_hyper_parameters``.  Returns ``None``
    when there are none or the module did not train on procedural clips.
    """
    if not hparams or hparams.get("dataset", "procedural") != "procedural":
        return None
    return VideoDataModule(**dict(hparams)).scene
