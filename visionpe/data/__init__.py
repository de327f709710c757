"""Datasets for resolution-extrapolation experiments (see docs/data.md).

* :mod:`.procedural`: the Dir8 / Abs9 tasks, rendered from a continuous scene at any resolution;
* :mod:`.fashion_mnist`: Fashion-MNIST from the Debian package ``dataset-fashion-mnist``;
* :mod:`.folder`: the user's own images in ImageFolder layout;
* :mod:`.module`: the Lightning data module, :func:`build_eval_dataset` and :func:`dataset_info`.
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

__all__ = [
    "DATASETS", "EVAL_SEED", "PROTOCOLS", "TASKS",
    "Canvas", "FashionMNIST", "FashionMNISTNotFoundError", "ImageDataModule", "ImageFolderDataset",
    "ProceduralDataset", "Scene",
    "build_eval_dataset", "canvas_label", "dataset_info", "folder_classes", "load_fashion_mnist", "render",
    "render_canvas", "sample_canvas", "sample_scene",
]
