"""``visionpe bench length``: train a small video DiT per seed, then compare RoPE rules at longer lengths.

Per seed, a :class:`~visionpe.training.VideoDiffusionModule` with axial 3D RoPE is trained on
procedural bouncing-object clips of ``train_frames`` frames (``OUT/seed<s>/model.ckpt``; an existing
checkpoint with the same settings is reused).  Then :mod:`visionpe.length_eval` samples
``num_videos`` videos at every test length under every rule (the same noise for every rule), finds
RIFLEx's intrinsic component from the plain-extrapolation samples unless ``k`` is given, and
measures the videos; ground-truth clips of the same lengths are measured the same way as a
reference.  ``OUT/results.json``, ``OUT/results.md`` (mean ± std over seeds), ``OUT/results.png``
are written atomically at the end; every seed's GIF grids and filmstrips are in ``OUT/seed<s>/samples/``.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L

from .bench import device_name, fit_quietly, progress_bar, uses_gpu
from .data.video_procedural import VIDEO_SHAPES
from .length_eval import RULES, LengthEvalConfig, evaluate_length, write_length_reports
from .results import write_json
from .training.video_diffusion import VideoDiffusionModule

__all__ = ["LENGTH_PRESETS", "LengthBenchConfig", "length_config_from_args", "run_length_bench"]


@dataclass
class LengthBenchConfig:
    """Everything that determines the length benchmark's numbers (stored with every run).

    The defaults are the committed experiment (docs/results/length-mono-16px, base 16): one white
    square of fixed size on black at 16 px, 8 training frames, 4×4 patches and a temporal RoPE whose
    periods (6.3, 12.6, 25.1, 50.3 frames) are HunyuanVideo's first four, so 2× and 3× cross the
    12.6-frame intrinsic period.  The data-module defaults (random shapes and colours, 2 objects,
    textured background) are a harder scene that a CPU budget does not learn (length-pilot-16px).
    """

    rules: list[str] = field(default_factory=lambda: list(RULES))
    train_frames: int = 8
    test_frames: list[int] = field(default_factory=lambda: [8, 16, 24])
    size: int = 16
    num_objects: int = 1
    radius: list[float] = field(default_factory=lambda: [0.2, 0.2])
    noise_std: float = 0.0
    shapes: list[str] = field(default_factory=lambda: ["square"])
    palette: str = "mono"
    patch_size: list[int] = field(default_factory=lambda: [1, 4, 4])
    model_size: str = "tiny-cpu"
    rope_dims: list[int] = field(default_factory=lambda: [8, 12, 12])
    rope_base: float = 16.0
    objective: str = "flow-x"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    steps: int = 6000
    batch_size: int = 16
    lr: float = 5e-4
    num_videos: int = 32
    sample_steps: int = 25
    k: int | None = None
    riflex_mode: str = "repo"
    accelerator: str = "cpu"

    def run_key(self) -> str:
        """Hash of the settings a trained model depends on (not the rules, lengths or sampling)."""
        keys = ("train_frames", "size", "num_objects", "radius", "noise_std", "patch_size", "model_size", "rope_dims",
                "rope_base", "objective", "steps", "batch_size", "lr")
        settings = {k: getattr(self, k) for k in keys}
        if (self.shapes, self.palette) != (list(VIDEO_SHAPES), "random"):    # keeps the keys of runs made before these existed
            settings.update(shapes=list(self.shapes), palette=self.palette)
        blob = json.dumps(settings, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def eval_config(self, seed: int) -> LengthEvalConfig:
        return LengthEvalConfig(test_frames=list(self.test_frames), rules=list(self.rules),
                                num_videos=self.num_videos, sample_steps=self.sample_steps, seed=1000 + seed,
                                k=self.k, riflex_mode=self.riflex_mode, scene=self.data(seed).scene)

    def data(self, seed: int):
        """The :class:`~visionpe.data.VideoDataModule` of seed ``seed``'s training clips."""
        from .data.video_module import VideoDataModule

        return VideoDataModule(dataset="procedural", num_frames=self.train_frames, size=self.size,
                               batch_size=self.batch_size, train_samples=self.steps * self.batch_size,
                               val_samples=64, seed=seed, num_objects=self.num_objects, radius=tuple(self.radius),
                               noise_std=self.noise_std, shapes=tuple(self.shapes), palette=self.palette)


