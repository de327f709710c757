"""Models whose attention calls the visionpe hooks.

``ViT`` (timm layers) and ``VideoDiT`` (diffusers timestep layers) are imported on first use, so that
``visionpe.models.sizes`` and the command line stay quick to import.
"""
from __future__ import annotations

from importlib import import_module

from .sizes import VIDEO_DIT_SIZES, VIT_SIZES

__all__ = ["VIDEO_DIT_SIZES", "VIT_SIZES", "VideoDiT", "ViT"]

_LAZY = {"ViT": ".vit", "VideoDiT": ".video_dit"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
