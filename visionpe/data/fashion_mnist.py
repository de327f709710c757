"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist``, at any resolution.

The package installs ``/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``
(60,000 train and 10,000 test 28×28 grayscale images, 10 classes).  The idx files are decoded with numpy
once per process and cached.

Protocols (as for the procedural tasks):

* ``"R"``: the 28-px image resized to ``size`` (bicubic with antialiasing, clamped to ``[0, 1]``
  because bicubic overshoots at edges).
* ``"C"``: the image at ``base_size`` px (the 28-px original when ``base_size = 28``, else its protocol-R
  resize) pasted at a random integer location on a zero canvas of ``size`` px; the location is drawn
  from ``numpy.random.default_rng([seed, index, size])``.
"""
from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["DEFAULT_ROOT", "CLASSES", "FashionMNISTNotFoundError", "load_fashion_mnist", "FashionMNIST"]

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
NATIVE_SIZE = 28
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000)}
_CACHE: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}


class FashionMNISTNotFoundError(FileNotFoundError):
    """The Fashion-MNIST idx files are not where they were looked for."""


def _read_idx(path: Path, magic: int, shape: tuple[int, ...]) -> np.ndarray:
    """Decode a gzip idx file with the given magic number and shape (uint8)."""
    data = gzip.open(path).read()
    header = 4 * (1 + len(shape))
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(len(shape)))
    if int.from_bytes(data[:4], "big") != magic or dims != shape or len(data) != header + int(np.prod(shape)):
        raise ValueError(f"{path} is not a Fashion-MNIST idx file of shape {shape} (header says {dims}); "
                         f"reinstall with `apt-get install --reinstall dataset-fashion-mnist`")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def load_fashion_mnist(split: str = "train", root: str | Path = DEFAULT_ROOT) -> tuple[np.ndarray, np.ndarray]:
    """Decoded Fashion-MNIST split, cached per process.

    Returns:
        ``(images uint8 (N, 28, 28), labels int64 (N,))`` with ``N`` 60,000 (train) or 10,000 (test);
        read-only arrays shared by every caller.
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root).expanduser().resolve()
    key = (str(root), split)
    if key not in _CACHE:
        image_file, label_file, n = _FILES[split]
        missing = [name for name in (image_file, label_file) if not (root / name).is_file()]
        if missing:
            raise FashionMNISTNotFoundError(
                f"Fashion-MNIST file(s) {', '.join(missing)} not found in {root}. Install the Debian package "
                f"with `apt-get install dataset-fashion-mnist` (as root), or pass root= the directory holding "
                f"a copy of the four *-ubyte.gz files")
        images = _read_idx(root / image_file, 2051, (n, NATIVE_SIZE, NATIVE_SIZE))
        labels = _read_idx(root / label_file, 2049, (n,)).astype(np.int64)
        labels.flags.writeable = False
        _CACHE[key] = (images, labels)
    return _CACHE[key]


def _resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic antialiased resize of ``(C, H, W)`` to ``(C, size, size)``, clamped to ``[0, 1]``."""
    if image.shape[-1] == size and image.shape[-2] == size:
        return image
    out = F.interpolate(image[None], size=(size, size), mode="bicubic", antialias=True, align_corners=False)[0]
    return out.clamp_(0.0, 1.0)


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class FashionMNIST(Dataset):
    """Fashion-MNIST as a map-style dataset at any resolution.

    Item ``i`` is ``(image float32 (1, size, size) in [0, 1], label int)``, or with ``sizes``
    ``(tuple of images (1, s, s) for each s in sizes, label)``.

    Args:
        split: ``"train"`` (60,000) or ``"test"`` (10,000).
        size: image side in pixels (with ``sizes``: one of them).
        protocol: ``"R"`` (resize) or ``"C"`` (paste the ``base_size`` image on a zero canvas of ``size``).
        base_size: pixel size the image has before protocol C pastes it (28 = the original).
        root: directory with the four ``*-ubyte.gz`` files.
        sizes: several sizes per item (multi-resolution training; protocol R only).
        limit: use only the first ``limit`` images of the split.
        seed: non-negative integer seeding the protocol-C placement.
    """

    def __init__(self, split: str = "train", size: int = 28, protocol: str = "R", base_size: int = NATIVE_SIZE,
                 root: str | Path = DEFAULT_ROOT, sizes: Sequence[int] | None = None, limit: int | None = None,
                 seed: int = 0) -> None:
        _check_positive("size", size)
        _check_positive("base_size", base_size)
        if protocol not in ("R", "C"):
            raise ValueError(f"protocol must be 'R' or 'C', got {protocol!r}")
        if protocol == "C" and size < base_size:
            raise ValueError(f"protocol C pastes the {base_size}-px image on a larger canvas, so size must be >= "
                             f"base_size; got size={size}. Use protocol 'R' for smaller images")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if sizes is not None:
            sizes = tuple(sizes)
            if not sizes:
                raise ValueError("sizes is empty; pass e.g. (28, 20) or None for a single size")
            for s in sizes:
                _check_positive("every entry of sizes", s)
            if size not in sizes:
                raise ValueError(f"size={size} must be one of sizes={sizes} (the primary resolution)")
            if protocol != "R":
                raise ValueError("multi-size items resize the same image to several sizes, which is protocol 'R'; "
                                 "pass protocol='R' or sizes=None")
        self.images, self.labels = load_fashion_mnist(split, root)
        if limit is not None:
            _check_positive("limit", limit)
            if limit > len(self.labels):
                raise ValueError(f"limit={limit} exceeds the {len(self.labels)} images of the {split} split; "
                                 f"pass limit <= {len(self.labels)} or None for all")
        self.split, self.size, self.protocol, self.base_size = split, int(size), protocol, int(base_size)
        self.sizes, self.seed = sizes, int(seed)
        self.length = len(self.labels) if limit is None else int(limit)

    @property
    def num_classes(self) -> int:
        """Number of classes (10)."""
        return len(CLASSES)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor | tuple[torch.Tensor, ...], int]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of {self.length} images")
        image = torch.from_numpy(self.images[index].astype(np.float32) / 255.0)[None]
        label = int(self.labels[index])
        if self.sizes is not None:
            return tuple(_resize(image, s) for s in self.sizes), label
        if self.protocol == "R":
            return _resize(image, self.size), label
        patch = _resize(image, self.base_size)
        rng = np.random.default_rng([self.seed, int(index), self.size])
        ox, oy = (int(v) for v in rng.integers(0, self.size - self.base_size + 1, 2))
        canvas = torch.zeros(1, self.size, self.size)
        canvas[:, oy:oy + self.base_size, ox:ox + self.base_size] = patch
        return canvas, label
