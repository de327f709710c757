"""Models whose attention calls the visionpe hooks."""
from .video_dit import VIDEO_DIT_SIZES, VideoDiT
from .vit import VIT_SIZES, ViT

__all__ = ["VIDEO_DIT_SIZES", "VIT_SIZES", "VideoDiT", "ViT"]
