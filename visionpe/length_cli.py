"""``visionpe eval length`` and ``visionpe bench length`` (length extrapolation of video diffusion)."""
from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from .models.sizes import VIDEO_DIT_SIZES
from .scaling import LENGTH_RULES as RULES

__all__ = ["add_parsers"]

#: the procedural scene's shapes and palettes (``data.video_procedural``, which imports torch: the parser must not)
SCENE_SHAPES = ("disc", "square", "triangle")
SCENE_PALETTES = ("random", "mono")


def _cmd_eval_length(args: argparse.Namespace, console: Console) -> int:
    from .length_eval import LengthEvalConfig, evaluate_length, evaluate_video_folder, write_length_reports

    out = Path(args.out)
    if args.videos:
        if args.checkpoint:
            raise ValueError("give either a checkpoint (to generate videos) or --videos DIR (to measure existing "
                             "videos), not both")
        record = evaluate_video_folder(args.videos, period=args.period, train_frames=args.train_frames,
                                       progress=not args.no_progress)
        results = write_length_reports(out, [record], {"videos": str(args.videos)}, args.train_frames)
    else:
        if not args.checkpoint:
            raise ValueError("give a video DiT checkpoint (from train.py video or visionpe bench length) or "
                             "--videos DIR")
        from .training.video_diffusion import VideoDiffusionModule

        import torch

        from .data.video_module import procedural_scene

        module = VideoDiffusionModule.load_from_checkpoint(args.checkpoint, map_location="cpu").eval()
        # the ground truth follows the training clips' scene when the checkpoint records its data module
        saved = torch.load(args.checkpoint, map_location="cpu", weights_only=False).get("datamodule_hyper_parameters")
        scene = procedural_scene(saved) or {}
        defaults = LengthEvalConfig()
        cfg = LengthEvalConfig(
            test_frames=args.frames or [module.model.video_size[0] * m for m in (1, 2, 3)],
            rules=args.rules or defaults.rules, num_videos=args.num_videos, sample_steps=args.sample_steps,
            seed=args.seed, k=args.k, riflex_mode=args.riflex_mode, scene=scene)
        from .bench import progress_bar

        with progress_bar(disable=args.no_progress, console=console) as bar:
            record = evaluate_length(module, cfg, out, progress=bar, sample_grids=True)
        results = write_length_reports(out, [record], {"checkpoint": str(args.checkpoint), **cfg.as_dict()},
                                       module.model.video_size[0])
    console.print((out / "results.md").read_text())
    console.print(f"wrote {out}/results.json, results.md, results.png, results-frames.png"
                  + (" and samples/" if not args.videos else ""))
    return 0 if results else 1


def _cmd_bench_length(args: argparse.Namespace, console: Console) -> int:
    from .length_bench import length_config_from_args, run_length_bench

    cfg = length_config_from_args("quick" if args.quick else None, {
        "rules": args.rules, "train_frames": args.train_frames, "test_frames": args.test_frames,
        "seeds": args.seeds, "steps": args.steps, "batch_size": args.batch_size, "num_videos": args.num_videos,
        "sample_steps": args.sample_steps, "k": args.k, "riflex_mode": args.riflex_mode,
        "accelerator": args.accelerator, "size": args.size, "num_objects": args.num_objects,
        "radius": args.radius, "noise_std": args.noise_std, "shapes": args.shapes, "palette": args.palette,
        "objective": args.objective,
        "patch_size": args.patch_size, "model_size": args.model_size, "rope_dims": args.rope_dims,
        "rope_base": args.rope_base, "lr": args.lr})
    console.print(f"[bold]visionpe bench length[/bold]: {len(cfg.seeds)} seeds x {cfg.steps} steps at "
                  f"{cfg.train_frames} frames, rules {', '.join(cfg.rules)} at {cfg.test_frames} frames -> {args.out}")
    run_length_bench(cfg, args.out, progress=not args.no_progress)
    console.print((Path(args.out) / "results.md").read_text())
    console.print(f"wrote {args.out}/results.json, results.md, results.png, results-frames.png; sample grids in "
                  f"{args.out}/seed<s>/samples/")
    return 0


def _rules(text: str) -> list[str]:
    return [r.strip() for r in text.split(",") if r.strip()]


