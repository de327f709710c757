"""Lightning modules for training with visionpe PEs."""
from .classifier import ClassifierModule

__all__ = ["ClassifierModule"]
