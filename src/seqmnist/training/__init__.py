"""Training: the one loop, its optimizer and schedule, and where its records go."""

from seqmnist.training.interrupts import StopRequests
from seqmnist.training.progress import StopTraining
from seqmnist.training.trainer import TrainResult, train

__all__ = ["StopRequests", "StopTraining", "TrainResult", "train"]