def add_parsers(eval_parser: argparse._SubParsersAction, bench_parser: argparse._SubParsersAction) -> None:
    """Add ``eval length`` and ``bench length`` to the ``eval`` and ``bench`` command groups."""
    ev = eval_parser.add_parser("length", help="sample a video DiT at longer lengths under each RoPE rule and "
                                               "measure repetition, motion, consistency and quality")
    ev.add_argument("checkpoint", nargs="?", help="video DiT checkpoint (.ckpt) from train.py video or bench length")
    ev.add_argument("--videos", default=None, help="measure the videos in this folder instead of generating any "
                                                   "(one sub-folder per method, or videos directly)")
    ev.add_argument("--frames", nargs="+", type=int, default=None, help="test lengths in frames (default 1x, 2x, 3x)")
    ev.add_argument("--rules", type=_rules, default=None, help=f"comma-separated rules (default {','.join(RULES)})")
    ev.add_argument("--num-videos", type=int, default=32, help="videos per rule and length (default 32)")
    ev.add_argument("--sample-steps", type=int, default=25, help="sampler steps (default 25)")
    ev.add_argument("--seed", type=int, default=1000, help="noise seed of the first video (default 1000)")
    ev.add_argument("--k", type=int, default=None, help="RIFLEx intrinsic component, 1-indexed (default: estimated "
                                                        "from plain-extrapolation samples)")
    ev.add_argument("--riflex-mode", choices=["repo", "paper"], default="repo", help="0.9·2π/L (repo) or 2π/L")
    ev.add_argument("--period", type=float, default=None, help="with --videos: the repetition period in frames "
                                                               "the NoRepeat search centres on")
    ev.add_argument("--train-frames", type=int, default=None, help="with --videos: the model's training length")
    ev.add_argument("--out", required=True, help="directory for results.json, results.md, results.png, samples/")
    ev.add_argument("--no-progress", action="store_true", help="no progress bars")
    ev.set_defaults(func=_cmd_eval_length)

    bench = bench_parser.add_parser("length", help="train a video DiT per seed on procedural clips and compare "
                                                   "RoPE rules at 1x-3x the training length")
    bench.add_argument("--quick", action="store_true", help="small preset (1 seed, 3000 steps, 8 videos; about 5 minutes "
                                                            "on 2 CPU cores)")
    bench.add_argument("--rules", type=_rules, default=None, help=f"comma-separated rules (default {','.join(RULES)})")
    bench.add_argument("--train-frames", type=int, default=None, help="training length in frames (default 8)")
    bench.add_argument("--test-frames", nargs="+", type=int, default=None, help="test lengths (default 8 16 24)")
    bench.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default 0 1 2)")
    bench.add_argument("--steps", type=int, default=None, help="training steps per seed (default 6000)")
    bench.add_argument("--batch-size", type=int, default=None, help="batch size (default 16)")
    bench.add_argument("--num-videos", type=int, default=None, help="videos per rule and length (default 32)")
    bench.add_argument("--sample-steps", type=int, default=None, help="sampler steps (default 25)")
    bench.add_argument("--size", type=int, default=None, help="frame size in px (default 16)")
    bench.add_argument("--num-objects", type=int, default=None, help="objects per procedural clip (default 1)")
    bench.add_argument("--radius", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                       help="object half-size range in scene units (shorter side = 1; default 0.2 0.2)")
    bench.add_argument("--noise-std", type=float, default=None, help="background noise (default 0: flat background)")
    bench.add_argument("--shapes", nargs="+", choices=list(SCENE_SHAPES), default=None,
                       help="object shapes drawn (default square)")
    bench.add_argument("--palette", choices=list(SCENE_PALETTES), default=None,
                       help="random contrasting colours or mono: white objects on black (default mono)")
    bench.add_argument("--objective", choices=["flow", "flow-x", "ddpm"], default=None,
                       help="training objective (default flow-x)")
    bench.add_argument("--patch-size", type=int, nargs=3, default=None, metavar=("T", "H", "W"),
                       help="3D patch of the video DiT (default 1 4 4)")
    bench.add_argument("--model-size", choices=list(VIDEO_DIT_SIZES), default=None,
                       help="video DiT size (default tiny-cpu)")
    bench.add_argument("--rope-dims", type=int, nargs=3, default=None, metavar=("DT", "DH", "DW"),
                       help="rotary dims per axis, summing to the head dim (default 8 12 12)")
    bench.add_argument("--rope-base", type=float, default=None, help="RoPE base of every axis (default 16)")
    bench.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 5e-4)")
    bench.add_argument("--k", type=int, default=None, help="RIFLEx component (default: estimated per seed)")
    bench.add_argument("--riflex-mode", choices=["repo", "paper"], default=None, help="RIFLEx mode (default repo)")
    bench.add_argument("--accelerator", choices=["cpu", "gpu", "auto"], default=None,
                       help="where to train and sample (default cpu; recorded with every seed)")
    bench.add_argument("--out", required=True, help="output directory (finished seeds in it are reused)")
    bench.add_argument("--no-progress", action="store_true", help="no progress bars")
    bench.set_defaults(func=_cmd_bench_length)
