"""The user's own images in torchvision ImageFolder layout (``root/train/<class>/*.jpg``, ``root/val/<class>/*.jpg``).

Protocol R only, with the DeiT/ResFormer recipes:

* train: ``RandomResizedCrop(size)`` (scale ``(0.08, 1)``, bicubic) and a horizontal flip with probability 1/2;
  with several ``sizes`` the same crop and flip are resized to each size (ResFormer multi-resolution);
* eval: ``Resize(int(size / 0.875))`` (shorter side, bicubic) then ``CenterCrop(size)``.

Images are read by torchvision's ``ImageFolder`` (PIL, converted to RGB).  The random crop uses torch's
global generator, which Lightning seeds per worker.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import InterpolationMode, RandomResizedCrop

__all__ = ["CROP_RATIO", "folder_classes", "ImageFolderDataset"]

CROP_RATIO = 0.875
_SCALE, _RATIO = (0.08, 1.0), (3 / 4, 4 / 3)
_LAYOUT = "root/train/<class>/*.jpg and root/val/<class>/*.jpg"


def folder_classes(root: str | Path, split_dir: str = "train") -> list[str]:
    """Sorted class names (sub-directories) of ``root/split_dir``, each checked to hold at least one image.

    Raises:
        ValueError: ``root`` or ``root/split_dir`` is missing, has no class folders, or a class folder has
            no image with one of torchvision's extensions.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"image folder root {root} does not exist; point root= at a directory laid out as {_LAYOUT}")
    split = root / split_dir
    if not split.is_dir():
        raise ValueError(f"{split} does not exist; the image folder must be laid out as {_LAYOUT}")
    classes = sorted(d.name for d in split.iterdir() if d.is_dir())
    if not classes:
        raise ValueError(f"{split} has no class sub-directories; put each class's images in {split}/<class>/")
    empty = [c for c in classes
             if not any(p.is_file() and p.suffix.lower() in IMG_EXTENSIONS for p in (split / c).rglob("*"))]
    if empty:
        raise ValueError(f"class folder(s) {', '.join(empty)} in {split} hold no images (extensions "
                         f"{', '.join(IMG_EXTENSIONS)}); add images or remove the folder")
    return classes


class ImageFolderDataset(Dataset):
    """Images from ``root/split_dir/<class>/``, cropped to ``size`` (protocol R).

    Item ``i`` is ``(image float32 (3, size, size) in [0, 1], label int)``, or with ``sizes``
    ``(tuple of images (3, s, s) of the same crop for each s in sizes, label)``.  Labels index the sorted
    class folder names; a split other than ``train`` must have the same class folders as ``root/train``
    (when that exists) so that labels agree.

    Args:
        root: the dataset directory.
        split_dir: sub-directory of the split (``"train"``, ``"val"``).
        size: output side in pixels (with ``sizes``: one of them).
        train: random-resized-crop + flip (True) or resize + centre crop (False).
        sizes: several output sizes per item (multi-resolution training).
    """

    def __init__(self, root: str | Path, split_dir: str, size: int, train: bool,
                 sizes: Sequence[int] | None = None) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer number of pixels, got {size!r}")
        if sizes is not None:
            sizes = tuple(sizes)
            if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
                raise ValueError(f"sizes must be a non-empty list of positive integers, got {sizes!r}")
            if size not in sizes:
                raise ValueError(f"size={size} must be one of sizes={sizes} (the primary resolution)")
        root = Path(root).expanduser()
        classes = folder_classes(root, split_dir)
        if split_dir != "train" and (root / "train").is_dir():
            train_classes = folder_classes(root, "train")
            if classes != train_classes:
                raise ValueError(f"{root / split_dir} has classes {classes} but {root / 'train'} has {train_classes}; "
                                 f"both splits need the same class folders so that labels agree")
        self.folder = ImageFolder(str(root / split_dir))
        self.classes = classes
        self.size, self.train, self.sizes = size, bool(train), sizes

    @property
    def num_classes(self) -> int:
        """Number of class folders."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.folder)

    def _views(self, image: Image.Image) -> tuple[torch.Tensor, ...]:
        sizes = self.sizes if self.sizes is not None else (self.size,)
        if self.train:
            top, left, height, width = RandomResizedCrop.get_params(image, _SCALE, _RATIO)
            flip = bool(torch.rand(()) < 0.5)
            views = []
            for s in sizes:
                view = TF.resized_crop(image, top, left, height, width, [s, s], InterpolationMode.BICUBIC,
                                       antialias=True)
                views.append(TF.hflip(view) if flip else view)
        else:
            views = [TF.center_crop(TF.resize(image, int(s / CROP_RATIO), InterpolationMode.BICUBIC,
                                              antialias=True), [s, s]) for s in sizes]
        return tuple(TF.to_tensor(v) for v in views)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | tuple[torch.Tensor, ...], int]:
        image, label = self.folder[index]
        views = self._views(image)
        return (views if self.sizes is not None else views[0]), int(label)
