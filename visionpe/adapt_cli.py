"""``visionpe adapt``: move a timm ViT to a new image size with a chosen rule and/or swap its PE.

    visionpe adapt --model vit_tiny_patch16_224 [--checkpoint PATH] [--img-size 384 [--img-size-w 288]]
                   [--mode bicubic|bilinear|...] [--no-antialias] [--pe NAME] [--peg-after 0 ...]
                   [--to-visionpe] --out DIR

The model is built with ``timm.create_model(..., pretrained=False)``, the local checkpoint is loaded
and ``pos_embed`` is resampled once, from the checkpoint's grid to the new size (see
:func:`visionpe.adapt.load_timm_vit`).  Without ``--pe``/``--peg-after``/``--to-visionpe`` the result
stays a timm model; otherwise it is converted to a :class:`visionpe.models.ViT` by
:func:`visionpe.adapt.from_timm`.  ``DIR`` receives, each written atomically:

* ``model.safetensors``: the state dict;
* ``model.json``: how to rebuild it, ``{"format": "visionpe-adapt/1", "library": "timm", "model_name",
  "img_size": [H, W], "create_kwargs": {}}`` or ``{"format": ..., "library": "visionpe",
  "vit_kwargs": {...}}``, plus ``"source"`` (model name, checkpoint); read it back with
  :func:`visionpe.adapt.load_adapted`;
* ``report.json`` / ``report.md``: the :class:`~visionpe.adapt.ResizeReport` (sizes, grids, rule, what
  timm's data-config resolvers reported before visionpe fixed them) and the conversion.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from .absolute import RESAMPLE_MODES
from .results import write_json, write_text

__all__ = ["add_parser", "run_adapt"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``adapt`` subcommand to ``subparsers``; its handler (``func``) is :func:`run_adapt`."""
    p = subparsers.add_parser("adapt", help="move a timm ViT to a new size and/or swap its PE",
                              description="Build a timm ViT (no download), load a local checkpoint, resample its "
                                          "position table to a new size with a chosen rule, optionally convert "
                                          "it to a visionpe ViT with another PE, and write the result.")
    p.add_argument("--model", required=True, help="timm model name, e.g. vit_tiny_patch16_224")
    p.add_argument("--checkpoint", default=None, help="local .safetensors/.pth/.pt state dict (default: random init)")
    p.add_argument("--checkpoint-img-size", type=int, nargs="+", default=None, metavar="PX",
                   help="H [W] the checkpoint was trained at (only needed for non-square checkpoints)")
    p.add_argument("--img-size", type=int, default=None, help="new image height in px (default: the model's size)")
    p.add_argument("--img-size-w", type=int, default=None, help="new image width in px (default: --img-size)")
    p.add_argument("--mode", choices=RESAMPLE_MODES, default="bicubic",
                   help="interpolation of the position table (default bicubic, as timm)")
    p.add_argument("--no-antialias", action="store_true",
                   help="no low-pass filter when down-sampling (DeiT/MAE; timm uses antialias)")
    p.add_argument("--pe", default=None, help="swap in a fresh PE of this family (visionpe list); converts to visionpe")
    p.add_argument("--peg-after", type=int, nargs="+", default=[], metavar="BLOCK",
                   help="add CPVT PEGs after these blocks, e.g. 0; converts to visionpe")
    p.add_argument("--to-visionpe", action="store_true",
                   help="convert to a visionpe ViT even when timm's table is kept")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=run_adapt)


def _size(args: argparse.Namespace) -> tuple[int, int] | None:
    if args.img_size is None:
        if args.img_size_w is not None:
            raise ValueError("--img-size-w needs --img-size (the height); pass both for a non-square size")
        return None
    return (args.img_size, args.img_size if args.img_size_w is None else args.img_size_w)


def _checkpoint_size(args: argparse.Namespace) -> tuple[int, int] | None:
    size = args.checkpoint_img_size
    if size is None:
        return None
    if len(size) not in (1, 2):
        raise ValueError(f"--checkpoint-img-size takes H or H W, got {len(size)} values {size}")
    return (size[0], size[-1])


def _markdown(summary: dict[str, Any], report_text: str) -> str:
    resize = summary["resize"]

    def change(key: str) -> str:
        return f"{'x'.join(map(str, resize['old_' + key]))} -> {'x'.join(map(str, resize['new_' + key]))}"

    rows = [("model", summary["source"]["model_name"]), ("checkpoint", summary["source"]["checkpoint"] or "none"),
            ("image size", change("img_size")), ("grid", change("grid")),
            ("rule", f"{resize['mode']}, antialias={resize['antialias']}"),
            ("result", f"{summary['library']} model, PE {summary['pe']}, PEGs after {summary['peg_after'] or 'none'}"),
            ("parameters", f"{summary['num_params']:,}")]
    lines = ["# visionpe adapt", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
             "## timm data config", "", "| resolver | before the fix | now |", "|---|---|---|"]
    for name, before in resize["data_config_before"].items():
        lines.append(f"| `{name}` | {tuple(before)} | {tuple(resize['data_config_after'][name])} |")
    lines += ["", "```text", report_text, "```", ""]
    return "\n".join(lines)


def run_adapt(args: argparse.Namespace, console: Console) -> int:
    """Handler of ``visionpe adapt``: load, resize, optionally convert, write ``--out``; returns 0.

    Raises:
        ValueError: for invalid arguments (the ``visionpe`` entry point turns it into exit code 2).
    """
    from .adapt import _build_vit, _conversion, _load_resized, save_adapted

    antialias = not args.no_antialias
    convert = bool(args.pe or args.peg_after or args.to_visionpe)
    if args.pe and (args.mode, antialias) != ("bicubic", True):
        raise ValueError(f"--mode/--no-antialias resample timm's table, which --pe {args.pe} replaces; drop them")
    model, report = _load_resized(args.model, args.checkpoint, _size(args), args.mode, antialias,
                                  _checkpoint_size(args), {})
    source = {"model_name": args.model, "checkpoint": None if args.checkpoint is None else str(args.checkpoint)}
    if convert:
        kwargs, state = _conversion(model, args.pe, None, args.peg_after, None, args.mode, antialias, None)
        result = _build_vit(kwargs, state, model)
        build = {"library": "visionpe", "vit_kwargs": kwargs, "source": source}
    else:
        result = model
        build = {"library": "timm", "model_name": args.model, "img_size": list(report.new_img_size),
                 "create_kwargs": {}, "source": source}
    out = Path(args.out)
    weights, spec = save_adapted(out, result, build)
    summary = {"source": source, "library": build["library"],
               "pe": args.pe or "timm's learned table", "peg_after": sorted(set(args.peg_after)),
               "num_params": sum(p.numel() for p in result.parameters()), "resize": report.to_dict(),
               "files": [weights.name, spec.name, "report.json", "report.md"]}
    text = str(report)
    write_json(out / "report.json", summary)
    write_text(out / "report.md", _markdown(summary, text))
    console.print(text, markup=False, highlight=False)
    console.print(f"wrote {build['library']} model to {out}: " + ", ".join(summary["files"]),
                  markup=False, highlight=False)
    return 0
