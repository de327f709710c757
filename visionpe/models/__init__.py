"""Models whose attention calls the visionpe hooks."""
from .vit import VIT_SIZES, ViT

__all__ = ["VIT_SIZES", "ViT"]
