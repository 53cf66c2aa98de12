"""Training: the one loop, its optimizer and schedule, and where its records go."""

from seqmnist.training.progress import StopTraining
from seqmnist.training.trainer import TrainResult, train

__all__ = ["StopTraining", "TrainResult", "train"]
