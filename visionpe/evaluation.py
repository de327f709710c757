"""Resolution-extrapolation evaluation of trained classifiers: accuracy at a list of test resolutions.

Protocols (see docs/data.md): ``"R"`` renders (or resizes) the same test images at each resolution,
so objects grow in patch units; ``"C"`` keeps the objects' pixel size and places them on a larger
canvas, so the token grid grows while local geometry stays the same.

``visionpe eval resolution`` runs :func:`evaluate_checkpoints` and writes ``results.json``,
``results.md`` and ``results.png`` with :func:`write_results`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .data import build_eval_dataset, dataset_info
from .results import accuracy_table, plot_accuracy, summarize, write_json, write_text
from .training import ClassifierModule

__all__ = ["PROTOCOLS", "check_sizes", "accuracy", "evaluate_resolutions", "load_classifier",
           "evaluate_checkpoints", "write_results"]

PROTOCOLS = ("R", "C")


def check_sizes(sizes: Sequence[int], model: nn.Module, protocol: str, train_size: int) -> list[int]:
    """Validate a resolution list before any work: non-empty, positive, divisible by the patch size,
    and (protocol C) not smaller than the training size.  Returns the sorted unique sizes."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    sizes = list(sizes)
    if not sizes:
        raise ValueError("the resolution list is empty; pass e.g. --res 16 24 32 48 64")
    bad = [s for s in sizes if not isinstance(s, int) or s <= 0]
    if bad:
        raise ValueError(f"resolutions must be positive integers, got {bad}")
    for s in sizes:
        model.grid_for((s, s))  # raises with the nearest valid sizes
    if protocol == "C" and min(sizes) < train_size:
        raise ValueError(f"protocol C places the {train_size}-px training view on a larger canvas, so every "
                         f"resolution must be >= {train_size}; got {sorted(sizes)}")
    return sorted(set(sizes))


@torch.no_grad()
def accuracy(model: nn.Module, dataset: Dataset, batch_size: int = 250) -> float:
    """Top-1 accuracy of ``model`` (images ``(B, C, H, W)`` -> logits) on ``dataset`` of ``(image, label)``."""
    was_training = model.training
    model.eval()
    correct = total = 0
    device = next(model.parameters()).device
    for images, labels in DataLoader(dataset, batch_size=batch_size):
        pred = model(images.to(device)).argmax(-1).cpu()
        correct += int((pred == labels).sum())
        total += len(labels)
    model.train(was_training)
    return correct / total


def evaluate_resolutions(
    model: nn.Module, dataset: str, sizes: Sequence[int], protocol: str = "R", num_samples: int = 1000,
    train_size: int = 32, root: str | None = None, batch_size: int = 250, progress=None,
) -> dict[int, float]:
    """Accuracy at every size in ``sizes`` (each a square ``size × size`` test set).

    Args:
        model: a :class:`~visionpe.models.ViT` (or anything with ``grid_for`` and images -> logits).
        dataset: a data-module dataset name (``"dir8"``, ``"abs9"``, ``"fashion-mnist"``, ``"folder"``).
        protocol: ``"R"`` or ``"C"``; ``train_size`` is the base size protocol C keeps.
        num_samples: test images per resolution (fixed scenes/images, the same at every size).
        progress: an optional :class:`rich.progress.Progress` to advance one step per size.

    Returns:
        ``size -> top-1 accuracy in [0, 1]``.
    """
    sizes = check_sizes(sizes, model, protocol, train_size)
    task = progress.add_task(f"eval {protocol}", total=len(sizes)) if progress is not None else None
    results = {}
    for s in sizes:
        data = build_eval_dataset(dataset, s, protocol, num_samples, root=root, base_size=train_size)
        results[s] = accuracy(model, data, batch_size)
        if progress is not None:
            progress.advance(task)
    if progress is not None:
        progress.remove_task(task)
    return results


def load_classifier(path: str | Path) -> tuple[ClassifierModule, dict]:
    """Load a classifier checkpoint written by ``train.py`` or ``visionpe bench``.

    Returns:
        ``(module in eval mode on CPU, data hyper-parameters stored with it (may be empty))``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist; pass a .ckpt written by train.py or visionpe bench")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a Lightning checkpoint of a ClassifierModule (no hyper_parameters/state_dict)")
    module = ClassifierModule(**ckpt["hyper_parameters"])
    own = module.state_dict()
    for name, tensor in ckpt["state_dict"].items():
        if name in own and own[name].shape != tensor.shape:
            raise ValueError(f"checkpoint parameter {name} has shape {tuple(tensor.shape)} but the model built "
                             f"from its hyper-parameters expects {tuple(own[name].shape)}")
    module.load_state_dict(ckpt["state_dict"])
    return module.eval(), dict(ckpt.get("datamodule_hyper_parameters", {}))


def evaluate_checkpoints(
    checkpoints: Sequence[str | Path], sizes: Sequence[int], protocol: str = "R", dataset: str | None = None,
    root: str | None = None, num_samples: int = 1000, labels: Sequence[str] | None = None, progress: bool = True,
) -> dict:
    """Evaluate each checkpoint at every size; returns the ``results.json`` content.

    The dataset, its root and the training size default to what the checkpoint was trained with.
    """
    if not checkpoints:
        raise ValueError("no checkpoints given")
    if labels is not None and len(labels) != len(checkpoints):
        raise ValueError(f"got {len(labels)} labels for {len(checkpoints)} checkpoints; give one label each")
    loaded = [load_classifier(c) for c in checkpoints]
    models = []
    for i, (module, data) in enumerate(loaded):
        name = dataset or data.get("dataset")
        if name is None:
            raise ValueError(f"{checkpoints[i]} does not record its dataset; pass --dataset")
        train_size = module.hparams.img_size
        check_sizes(sizes, module.model, protocol, train_size)
        models.append((module, name, root or data.get("root"), train_size))

    from rich.progress import Progress

    results = {"protocol": protocol, "sizes": sorted(set(sizes)), "num_samples": num_samples, "models": []}
    with Progress(transient=True, disable=not progress) as bar:
        for i, (module, name, data_root, train_size) in enumerate(models):
            acc = evaluate_resolutions(module.model, name, sizes, protocol, num_samples, train_size, data_root,
                                       progress=bar)
            results["models"].append({
                "label": labels[i] if labels else module.hparams.pe or "timm", "checkpoint": str(checkpoints[i]),
                "dataset": name, "train_size": train_size, "chance": 1 / dataset_info(name, data_root)[0],
                "accuracy": {str(s): a for s, a in acc.items()},
            })
    return results


def write_results(results: dict, out: str | Path, title: str = "") -> list[Path]:
    """Write ``results.json``, ``results.md`` and ``results.png`` for :func:`evaluate_checkpoints` output."""
    out = Path(out)
    sizes = results["sizes"]
    rows: dict[str, dict[int, dict[str, float]]] = {}
    for m in results["models"]:
        rows[m["label"]] = {int(s): summarize([a]) for s, a in m["accuracy"].items()}
    train_sizes = {m["train_size"] for m in results["models"]}
    train_size = train_sizes.pop() if len(train_sizes) == 1 else None
    title = title or f"{results['models'][0]['dataset']}, protocol {results['protocol']}"
    return [
        write_json(out / "results.json", results),
        write_text(out / "results.md", accuracy_table(rows, sizes, train_size, title)),
        plot_accuracy(out / "results.png", rows, sizes, train_size, title, chance=results["models"][0]["chance"]),
    ]
