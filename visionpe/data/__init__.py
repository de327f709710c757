"""Datasets for resolution-extrapolation experiments (see docs/data.md).

* :mod:`.procedural`: the Dir8 / Abs9 tasks, rendered from a continuous scene at any resolution;
* :mod:`.fashion_mnist`: Fashion-MNIST from the Debian package ``dataset-fashion-mnist``;
* :mod:`.folder`: the user's own images in ImageFolder layout;
* :mod:`.module`: the Lightning data module, :func:`build_eval_dataset` and :func:`dataset_info`;
* :mod:`.video_procedural`, :mod:`.video_folder`, :mod:`.video_module`: bouncing-object videos
  rendered at any length and size, the user's own clips (decord, PyAV fallback) and their Lightning
  data module (see docs/video_data.md).
"""
from .fashion_mnist import FashionMNIST, FashionMNISTNotFoundError, load_fashion_mnist
from .folder import ImageFolderDataset, folder_classes
from .module import DATASETS, EVAL_SEED, ImageDataModule, build_eval_dataset, dataset_info
from .procedural import (
    PROTOCOLS,
    TASKS,
    Canvas,
    ProceduralDataset,
    Scene,
    canvas_label,
    render,
    render_canvas,
    sample_canvas,
    sample_scene,
)
from .video_folder import VideoFolderDataset, count_frames, find_videos, read_frames, resize_clip
from .video_module import VIDEO_DATASETS, VideoDataModule
from .video_procedural import MovingObject, ProceduralVideoDataset, VideoScene, render_video, sample_video_scene

__all__ = [
    "DATASETS", "EVAL_SEED", "PROTOCOLS", "TASKS",
    "Canvas", "FashionMNIST", "FashionMNISTNotFoundError", "ImageDataModule", "ImageFolderDataset",
    "ProceduralDataset", "Scene",
    "build_eval_dataset", "canvas_label", "dataset_info", "folder_classes", "load_fashion_mnist", "render",
    "render_canvas", "sample_canvas", "sample_scene",
    "VIDEO_DATASETS", "MovingObject", "ProceduralVideoDataset", "VideoDataModule", "VideoFolderDataset", "VideoScene",
    "count_frames", "find_videos", "read_frames", "render_video", "resize_clip", "sample_video_scene",
]
