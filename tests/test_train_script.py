"""End-to-end runs of train.py (LightningCLI): every config parses, a tiny fit writes checkpoints and
logs, resuming from a checkpoint gives the same weights as an uninterrupted run, and DDP on 2 CPU
processes runs unchanged."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(c for c in (ROOT / "configs").glob("*.yaml") if not c.stem.startswith("video_"))  # image CLI
VIDEO_CONFIGS = sorted((ROOT / "configs").glob("video_dit_*.yaml"))
TINY = ["--model.size", "micro", "--data.img_size", "16", "--data.batch_size", "8", "--data.train_samples", "16",
        "--data.val_samples", "16", "--trainer.val_check_interval", "1.0",
        "--trainer.enable_model_summary", "false"]


def _train(args: list[str]):
    sys.path.insert(0, str(ROOT))
    try:
        import train
    finally:
        sys.path.remove(str(ROOT))
    return train.main(["fit", *args])


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_config_fits_on_a_tiny_setting(config, tmp_path):
    sizes = ["--data.train_sizes", "[16, 12]"] if "multires" in config.stem else []
    sizes += ["--model.peg_after", "[0]"] if "peg" in config.stem else []  # the micro ViT has 2 blocks
    cli = _train(["--config", str(config), *TINY, *sizes, "--trainer.max_steps", "2", "--trainer.default_root_dir",
                  str(tmp_path)])
    assert cli.trainer.global_step == 2
    ckpts = sorted(p.name for p in tmp_path.glob("logs/version_*/checkpoints/*.ckpt"))
    assert "last.ckpt" in ckpts and any(n.startswith("best-") for n in ckpts)
    assert list(tmp_path.glob("logs/version_*/metrics.csv")) and list(tmp_path.glob("logs/version_*/events.out.*"))


def _weights(cli) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in cli.model.state_dict().items()}


def test_resume_from_checkpoint_matches_an_uninterrupted_run(tmp_path):
    # one planned schedule of 6 steps; the interrupted run stops after the first epoch (2 steps)
    common = ["--config", str(ROOT / "configs" / "vit_rope_mixed.yaml"), *TINY, "--trainer.max_epochs", "-1",
              "--model.schedule_steps", "6"]
    full = _train([*common, "--trainer.max_steps", "6", "--trainer.default_root_dir", str(tmp_path / "full")])
    first = _train([*common, "--trainer.max_steps", "2", "--trainer.default_root_dir", str(tmp_path / "part")])
    ckpt = next((tmp_path / "part").glob("logs/version_*/checkpoints/last.ckpt"))
    resumed = _train([*common, "--trainer.max_steps", "6", "--trainer.default_root_dir", str(tmp_path / "resumed"),
                      "--ckpt_path", str(ckpt)])
    assert first.trainer.global_step == 2 and resumed.trainer.global_step == 6
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    assert not torch.equal(_weights(first)["model.head.weight"], a["model.head.weight"])


def test_ddp_on_two_cpu_processes(tmp_path):
    cmd = [sys.executable, str(ROOT / "train.py"), "fit", "--config", str(ROOT / "configs" / "vit_learned.yaml"),
           *TINY, "--trainer.max_steps", "2", "--trainer.default_root_dir", str(tmp_path),
           "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    assert "All distributed processes registered" in proc.stderr + proc.stdout
    assert list(tmp_path.glob("logs/version_*/checkpoints/last.ckpt"))


# ------------------------------------------------------------------------------ train.py video
VIDEO_TINY = ["--model.size", "micro", "--data.num_frames", "2", "--data.size", "16", "--data.batch_size", "2",
              "--data.train_samples", "4", "--data.val_samples", "2", "--trainer.max_steps", "2",
              "--trainer.val_check_interval", "1.0", "--trainer.limit_val_batches", "1",
              "--trainer.enable_model_summary", "false"]


def _video_overrides(config: Path) -> list[str]:
    """What the micro model (width 32, 2 heads of 16, depth 2) needs besides VIDEO_TINY."""
    extra = ["--model.num_heads", "1"] if "rope" in config.stem else []   # head dim 32 keeps the 8/12/12 split
    return extra + (["--model.peg_after", "[0]"] if "peg" in config.stem else [])  # 2 blocks


def test_there_is_a_video_config_for_every_3d_pe_family():
    assert {c.stem for c in VIDEO_CONFIGS} >= {f"video_dit_{n}" for n in
                                               ("rope", "sincos", "sincos_separable", "learned", "peg", "rel_decomposed")}


@pytest.mark.parametrize("config", VIDEO_CONFIGS, ids=[c.stem for c in VIDEO_CONFIGS])
def test_every_video_config_fits_on_a_tiny_setting(config, tmp_path):
    cmd = [sys.executable, str(ROOT / "train.py"), "video", "fit", "--config", str(config), *VIDEO_TINY,
           *_video_overrides(config), "--trainer.default_root_dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LightningCLI's args parameter" not in proc.stderr
    ckpts = sorted(p.name for p in tmp_path.glob("logs/version_*/checkpoints/*.ckpt"))
    assert "last.ckpt" in ckpts and any(n.startswith("best-") for n in ckpts)
    assert list(tmp_path.glob("logs/version_*/metrics.csv")) and list(tmp_path.glob("logs/version_*/events.out.*"))


def test_video_checkpoint_loads_and_samples_a_longer_clip(tmp_path):
    from visionpe.training import VideoDiffusionModule

    config = ROOT / "configs" / "video_dit_rope.yaml"
    cli = _train_video(["--config", str(config), *VIDEO_TINY, *_video_overrides(config),
                        "--trainer.default_root_dir", str(tmp_path)])
    assert cli.trainer.global_step == 2
    assert cli.model.model.video_size == (2, 16, 16) and cli.model.model.num_classes == 3  # linked from the data
    ckpt = next(tmp_path.glob("logs/version_*/checkpoints/last.ckpt"))
    module = VideoDiffusionModule.load_from_checkpoint(ckpt, map_location="cpu")
    for name, value in cli.model.state_dict().items():
        torch.testing.assert_close(module.state_dict()[name], value, rtol=0, atol=0, msg=name)
    videos = module.sample(1, num_frames=4)
    assert videos.shape == (1, 3, 4, 16, 16)
    assert torch.isfinite(videos).all() and videos.min() >= 0 and videos.max() <= 1


def _train_video(args: list[str]):
    sys.path.insert(0, str(ROOT))
    try:
        import train
    finally:
        sys.path.remove(str(ROOT))
    return train.main(["video", "fit", *args])
