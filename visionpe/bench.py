"""``visionpe bench resolution``: train one tiny ViT per PE and seed, evaluate it at other resolutions.

Each run lives in ``OUT/runs/<variant>-s<seed>/`` (Lightning checkpoint, CSV log, ``eval.json``);
a run whose ``eval.json`` exists is not repeated, so an interrupted benchmark resumes where it
stopped.  When all runs are done, ``OUT/results.json``, ``OUT/results.md`` (one table per protocol,
mean ± std over seeds) and ``OUT/results.png`` (protocol R; ``results-C.png`` for protocol C) are
written atomically.

Variants are the registry PEs, each with the resolution rule its paper uses (see
:data:`VARIANTS`), plus ``glpe-mr`` (GLPE with ResFormer's multi-resolution training).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import torch

from .data import ImageDataModule, dataset_info
from .evaluation import PROTOCOLS, check_sizes, evaluate_resolutions
from .registry import list_pes
from .results import accuracy_table, plot_accuracy, summarize, write_json, write_text
from .training import ClassifierModule

__all__ = ["VARIANTS", "BenchConfig", "PRESETS", "device_name", "fit_quietly", "progress_bar", "uses_gpu", "variant_kwargs", "run_resolution_bench"]

#: variant -> ClassifierModule arguments (resolution rule of the original paper; notes §17.4)
VARIANTS: dict[str, dict] = {
    "none": {"pe": "none"},
    "learned": {"pe": "learned", "pe_kwargs": {"mode": "bicubic", "antialias": False}},  # DeiT's rule
    "sincos": {"pe": "sincos"},                         # recomputed at integer positions (extrapolated)
    "peg": {"pe": "peg", "peg_after": "all-but-last"},  # a PEG before every block (CPVT "0-5" style)
    "glpe": {"pe": "glpe"},
    "glpe-mr": {"pe": "glpe", "multi_res": True},       # ResFormer: sizes r, 3r/4, 5r/8 in every step
    "rel-bias": {"pe": "rel-bias"},                     # bicubic table resize (Swin)
    "rel-decomposed": {"pe": "rel-decomposed"},         # linear 1D table interpolation (MViTv2)
    "cpb": {"pe": "cpb"},                               # coordinates normalised by the training grid
    "alibi": {"pe": "alibi"},
    "rope-axial": {"pe": "rope-axial"},                 # integer positions, base 100 (RoPE-ViT)
    "rope-mixed": {"pe": "rope-mixed"},
}


@dataclass
class BenchConfig:
    """Everything that determines a benchmark's numbers (stored with every run)."""

    pes: list[str]
    dataset: str = "dir8"
    root: str | None = None
    train_res: int = 32
    eval_res: list[int] = field(default_factory=lambda: [16, 24, 32, 40, 48, 64, 96, 128])
    protocols: list[str] = field(default_factory=lambda: ["R", "C"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    steps: int = 2000
    batch_size: int = 128
    eval_samples: int = 1000
    size: str = "tiny-cpu"
    lr: float = 1e-3
    weight_init: str = "auto"
    accelerator: str = "cpu"

    def run_key(self) -> str:
        """Hash of the settings a single run depends on (not the PE list, seeds, eval list or device)."""
        from .data.procedural import TASK_VERSIONS

        keys = ("dataset", "root", "train_res", "steps", "batch_size", "size", "lr", "weight_init")
        settings = {k: getattr(self, k) for k in keys}
        if self.dataset in TASK_VERSIONS and TASK_VERSIONS[self.dataset] > 1:
            settings["task_version"] = TASK_VERSIONS[self.dataset]
        blob = json.dumps(settings, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


#: named presets; ``quick`` finishes in about 10 minutes on 2 CPU cores
PRESETS: dict[str, dict] = {
    "quick": {"pes": ["none", "learned", "rope-axial", "rope-mixed"], "eval_res": [16, 24, 32, 48, 64],
              "protocols": ["R"], "seeds": [0], "steps": 800, "batch_size": 128, "eval_samples": 500},
    "full": {"pes": list(VARIANTS)},
}


def variant_kwargs(variant: str, depth: int, train_res: int, patch: int) -> tuple[dict, list[int] | None]:
    """``(ClassifierModule kwargs, multi-resolution train sizes or None)`` for a variant name."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown PE variant {variant!r}; known: {', '.join(VARIANTS)} "
                         f"(registry PEs: {', '.join(list_pes())})")
    spec = dict(VARIANTS[variant])
    sizes = None
    if spec.pop("multi_res", False):
        sizes = sorted({max(patch, round(train_res * f / patch) * patch) for f in (1.0, 0.75, 0.625)}, reverse=True)
    if spec.get("peg_after") == "all-but-last":
        spec["peg_after"] = list(range(depth - 1))
    return spec, sizes


class _StepProgress(L.Callback):
    """Advances a rich progress task once per training batch."""

    def __init__(self, progress, task) -> None:
        self.progress, self.task = progress, task

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"].item() if isinstance(outputs, dict) else float(outputs)
        self.progress.update(self.task, advance=1, description=f"  train loss {loss:.3f}")


@contextlib.contextmanager
def _quiet_lightning():
    """Keep Lightning's per-run banners and library deprecation warnings out of the benchmark's output."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", module="lightning")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _train_one(cfg: BenchConfig, variant: str, seed: int, run_dir: Path, progress) -> tuple[ClassifierModule, float]:
    num_classes, in_chans, _ = dataset_info(cfg.dataset, cfg.root)
    from .models.sizes import VIT_SIZES

    patch, _, depth, _, _ = VIT_SIZES[cfg.size]
    kwargs, train_sizes = variant_kwargs(variant, depth, cfg.train_res, patch)
    L.seed_everything(seed, verbose=False)
    module = ClassifierModule(size=cfg.size, img_size=cfg.train_res, num_classes=num_classes, in_chans=in_chans,
                              lr=cfg.lr, weight_init=cfg.weight_init, **kwargs)
    data = ImageDataModule(dataset=cfg.dataset, root=cfg.root, img_size=cfg.train_res, train_sizes=train_sizes,
                           batch_size=cfg.batch_size, train_samples=cfg.steps * cfg.batch_size, seed=seed)
    return fit_quietly(module, data, cfg.steps, cfg.accelerator, run_dir, run_dir / "last.ckpt", progress)


def fit_quietly(module: L.LightningModule, data: L.LightningDataModule, steps: int, accelerator: str, log_dir: Path,
                checkpoint: Path, progress) -> tuple[L.LightningModule, float]:
    """Train ``module`` for ``steps`` steps with a CSV log in ``log_dir``, save ``checkpoint``, report progress.

    Returns:
        ``(module in eval mode on the training device, training seconds)``.
    """
    task = progress.add_task("  train", total=steps)
    with _quiet_lightning():
        trainer = L.Trainer(
            max_steps=steps, max_epochs=-1, accelerator=accelerator, devices=1, limit_val_batches=0,
            logger=L.pytorch.loggers.CSVLogger(log_dir, name="", version=""), enable_progress_bar=False,
            enable_model_summary=False, enable_checkpointing=False, callbacks=[_StepProgress(progress, task)],
            num_sanity_val_steps=0,
        )
        start = time.perf_counter()
        trainer.fit(module, datamodule=data)
        seconds = time.perf_counter() - start
        trainer.save_checkpoint(checkpoint)
    progress.remove_task(task)
    return module.to(trainer.strategy.root_device).eval(), seconds


def uses_gpu(accelerator: str) -> bool:
    """Whether Lightning's ``accelerator`` (``"cpu"``, ``"gpu"``, ``"cuda"`` or ``"auto"``) trains on a GPU."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def device_name(accelerator: str) -> str:
    """What a run on ``accelerator`` ran on, for the records: the GPU's name or ``"cpu"``."""
    if uses_gpu(accelerator):
        return torch.cuda.get_device_name() if torch.cuda.is_available() else accelerator
    return "cpu"


def progress_bar(disable: bool = False, console=None):
    """The benchmarks' ``rich`` progress display: description, bar, ``done/total`` and elapsed time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console, disable=disable)


def run_resolution_bench(cfg: BenchConfig, out: str | Path, progress: bool = True) -> dict:
    """Train and evaluate every (variant, seed) of ``cfg`` (resuming finished runs), then write the reports.

    Returns:
        the ``results.json`` content: per run accuracies and per variant ``mean/std/n`` per size.
    """
    out = Path(out)
    for v in cfg.pes:
        variant_kwargs(v, 1, cfg.train_res, 1)  # unknown names fail before any training
    if not cfg.seeds:
        raise ValueError("no seeds given; pass e.g. --seeds 0 1 2")
    if cfg.steps <= 0 or cfg.batch_size <= 0 or cfg.eval_samples <= 0:
        raise ValueError(f"steps, batch size and eval samples must be positive, got {cfg.steps}, "
                         f"{cfg.batch_size}, {cfg.eval_samples}")
    num_classes, _, _ = dataset_info(cfg.dataset, cfg.root)
    from .models.vit import ViT

    probe = ViT(cfg.train_res, size=cfg.size, pe="none")
    sizes = {p: check_sizes([s for s in cfg.eval_res if p == "R" or s >= cfg.train_res], probe, p, cfg.train_res)
             for p in cfg.protocols}
    key = cfg.run_key()

    runs = []
    jobs = [(v, s) for s in cfg.seeds for v in cfg.pes]   # seed-major: a stopped run has every PE once
    with progress_bar(disable=not progress) as bar:
        overall = bar.add_task("runs", total=len(jobs))
        for variant, seed in jobs:
            run_dir = out / "runs" / f"{variant}-s{seed}"
            record_path = run_dir / "eval.json"
            bar.update(overall, description=f"{variant} seed {seed}")
            if record_path.exists():
                record = json.loads(record_path.read_text())
                if record.get("run_key") != key:
                    raise ValueError(f"{record_path} was produced with other settings (run key {record.get('run_key')} "
                                     f"!= {key}); use a new --out directory or delete that run")
                missing = {p: [s for s in sizes[p] if str(s) not in record["accuracy"].get(p, {})] for p in sizes}
            else:
                record, missing = None, sizes
            if record is None or any(missing.values()):
                if record is None:
                    module, train_s = _train_one(cfg, variant, seed, run_dir, bar)
                    record = {"variant": variant, "seed": seed, "run_key": key, "train_seconds": train_s,
                              "device": device_name(cfg.accelerator), "accuracy": {}}
                else:
                    from .evaluation import load_classifier

                    module = load_classifier(run_dir / "last.ckpt")[0]
                    if uses_gpu(cfg.accelerator):
                        module = module.cuda()
                start = time.perf_counter()
                for p, todo in missing.items():
                    if todo:
                        acc = evaluate_resolutions(module.model, cfg.dataset, todo, p, cfg.eval_samples,
                                                   cfg.train_res, cfg.root, progress=bar)
                        record["accuracy"].setdefault(p, {}).update({str(s): a for s, a in acc.items()})
                record["eval_seconds"] = record.get("eval_seconds", 0.0) + time.perf_counter() - start
                write_json(record_path, record)
            runs.append(record)
            bar.advance(overall)

    summary = {p: {v: {s: summarize([r["accuracy"][p][str(s)] for r in runs if r["variant"] == v])
                       for s in sizes[p]} for v in cfg.pes} for p in cfg.protocols}
    results = {"config": asdict(cfg), "chance": 1 / num_classes, "runs": runs,
               "summary": {p: {v: {str(s): st for s, st in per.items()} for v, per in rows.items()}
                           for p, rows in summary.items()}}
    _write_reports(out, cfg, results, summary, sizes)
    return results


def _write_reports(out: Path, cfg: BenchConfig, results: dict, summary: dict, sizes: dict[str, list[int]]) -> None:
    tables = [f"# Resolution benchmark: {cfg.dataset}, trained at {cfg.train_res} px", "",
              f"ViT `{cfg.size}`, {cfg.steps} steps × batch {cfg.batch_size}, seeds {cfg.seeds}, "
              f"{cfg.eval_samples} test images per resolution.", ""]
    for p in cfg.protocols:
        name = {"R": "protocol R (same scene, more pixels)", "C": "protocol C (same object size, larger canvas)"}[p]
        tables.append(accuracy_table(summary[p], sizes[p], cfg.train_res, name))
        png = out / ("results.png" if p == cfg.protocols[0] else f"results-{p}.png")
        plot_accuracy(png, summary[p], sizes[p], cfg.train_res, f"{cfg.dataset}, {name}", chance=results["chance"])
    seconds = {v: summarize([r["train_seconds"] for r in results["runs"] if r["variant"] == v]) for v in cfg.pes}
    tables += ["### training time per run (s)", "", "| PE | seconds |", "|---|---:|"]
    tables += [f"| {v} | {st['mean']:.0f} |" for v, st in seconds.items()]
    write_json(out / "results.json", results)
    write_text(out / "results.md", "\n".join(tables) + "\n")


def config_from_args(preset: str | None, overrides: dict) -> BenchConfig:
    """A :class:`BenchConfig` from a preset name and the options given on the command line."""
    base = dict(PRESETS["quick" if preset == "quick" else "full"])
    base.update({k: v for k, v in overrides.items() if v is not None})
    unknown = [p for p in base.get("protocols", []) if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocols {unknown}; use R and/or C")
    return BenchConfig(**base)

