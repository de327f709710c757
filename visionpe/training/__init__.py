"""Lightning modules for training with visionpe PEs."""
from .classifier import ClassifierModule
from .video_diffusion import VideoDiffusionModule

__all__ = ["ClassifierModule", "VideoDiffusionModule"]
