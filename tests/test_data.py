"""Datasets: procedural Dir8/Abs9 (determinism, labels, protocols R and C), Fashion-MNIST, image folders, data module."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionpe.data import (
    FashionMNIST,
    FashionMNISTNotFoundError,
    ImageDataModule,
    ImageFolderDataset,
    ProceduralDataset,
    build_eval_dataset,
    dataset_info,
    render,
    render_canvas,
)
from visionpe.data.procedural import _abs9_offsets

FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


def _area_downsample(image: torch.Tensor, factor: int) -> torch.Tensor:
    c, h, w = image.shape
    return image.reshape(c, h // factor, factor, w // factor, factor).mean(dim=(2, 4))


# ------------------------------------------------------------------------------------------ procedural
@pytest.mark.parametrize("task", ["dir8", "abs9"])
def test_item_is_a_pure_function_of_seed_and_index(task):
    a = ProceduralDataset(task, 32, 100, seed=7, zoom=(1.0, 1.5))
    b = ProceduralDataset(task, 32, 100, seed=7, zoom=(1.0, 1.5))
    for i in (0, 5, 99):
        (xa, ya), (xb, yb) = a[i], b[i]
        assert torch.equal(xa, xb) and ya == yb
        assert xa.dtype == torch.float32 and xa.shape == (3, 32, 32)
        assert 0.0 <= xa.min() and xa.max() <= 1.0
    assert not torch.equal(a[0][0], a[1][0])
    assert not torch.equal(a[0][0], ProceduralDataset(task, 32, 100, seed=8)[0][0])
    with pytest.raises(IndexError):
        a[100]


@pytest.mark.parametrize("task,classes", [("dir8", 8), ("abs9", 9)])
def test_labels_in_range_and_balanced(task, classes):
    data = ProceduralDataset(task, 8, 400, seed=0, zoom=(1.0, 1.5))
    labels = np.array([data.scene(i).label for i in range(len(data))])
    counts = np.bincount(labels, minlength=classes)
    assert len(counts) == classes
    expected = len(labels) / classes
    assert counts.min() > 0.5 * expected and counts.max() < 1.5 * expected, counts


def test_dir8_label_matches_geometry():
    data = ProceduralDataset("dir8", 32, 300, seed=1, zoom=(1.0, 1.5))
    for i in range(len(data)):
        s = data.scene(i)
        dx = s.square_center[0] - s.disc_center[0]
        dy = s.disc_center[1] - s.square_center[1]        # y grows downwards in the image
        angle = math.degrees(math.atan2(dy, dx)) % 360
        offset = (angle - 45 * s.label + 180) % 360 - 180
        assert abs(offset) <= 12 + 1e-9, (i, angle, s.label)
        gap = math.hypot(dx, dy) - s.disc_radius - s.square_half * math.sqrt(2)
        assert gap > 0                                       # the objects never touch
        square_extent = s.square_half * (abs(math.cos(s.square_angle)) + abs(math.sin(s.square_angle)))
        for x, y, ext in ((*s.disc_center, s.disc_radius), (*s.square_center, square_extent)):
            assert 0.02 - 1e-9 <= min(x, y) - ext and max(x, y) + ext <= 0.98 + 1e-9
    with pytest.raises(ValueError, match="zoom"):
        ProceduralDataset("dir8", 32, 10, seed=0, zoom=(1.0, 3.0))


def test_abs9_label_is_the_disc_cell_with_margin():
    data = ProceduralDataset("abs9", 32, 300, seed=2, zoom=(1.0, 1.5))
    for i in range(len(data)):
        s = data.scene(i)
        x, y = s.disc_center
        assert s.label == 3 * int(3 * y) + int(3 * x)
        for v in (x, y):
            assert abs(3 * v - round(3 * v)) >= 3 * 0.04 - 1e-9
            assert 0.02 - 1e-9 <= v - s.disc_radius and v + s.disc_radius <= 0.98 + 1e-9


@pytest.mark.parametrize("task", ["dir8", "abs9"])
def test_protocol_r_renders_the_same_scene_at_every_size(task):
    small = ProceduralDataset(task, 32, 20, seed=3)
    large = ProceduralDataset(task, 64, 20, seed=3)
    diffs = []
    for i in range(len(small)):
        (x32, y32), (x64, y64) = small[i], large[i]
        assert y32 == y64
        diffs.append((_area_downsample(x64, 2) - x32).abs().mean().item())
    assert max(diffs) < 0.01, diffs
    other = ProceduralDataset(task, 32, 20, seed=4)
    assert (_area_downsample(large[0][0], 2) - other[0][0]).abs().mean() > 0.05


def test_protocol_c_keeps_object_pixel_size_and_embeds_the_base_rendering():
    base = ProceduralDataset("abs9", 32, 10, seed=5)
    canvas = ProceduralDataset("abs9", 64, 10, seed=5, protocol="C")
    for i in range(len(base)):
        scene, place = canvas.scene(i), canvas.canvas(i)
        x = canvas[i][0]
        assert x.shape == (3, 64, 64)
        ox, oy = place.offset
        patch = x[:, oy:oy + 32, ox:ox + 32]
        assert (patch - base[i][0]).abs().max() < 1e-4          # same pixels as the 32-px rendering
        # disc area in pixels (coverage of a white disc on black) is the same on the canvas as at 32 px
        mask = dataclasses.replace(scene, background=np.zeros(3), noise=np.zeros_like(scene.noise),
                                   disc_color=np.ones(3))
        blank = dataclasses.replace(place, lattice=np.zeros_like(place.lattice))
        area_32, area_64 = render(mask, 32)[0].sum(), render_canvas(mask, blank)[0].sum()
        assert area_64 == pytest.approx(area_32, rel=1e-6)
        assert area_32 == pytest.approx(math.pi * (scene.disc_radius * 32) ** 2, rel=0.03)


def test_protocol_c_abs9_label_is_the_canvas_cell():
    data = ProceduralDataset("abs9", 96, 60, seed=6, protocol="C")
    for i in range(len(data)):
        scene, place = data.scene(i), data.canvas(i)
        cx = place.offset[0] + scene.disc_center[0] * 32
        cy = place.offset[1] + scene.disc_center[1] * 32
        assert data[i][1] == 3 * int(3 * cy / 96) + int(3 * cx / 96)
        for v in (cx, cy):
            assert min(abs(v - 32), abs(v - 64)) >= 0.04 * 96
    # a valid placement exists for every disc position and canvas size up to 5x
    centres = np.linspace(0.02, 0.98, 601)
    centres = centres[np.abs(3 * centres - np.round(3 * centres)) >= 0.12]
    for size in range(32, 161):
        assert all(len(_abs9_offsets(c, size, 32)) for c in centres), size


def test_protocol_c_smaller_than_base_raises():
    with pytest.raises(ValueError, match="base_size"):
        ProceduralDataset("dir8", 24, 10, seed=0, protocol="C")
    with pytest.raises(ValueError, match="protocol"):
        ProceduralDataset("dir8", 32, 10, seed=0, protocol="X")


def test_multi_size_items_share_scene_and_label():
    data = ProceduralDataset("dir8", 32, 10, seed=0, zoom=(1.0, 1.5), sizes=(32, 24, 20))
    single = ProceduralDataset("dir8", 24, 10, seed=0, zoom=(1.0, 1.5))
    views, label = data[3]
    assert [tuple(v.shape) for v in views] == [(3, 32, 32), (3, 24, 24), (3, 20, 20)]
    assert label == single[3][1] and torch.equal(views[1], single[3][0])
    with pytest.raises(ValueError, match="one of sizes"):
        ProceduralDataset("dir8", 16, 10, seed=0, sizes=(32, 24))


# ------------------------------------------------------------------------------------------ Fashion-MNIST
def _require_fashion_mnist() -> None:
    if not FASHION_ROOT.is_dir():
        pytest.fail(f"{FASHION_ROOT} is missing: run `apt-get install dataset-fashion-mnist`")


def test_fashion_mnist_counts_shapes_and_protocols():
    _require_fashion_mnist()
    train, test = FashionMNIST("train"), FashionMNIST("test")
    assert (len(train), len(test)) == (60_000, 10_000)
    assert np.array_equal(np.bincount(test.labels), np.full(10, 1000))
    x, y = test[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0 <= y < 10
    assert 0.0 <= x.min() and x.max() <= 1.0
    up, _ = FashionMNIST("test", size=56, limit=5)[0]
    assert up.shape == (1, 56, 56) and 0.0 <= up.min() and up.max() <= 1.0
    assert (_area_downsample(up, 2) - x).abs().mean() < 0.05
    canvas = FashionMNIST("test", size=64, protocol="C", limit=5, seed=1)
    c0 = canvas[0][0]
    assert c0.shape == (1, 64, 64) and c0.sum().item() == pytest.approx(x.sum().item(), rel=1e-5)
    assert torch.equal(c0, FashionMNIST("test", size=64, protocol="C", limit=5, seed=1)[0][0])
    views, label = FashionMNIST("train", size=28, sizes=(28, 20), limit=3)[1]
    assert [tuple(v.shape) for v in views] == [(1, 28, 28), (1, 20, 20)] and label == train[1][1]
    with pytest.raises(ValueError, match="base_size"):
        FashionMNIST("test", size=20, protocol="C")


def test_fashion_mnist_missing_root_names_the_install_command(tmp_path):
    with pytest.raises(FashionMNISTNotFoundError) as err:
        FashionMNIST("test", root=tmp_path)
    assert "apt-get install dataset-fashion-mnist" in str(err.value) and "root=" in str(err.value)
    assert isinstance(err.value, FileNotFoundError)


# ------------------------------------------------------------------------------------------ image folder
def _write_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2)):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for j in range(n):
                pixels = rng.integers(0, 256, (40 + 8 * j, 50, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{j}.png")
    return root


def test_image_folder_dataset(tmp_path):
    root = _write_folder(tmp_path / "data")
    train = ImageFolderDataset(root, "train", 16, train=True)
    val = ImageFolderDataset(root, "val", 16, train=False)
    assert (len(train), len(val), train.num_classes) == (6, 4, 2)
    x, y = train[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == 0
    assert val[3][1] == 1 and torch.equal(val[0][0], val[0][0])
    views, _ = ImageFolderDataset(root, "train", 16, train=True, sizes=(16, 8))[4]
    assert [tuple(v.shape) for v in views] == [(3, 16, 16), (3, 8, 8)]
    assert dataset_info("folder", root) == (2, 3, 224)

    with pytest.raises(ValueError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nowhere", "train", 16, train=True)
    with pytest.raises(ValueError, match="does not exist"):
        ImageFolderDataset(root, "test", 16, train=False)
    (root / "val" / "bird").mkdir()
    with pytest.raises(ValueError, match="bird"):
        ImageFolderDataset(root, "val", 16, train=False)


# ------------------------------------------------------------------------------------------ data module
def test_data_module_batches(tmp_path):
    _require_fashion_mnist()
    dm = ImageDataModule("dir8", img_size=32, batch_size=8, train_samples=16, val_samples=8)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and y.shape == (8,) and (dm.num_classes, dm.in_chans) == (8, 3)
    assert next(iter(dm.val_dataloader()))[0].shape == (8, 3, 32, 32)

    multi = ImageDataModule("abs9", img_size=32, train_sizes=[32, 24, 20], batch_size=4, train_samples=8)
    views, y = next(iter(multi.train_dataloader()))
    assert [tuple(v.shape) for v in views] == [(4, 3, 32, 32), (4, 3, 24, 24), (4, 3, 20, 20)]

    fm = ImageDataModule("fashion-mnist", img_size=28, batch_size=8, val_samples=16)
    assert next(iter(fm.train_dataloader()))[0].shape == (8, 1, 28, 28) and (fm.num_classes, fm.in_chans) == (10, 1)
    assert len(fm.val_dataset()) == 16

    root = _write_folder(tmp_path / "data")
    folder = ImageDataModule("folder", root=str(root), img_size=16, batch_size=4)
    assert next(iter(folder.train_dataloader()))[0].shape == (4, 3, 16, 16) and folder.num_classes == 2
    assert len(folder.val_dataset()) == 4

    with pytest.raises(ValueError, match="root"):
        ImageDataModule("folder")
    with pytest.raises(ValueError, match="12345"):
        ImageDataModule("dir8", seed=12345)
    with pytest.raises(ValueError, match="train_sizes"):
        ImageDataModule("dir8", img_size=32, train_sizes=[24, 20])


def test_build_eval_dataset():
    _require_fashion_mnist()
    r = build_eval_dataset("dir8", 48, "R", 5)
    c = build_eval_dataset("abs9", 64, "C", 5, base_size=32)
    assert r[0][0].shape == (3, 48, 48) and c[0][0].shape == (3, 64, 64)
    assert r[0][1] == build_eval_dataset("dir8", 16, "R", 5)[0][1]
    fm = build_eval_dataset("fashion-mnist", 56, "C", 7)
    assert len(fm) == 7 and fm[0][0].shape == (1, 56, 56)
    assert dataset_info("dir8") == (8, 3, 32) and dataset_info("fashion-mnist") == (10, 1, 28)
    with pytest.raises(ValueError, match="num_samples"):
        build_eval_dataset("dir8", 32, "R", None)
    with pytest.raises(ValueError, match="unknown dataset"):
        build_eval_dataset("cifar", 32, "R", 5)


def test_dir8_disc_is_dark_and_square_light_so_the_direction_has_a_polarity():
    from visionpe.data.procedural import DARK, LIGHT, MIN_CONTRAST, sample_scene

    rng = np.random.default_rng(0)
    for _ in range(200):
        scene = sample_scene("dir8", rng, zoom=1.2)
        assert np.all((DARK[0] <= scene.disc_color) & (scene.disc_color <= DARK[1]))
        assert np.all((LIGHT[0] <= scene.square_color) & (scene.square_color <= LIGHT[1]))
        assert np.linalg.norm(scene.disc_color - scene.background) >= MIN_CONTRAST
        assert np.linalg.norm(scene.square_color - scene.background) >= MIN_CONTRAST


def test_benchmark_run_key_changes_with_the_task_version():
    from visionpe.bench import BenchConfig

    assert BenchConfig(pes=["none"], dataset="dir8").run_key() != BenchConfig(pes=["none"], dataset="abs9").run_key()
    # real datasets have no task version: the committed Fashion-MNIST runs keep their key
    import json

    committed = json.loads((Path(__file__).resolve().parents[1] / "docs/results/fmnist/results.json").read_text())
    fmnist = BenchConfig(pes=["none"], dataset="fashion-mnist", train_res=28, steps=1000)
    assert {run["run_key"] for run in committed["runs"]} == {fmnist.run_key()}
