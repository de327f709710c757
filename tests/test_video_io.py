"""GIF grids and filmstrips: every frame is written, tiles land where make_grid puts them, bad input fails."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from visionpe.video_io import save_filmstrip, save_video_grid, video_grid_frames


def test_grid_frames_put_each_video_in_its_tile():
    videos = torch.zeros(4, 3, 5, 8, 8)
    videos[3, :, 2] = 1.0                                        # video 3 is white at frame 2 only
    frames = video_grid_frames(videos, nrow=2, padding=2)
    assert frames.shape == (5, 2 + 2 * (8 + 2), 2 + 2 * (8 + 2), 3)
    tile = (slice(12, 20), slice(12, 20))                        # row 1, column 1
    assert (frames[2][tile] == 255).all() and (frames[1][tile] == 0).all() and (frames[2][2:10, 2:10] == 0).all()


def test_gif_has_every_frame_and_loops(tmp_path):
    path = save_video_grid(torch.rand(3, 1, 7, 8, 8), tmp_path / "a" / "g.gif", nrow=3, fps=4, scale=3,
                           row_labels=["rule"])
    image = Image.open(path)
    assert image.n_frames == 7 and image.info["loop"] == 0 and image.info["duration"] == 250
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert list(tmp_path.joinpath("a").iterdir()) == [path]      # no temporary file left behind


def test_filmstrip_rows_are_videos_and_columns_frames(tmp_path):
    videos = torch.rand(2, 3, 6, 8, 8)
    path = save_filmstrip(videos, tmp_path / "f.png", every=2, scale=1)
    width, height = Image.open(path).size
    assert (width, height) == (2 + 3 * 10, 2 + 2 * 10)
    strip = np.asarray(Image.open(path))
    expected = (videos[1, :, 4].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(strip[12:20, 22:30], expected)          # video 1, third shown frame (t = 4)


@pytest.mark.parametrize("videos,match", [
    (torch.rand(3, 8, 8), r"\(N, C, T, H, W\)"),
    (torch.rand(1, 2, 3, 8, 8), "C = 1 or 3"),
    (torch.rand(1, 3, 3, 8, 8) * 2, r"floats in \[0, 1\]"),
])
def test_bad_videos(videos, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        save_video_grid(videos, tmp_path / "g.gif")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="row labels"):
        save_video_grid(torch.rand(4, 3, 2, 8, 8), tmp_path / "g.gif", nrow=2, row_labels=["one"])
    with pytest.raises(ValueError, match="every"):
        save_filmstrip(torch.rand(1, 3, 2, 8, 8), tmp_path / "f.png", every=0)
    with pytest.raises(ValueError, match="fps"):
        save_video_grid(torch.rand(1, 3, 2, 8, 8), tmp_path / "g.gif", fps=0)
