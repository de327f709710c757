"""Lightning data module and evaluation datasets for every dataset visionpe trains on.

Datasets (``dataset=`` name): ``"dir8"`` and ``"abs9"`` (procedural, :mod:`.procedural`),
``"fashion-mnist"`` (:mod:`.fashion_mnist`) and ``"folder"`` (the user's ImageFolder tree, :mod:`.folder`).
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset, Subset

from .fashion_mnist import CLASSES as FASHION_CLASSES
from .fashion_mnist import DEFAULT_ROOT as FASHION_ROOT
from .fashion_mnist import FashionMNIST
from .folder import ImageFolderDataset, folder_classes
from .procedural import MAX_ZOOM, PROTOCOLS, TASKS, ProceduralDataset

__all__ = ["DATASETS", "EVAL_SEED", "FOLDER_SIZE", "dataset_info", "build_eval_dataset", "ImageDataModule"]

DATASETS = ("dir8", "abs9", "fashion-mnist", "folder")
EVAL_SEED = 12345
FOLDER_SIZE = 224   # the conventional (DeiT/ResFormer) training size reported for folder data


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")


def _folder_root(root: str | Path | None) -> Path:
    if root is None:
        raise ValueError("dataset 'folder' needs root= the directory holding train/<class>/ and val/<class>/")
    return Path(root)


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def dataset_info(dataset: str, root: str | Path | None = None) -> tuple[int, int, int]:
    """``(num_classes, in_chans, native_size)`` of a dataset.

    ``native_size`` is the training size the dataset is designed for: 32 (procedural), 28 (Fashion-MNIST),
    224 (folder, the DeiT convention; the images themselves have any size).  ``"folder"`` needs ``root``
    to count its class folders in ``root/train``.
    """
    _check_dataset(dataset)
    if dataset in TASKS:
        return TASKS[dataset], 3, 32
    if dataset == "fashion-mnist":
        return len(FASHION_CLASSES), 1, 28
    return len(folder_classes(_folder_root(root), "train")), 3, FOLDER_SIZE


def build_eval_dataset(dataset: str, size: int, protocol: str, num_samples: int | None,
                       root: str | Path | None = None, base_size: int | None = None,
                       seed: int = EVAL_SEED) -> Dataset:
    """The fixed test set of ``dataset`` at ``size`` px under ``protocol``; items ``(image (C, size, size), label)``.

    Args:
        dataset: one of :data:`DATASETS`.
        size: test image side in pixels.
        protocol: ``"R"`` or ``"C"`` (``"folder"`` supports only ``"R"``).
        num_samples: test images.  Procedural: that many fixed scenes with ``z = 1`` (required);
            Fashion-MNIST: the first ``num_samples`` test images; folder: a ``seed``-drawn subset of the val
            split.  ``None`` means the whole split (real datasets only).
        root: Fashion-MNIST copy elsewhere, or the folder dataset root.
        base_size: the pixel scale protocol C keeps (default: the dataset's native size, 32 or 28);
            unused under protocol R.
        seed: seeds the procedural scenes, canvas placements and the folder subset.
    """
    _check_dataset(dataset)
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if dataset in TASKS:
        if num_samples is None:
            raise ValueError("procedural test sets are infinite; pass num_samples, e.g. 2000")
        return ProceduralDataset(dataset, size, num_samples, seed, protocol, base_size or 32, zoom=None)
    if dataset == "fashion-mnist":
        return FashionMNIST("test", size, protocol, base_size or 28, root or FASHION_ROOT, limit=num_samples,
                            seed=seed)
    if protocol != "R":
        raise ValueError("protocol C needs a known object scale and is defined for dir8, abs9 and fashion-mnist; "
                         "evaluate folder data with protocol 'R'")
    data = ImageFolderDataset(_folder_root(root), "val", size, train=False)
    if num_samples is None:
        return data
    _check_int("num_samples", num_samples, 1)
    if num_samples > len(data):
        raise ValueError(f"num_samples={num_samples} exceeds the {len(data)} images in the val split; "
                         f"pass num_samples <= {len(data)} or None for all of them")
    keep = np.sort(np.random.default_rng(seed).permutation(len(data))[:num_samples])
    return Subset(data, keep.tolist())


class ImageDataModule(L.LightningDataModule):
    """Training and validation data for the ViT classifier (LightningCLI ``data:`` section).

    Batches are ``(images (B, C, img_size, img_size), labels (B,))``; with ``train_sizes`` the training
    batches are ``([images (B, C, s, s) for s in train_sizes], labels)`` (the same scenes/crops at each size).
    Validation is protocol R at ``img_size``: fixed procedural test scenes (seed 12345, ``z = 1``), the
    Fashion-MNIST test split or the folder's ``val`` split.

    Args:
        dataset: ``"dir8"``, ``"abs9"``, ``"fashion-mnist"`` or ``"folder"``.
        root: folder dataset root (required for ``"folder"``) or a Fashion-MNIST copy elsewhere.
        img_size: training and validation size.
        train_sizes: multi-resolution training sizes (ResFormer); must contain ``img_size``.
        batch_size, num_workers: DataLoader settings.
        train_samples: procedural only: scenes per epoch (item ``i`` is a pure function of ``(seed, i)``,
            so every epoch sees the same scenes; raise it for more).
        val_samples: procedural: validation scenes; Fashion-MNIST: the first ``val_samples`` test images;
            folder: unused (the whole val split).
        zoom: procedural only: training zoom range ``(lo, hi)``, or ``None`` for ``z = 1``.
        seed: procedural training scenes (any non-negative integer except 12345, the test scenes' seed).
    """

    def __init__(self, dataset: str = "dir8", root: str | None = None, img_size: int = 32,
                 train_sizes: list[int] | None = None, batch_size: int = 128, num_workers: int = 0,
                 train_samples: int = 50_000, val_samples: int = 2000,
                 zoom: tuple[float, float] | None = (1.0, 1.5), seed: int = 0) -> None:
        super().__init__()
        _check_dataset(dataset)
        if dataset == "folder":
            _folder_root(root)
        _check_int("img_size", img_size, 1)
        if train_sizes is not None:
            if not train_sizes:
                raise ValueError("train_sizes is empty; pass e.g. [32, 24, 20] or null for single-size training")
            for s in train_sizes:
                _check_int("every entry of train_sizes", s, 1)
            if img_size not in train_sizes:
                raise ValueError(f"img_size={img_size} must be one of train_sizes={list(train_sizes)} "
                                 f"(validation runs at img_size)")
        _check_int("batch_size", batch_size, 1)
        _check_int("num_workers", num_workers, 0)
        _check_int("train_samples", train_samples, 1)
        _check_int("val_samples", val_samples, 1)
        _check_int("seed", seed, 0)
        if dataset in TASKS:
            if zoom is not None and (len(zoom) != 2 or not 0.0 < zoom[0] <= zoom[1] <= MAX_ZOOM):
                raise ValueError(f"zoom must be [lo, hi] with 0 < lo <= hi <= {MAX_ZOOM}, got {zoom!r}; "
                                 f"or null for z = 1")
            if seed == EVAL_SEED:
                raise ValueError(f"seed {EVAL_SEED} draws the fixed validation/test scenes; pick another training seed")
        self.save_hyperparameters()
        self.dataset, self.root, self.img_size = dataset, root, img_size
        self.train_sizes = None if train_sizes is None else tuple(train_sizes)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.train_samples, self.val_samples = train_samples, val_samples
        self.zoom = None if zoom is None else (float(zoom[0]), float(zoom[1]))
        self.seed = seed

    @property
    def num_classes(self) -> int:
        """Number of classes of the dataset."""
        return dataset_info(self.dataset, self.root)[0]

    @property
    def in_chans(self) -> int:
        """Image channels (3, or 1 for Fashion-MNIST)."""
        return dataset_info(self.dataset, self.root)[1]

    def train_dataset(self) -> Dataset:
        """The training dataset (items as described in the class docstring)."""
        if self.dataset in TASKS:
            return ProceduralDataset(self.dataset, self.img_size, self.train_samples, self.seed, zoom=self.zoom,
                                     sizes=self.train_sizes)
        if self.dataset == "fashion-mnist":
            return FashionMNIST("train", self.img_size, root=self.root or FASHION_ROOT, sizes=self.train_sizes)
        return ImageFolderDataset(self.root, "train", self.img_size, train=True, sizes=self.train_sizes)

    def val_dataset(self) -> Dataset:
        """The validation dataset: protocol R at ``img_size``."""
        if self.dataset == "folder":
            return build_eval_dataset("folder", self.img_size, "R", None, root=self.root)
        return build_eval_dataset(self.dataset, self.img_size, "R", self.val_samples, root=self.root)

    def _loader(self, data: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(data, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        """Training batches; procedural scenes are already i.i.d., so only real data is shuffled."""
        return self._loader(self.train_dataset(), shuffle=self.dataset not in TASKS)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in a fixed order."""
        return self._loader(self.val_dataset(), shuffle=False)
