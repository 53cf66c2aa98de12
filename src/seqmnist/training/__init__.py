"""Training: the one loop, its optimizer and schedule, and where its records go."""

from seqmnist.training.trainer import TrainResult, train

__all__ = ["TrainResult", "train"]
