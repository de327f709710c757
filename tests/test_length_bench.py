"""Length extrapolation: rules, RIFLEx's k, `visionpe bench length` and `visionpe eval length` end to end."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from visionpe.cli import main
from visionpe.length_eval import (
    LengthEvalConfig,
    estimate_intrinsic_component,
    evaluate_video_folder,
    reference_clips,
    temporal_rule,
    write_length_reports,
)
from visionpe.scaling import NTK, PI, RIFLEx, YaRN
from visionpe.training.video_diffusion import VideoDiffusionModule
from visionpe.video_io import save_video_grid

TINY = ["--steps", "2", "--num-videos", "2", "--sample-steps", "2", "--train-frames", "4", "--test-frames", "4", "8",
        "--seeds", "0", "--no-progress", "--num-objects", "1", "--radius", "0.2", "0.3", "--noise-std", "0.05",
        "--shapes", "disc", "square", "triangle", "--palette", "random", "--rope-base", "100",
        "--size", "32", "--patch-size", "1", "8", "8"]
#: the scene TINY trains on, as the ground-truth clips must render it (fps 8, default speed)
TINY_SCENE = {"fps": 8.0, "num_objects": 1, "speed": [0.2, 0.5], "radius": [0.2, 0.3], "noise_std": 0.05,
              "shapes": ["disc", "square", "triangle"], "palette": "random"}


def test_temporal_rules_are_the_scaling_objects_for_the_length_ratio():
    assert temporal_rule("none", 16, 32) is None
    assert temporal_rule("pi", 16, 32) == PI(2.0)
    assert temporal_rule("ntk", 16, 48) == NTK(3.0)
    assert temporal_rule("yarn", 16, 32) == YaRN(2.0, 16, alpha=1.0, beta=32.0)
    assert temporal_rule("riflex", 16, 32, k=2) == RIFLEx(32, k=2, mode="repo")
    with pytest.raises(ValueError, match="needs k"):
        temporal_rule("riflex", 16, 32)
    with pytest.raises(ValueError, match="unknown rule 'linear'"):
        temporal_rule("linear", 16, 32)


def test_intrinsic_component_from_observed_repetitions():
    # temporal dim 8, base 256: periods 2π·(1, 4, 16, 64) = 6.3, 25.1, 100.5, 402 frames
    est = estimate_intrinsic_component([22, 26, 25, 40], 8, 256.0)
    assert est["k"] == 2 and est["repetition_frame"] == 25.5
    assert est["period"] == pytest.approx(8 * torch.pi)
    with pytest.raises(ValueError, match="no repetition frames"):
        estimate_intrinsic_component([], 8, 256.0)


def test_reference_clips_are_fresh_renderings_at_every_length():
    short, long = reference_clips(2, 4, (16, 16)), reference_clips(2, 8, (16, 16))
    assert short.shape == (2, 3, 4, 16, 16) and long.shape == (2, 3, 8, 16, 16)
    assert torch.equal(long[:, :, :4], short)                   # the same scenes, continued


def _module(patch=(1, 8, 8), pe="rope-axial", pe_kwargs=None) -> VideoDiffusionModule:
    kwargs = {"dims": (4, 6, 6), "base": 256.0} if pe_kwargs is None else pe_kwargs
    return VideoDiffusionModule(pe=pe, pe_kwargs=kwargs, size="micro",
                                video_size=(4, 16, 16), patch_size=patch, objective="flow-x")


def test_reference_clips_follow_the_training_scene():
    clips = reference_clips(3, 2, (16, 16), scene={"num_objects": 1, "noise_std": 0.0})
    first = clips[:, :, 0]
    # a flat background: the corner pixels of most clips share one colour (one object cannot cover them all)
    corners = torch.stack([first[..., 0, 0], first[..., 0, -1], first[..., -1, 0], first[..., -1, -1]], dim=-1)
    assert (corners.std(dim=-1) < 1e-6).all(dim=-1).sum() >= 2
    assert not torch.equal(clips, reference_clips(3, 2, (16, 16)))


def test_procedural_scene_from_saved_data_hyperparameters():
    from visionpe.data.video_module import VideoDataModule, procedural_scene

    data = VideoDataModule(num_frames=4, size=16, stride=2, num_objects=3, radius=(0.1, 0.2), noise_std=0.0,
                           shapes=("square",), palette="mono")
    assert procedural_scene(dict(data.hparams)) == {"fps": 4.0, "num_objects": 3, "speed": (0.2, 0.5),
                                                    "radius": (0.1, 0.2), "noise_std": 0.0, "shapes": ("square",),
                                                    "palette": "mono"}
    # a checkpoint saved before shapes and palette existed renders the default scene
    old = {k: v for k, v in dict(data.hparams).items() if k not in ("shapes", "palette")}
    assert procedural_scene(old)["shapes"] == ("disc", "square", "triangle") and procedural_scene(old)["palette"] == "random"
    assert procedural_scene(None) is None
    assert procedural_scene({"dataset": "folder", "root": "clips"}) is None


def test_eval_config_rejects_what_the_model_cannot_run():
    with pytest.raises(ValueError, match="not divisible by the patch size 2"):
        LengthEvalConfig(test_frames=[4, 9]).check(_module(patch=(2, 8, 8)))
    with pytest.raises(ValueError, match="valid k are 1..2"):
        LengthEvalConfig(k=3).check(_module())
    with pytest.raises(ValueError, match="unknown rules"):
        LengthEvalConfig(rules=["none", "lin"]).check(_module())
    with pytest.raises(ValueError, match="evaluate it with --rules none"):
        LengthEvalConfig(rules=["none", "pi"]).check(_module(pe="sincos", pe_kwargs={}))
    with pytest.raises(ValueError, match="positive"):
        LengthEvalConfig(test_frames=[]).check(_module())
    with pytest.raises(ValueError, match="unknown scene parameters"):
        LengthEvalConfig(scene={"objects": 1}).check(_module())
    with pytest.raises(ValueError, match="num_objects"):
        LengthEvalConfig(scene={"num_objects": 0}).check(_module())


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("length") / "bench"
    assert main(["bench", "length", *TINY, "--out", str(out)]) == 0
    return out


def test_bench_length_writes_tables_plots_and_samples(bench_dir):
    results = json.loads((bench_dir / "results.json").read_text())
    assert results["methods"] == ["none", "pi", "ntk", "yarn", "riflex", "ground truth"]
    assert results["lengths"] == [4, 8]
    cell = results["summary"]["riflex"]["8"]
    for key in ("motion", "dynamic", "warp_error", "ssim", "sharpness_ratio_beyond"):
        assert cell[key]["n"] == 1
    assert len(cell["curves"]["top_motion"]) == 7              # one value per consecutive frame pair
    assert len(cell["curves"]["distance_to_first"]) == 8 and cell["curves"]["distance_to_first"][0] == 0.0
    run = results["runs"][0]
    assert run["rope"]["k"] in (1, 2) and run["rope"]["source"]
    assert run["config"]["scene"] == TINY_SCENE                # ground truth rendered like the training clips
    assert run["device"] == "cpu"
    # at the training length every rule is the identity: the same videos, the same numbers
    assert results["summary"]["pi"]["4"]["motion"] == results["summary"]["none"]["4"]["motion"]
    md = (bench_dir / "results.md").read_text()
    assert "NoRepeat" in md and "| ground truth |" in md and "4*" in md
    for name in ("results.png", "results-frames.png", "seed0/model.ckpt", "seed0/samples/length8.gif",
                 "seed0/samples/filmstrip-length8.png"):
        assert (bench_dir / name).stat().st_size > 0, name


def test_bench_length_resumes_finished_seeds(bench_dir, monkeypatch):
    import visionpe.length_bench as lb

    def no_training(*args, **kwargs):
        raise AssertionError("a finished seed was trained again")

    monkeypatch.setattr(lb, "_train", no_training)
    before = (bench_dir / "seed0" / "eval.json").read_text()
    assert main(["bench", "length", *TINY, "--out", str(bench_dir)]) == 0
    assert (bench_dir / "seed0" / "eval.json").read_text() == before


def test_eval_length_on_a_checkpoint_with_a_given_k(bench_dir, tmp_path):
    out = tmp_path / "eval"
    rc = main(["eval", "length", str(bench_dir / "seed0" / "model.ckpt"), "--frames", "4", "12", "--rules",
               "none,riflex", "--k", "1", "--num-videos", "2", "--sample-steps", "2", "--out", str(out),
               "--no-progress"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results["methods"] == ["none", "riflex", "ground truth"] and results["lengths"] == [4, 12]
    assert results["runs"][0]["rope"]["k"] == 1 and results["runs"][0]["rope"]["source"] == "given"
    assert results["config"]["scene"] == TINY_SCENE            # read from the checkpoint's data module
    # RIFLEx changes the 12-frame videos (k=1 has period 6.3 < 12 frames) but not the 4-frame ones
    s = results["summary"]
    assert s["riflex"]["4"]["warp_error"] == s["none"]["4"]["warp_error"]
    assert s["riflex"]["12"]["warp_error"] != s["none"]["12"]["warp_error"]
    assert (out / "samples" / "length12.gif").exists()


def test_eval_length_rejects_k_out_of_range(bench_dir, tmp_path):
    rc = main(["eval", "length", str(bench_dir / "seed0" / "model.ckpt"), "--k", "9", "--out", str(tmp_path),
               "--no-progress"])
    assert rc == 2 and not (tmp_path / "results.json").exists()


def test_eval_length_measures_a_folder_of_videos(tmp_path):
    folder = tmp_path / "videos"
    torch.manual_seed(0)
    for method in ("none", "riflex"):
        for i in range(2):
            save_video_grid(torch.rand(1, 3, 10, 16, 16), folder / method / f"{i}.gif", nrow=1, scale=1)
    out = tmp_path / "out"
    assert main(["eval", "length", "--videos", str(folder), "--period", "6", "--train-frames", "5", "--out", str(out),
                 "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["methods"] == ["none", "riflex"] and results["lengths"] == [10]
    assert results["summary"]["none"]["10"]["norepeat"]["mean"] == 100.0     # random frames never repeat


def test_video_folder_record_and_report_without_videos_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="no records"):
        write_length_reports(tmp_path, [], {}, 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError):
        evaluate_video_folder(tmp_path / "empty")


def test_parallel_bench_orders_per_seed_experiments_first():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    try:
        import parallel_bench
    finally:
        sys.path.pop(0)
    jobs, final = parallel_bench._jobs(["dir8", "length"], Path("out"), "cpu", {"length": ["--steps", "5"]})
    labels = [label for label, _ in jobs]
    assert labels[:3] == ["length-dit-s0", "length-dit-s1", "length-dit-s2"]
    assert labels[3:5] == ["dir8-none-s0", "dir8-learned-s0"] and labels[-1] == "dir8-rope-mixed-s2"
    assert "--steps" in jobs[0][1] and len(final) == 2


def test_intrinsic_component_is_searched_beyond_the_training_length():
    from visionpe.length_eval import _intrinsic
    from visionpe.rope import AxialRoPE

    # videos that loop every 6 frames: unrestricted Eq. 7 picks k=1 (period 6.3), which the 8 training
    # frames already cover; among the components beyond them, 25.1 frames (k=2) is the closest
    torch.manual_seed(0)
    loop = torch.rand(3, 3, 6, 8, 8)
    videos = torch.cat([loop, loop, loop, loop], dim=2)[:, :, :24]
    rope = AxialRoPE(dim=64, num_heads=2, num_axes=3, dims=(8, 12, 12), base=256.0)
    info = _intrinsic(LengthEvalConfig(), rope, train_latent=8, pt=1, none_longest=videos)
    assert info["eq7_k"] == 1 and info["k"] == 2 and info["repetition_frame"] == 6.0
    assert info["period"] == pytest.approx(8 * torch.pi)
    given = _intrinsic(LengthEvalConfig(k=3), rope, train_latent=8, pt=1, none_longest=videos)
    assert given["k"] == 3 and given["source"] == "given"


def test_eval_length_without_the_none_rule_still_samples_the_training_length(bench_dir, tmp_path):
    out = tmp_path / "only-riflex"
    rc = main(["eval", "length", str(bench_dir / "seed0" / "model.ckpt"), "--frames", "4", "8", "--rules", "riflex",
               "--num-videos", "2", "--sample-steps", "2", "--out", str(out), "--no-progress"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results["methods"] == ["riflex", "ground truth"] and results["lengths"] == [4, 8]


def test_bench_length_model_options_reach_the_config(monkeypatch, tmp_path):
    import visionpe.length_bench as lb

    seen = {}

    def capture(cfg, out, progress=True):
        seen["cfg"] = cfg
        raise SystemExit(0)

    monkeypatch.setattr(lb, "run_length_bench", capture)
    with pytest.raises(SystemExit):
        main(["bench", "length", "--patch-size", "1", "4", "4", "--model-size", "micro", "--rope-dims", "4", "6", "6",
              "--rope-base", "100", "--lr", "1e-3", "--out", str(tmp_path)])
    cfg = seen["cfg"]
    assert (cfg.patch_size, cfg.model_size, cfg.rope_dims, cfg.rope_base, cfg.lr) == ([1, 4, 4], "micro", [4, 6, 6],
                                                                                     100.0, 1e-3)
    default = lb.length_config_from_args(None, {})
    assert cfg.run_key() != default.run_key()          # a different model: not mistaken for a finished seed
    with pytest.raises(SystemExit):
        main(["bench", "length", "--shapes", "disc", "triangle", "--palette", "random", "--out", str(tmp_path)])
    scene = seen["cfg"]
    assert (scene.shapes, scene.palette) == (["disc", "triangle"], "random")
    assert scene.data(0).scene["shapes"] == ("disc", "triangle") and scene.eval_config(0).scene["palette"] == "random"
    assert scene.run_key() != default.run_key()
    assert (default.shapes, default.palette, default.rope_base, default.size) == (["square"], "mono", 16.0, 16)
    # a random-colour scene of all shapes keeps the key it had before shapes and palette existed
    full = lb.LengthBenchConfig(shapes=["disc", "square", "triangle"], palette="random")
    old = {k: getattr(full, k) for k in ("train_frames", "size", "num_objects", "radius", "noise_std", "patch_size",
                                         "model_size", "rope_dims", "rope_base", "objective", "steps",
                                         "batch_size", "lr")}
    import hashlib
    import json
    assert full.run_key() == hashlib.sha1(json.dumps(old, sort_keys=True).encode()).hexdigest()[:12]


def test_report_states_a_shared_intrinsic_component_once(bench_dir, tmp_path):
    record = json.loads((bench_dir / "seed0" / "eval.json").read_text())
    same = write_length_reports(tmp_path / "same", [record, {**record, "seed": 1}], {}, 4)
    md = (tmp_path / "same" / "results.md").read_text()
    assert f"the same in all 2 runs: k={record['rope']['k']}" in md and md.count(record["rope"]["source"]) == 1
    assert same["summary"]["none"]["8"]["motion"]["n"] == 2
    other = {**record, "seed": 1, "rope": {**record["rope"], "k": record["rope"]["k"] + 1}}
    write_length_reports(tmp_path / "differ", [record, other], {}, 4)
    assert "intrinsic component per run: k=" in (tmp_path / "differ" / "results.md").read_text()


def test_cli_scene_choices_match_the_dataset():
    from visionpe import length_cli
    from visionpe.data.video_procedural import VIDEO_PALETTES, VIDEO_SHAPES

    assert (length_cli.SCENE_SHAPES, length_cli.SCENE_PALETTES) == (VIDEO_SHAPES, VIDEO_PALETTES)