#: ``quick``: one seed, half the steps and 8 videos, end to end in about 5 minutes on 2 CPU cores (measured
#: 325 s; its samples are moving squares); ``full``: the defaults, the committed 3-seed experiment
LENGTH_PRESETS: dict[str, dict] = {
    "quick": {"seeds": [0], "steps": 3000, "num_videos": 8},
    "full": {},
}


def _train(cfg: LengthBenchConfig, seed: int, run_dir: Path, progress) -> tuple[VideoDiffusionModule, float]:
    L.seed_everything(seed, verbose=False)
    module = VideoDiffusionModule(
        pe="rope-axial", pe_kwargs={"dims": tuple(cfg.rope_dims), "base": cfg.rope_base}, size=cfg.model_size,
        video_size=(cfg.train_frames, cfg.size, cfg.size), patch_size=tuple(cfg.patch_size),
        objective=cfg.objective, lr=cfg.lr)
    return fit_quietly(module, cfg.data(seed), cfg.steps, cfg.accelerator, run_dir, run_dir / "model.ckpt", progress)


def run_length_bench(cfg: LengthBenchConfig, out: str | Path, progress: bool = True) -> dict:
    """Train (or reuse) one model per seed, evaluate every rule and length, write the reports.

    Returns:
        the ``results.json`` content.
    """
    out = Path(out)
    if not cfg.seeds:
        raise ValueError("no seeds given; pass e.g. --seeds 0 1 2")
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise ValueError(f"steps and batch size must be positive, got {cfg.steps} and {cfg.batch_size}")
    if cfg.train_frames not in cfg.test_frames:
        raise ValueError(f"the test lengths {cfg.test_frames} must include the training length {cfg.train_frames} "
                         f"(the 1x reference every rule is compared with)")
    key = cfg.run_key()

    per_seed = []
    with progress_bar(disable=not progress) as bar:
        overall = bar.add_task("seeds", total=len(cfg.seeds))
        for seed in cfg.seeds:
            run_dir = out / f"seed{seed}"
            record_path = run_dir / "eval.json"
            bar.update(overall, description=f"seed {seed}")
            if record_path.exists() and json.loads(record_path.read_text()).get("run_key") == key:
                record = json.loads(record_path.read_text())
            else:
                ckpt = run_dir / "model.ckpt"
                meta = run_dir / "train.json"
                if ckpt.exists() and meta.exists() and json.loads(meta.read_text()).get("run_key") == key:
                    device = "cuda" if uses_gpu(cfg.accelerator) else "cpu"
                    module = VideoDiffusionModule.load_from_checkpoint(ckpt, map_location=device).eval()
                    train_s = json.loads(meta.read_text())["train_seconds"]
                else:
                    module, train_s = _train(cfg, seed, run_dir, bar)
                    write_json(meta, {"run_key": key, "train_seconds": train_s, "config": asdict(cfg)})
                start = time.perf_counter()
                record = evaluate_length(module, cfg.eval_config(seed), run_dir, progress=bar, sample_grids=True)
                record.update(run_key=key, seed=seed, train_seconds=train_s, device=device_name(cfg.accelerator),
                              eval_seconds=time.perf_counter() - start)
                write_json(record_path, record)
            per_seed.append(record)
            bar.advance(overall)
    results = write_length_reports(out, per_seed, asdict(cfg), cfg.train_frames)
    return results


def length_config_from_args(preset: str | None, overrides: dict) -> LengthBenchConfig:
    """A :class:`LengthBenchConfig` from a preset name and the options given on the command line."""
    base = dict(LENGTH_PRESETS["quick" if preset == "quick" else "full"])
    base.update({k: v for k, v in overrides.items() if v is not None})
    return LengthBenchConfig(**base)
