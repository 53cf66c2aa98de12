"""seqmnist: recurrent classifiers that read images as sequences."""

__version__ = "0.1.0"

from seqmnist.api import evaluate_run, make_config, resume, train  # noqa: E402
from seqmnist.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from seqmnist.presets import PRESETS, get_preset  # noqa: E402
from seqmnist.runs import load_run  # noqa: E402
from seqmnist.use import Prediction, Predictor  # noqa: E402

__all__ = [
    "PRESETS",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "Prediction",
    "Predictor",
    "TrainConfig",
    "evaluate_run",
    "get_preset",
    "load_run",
    "make_config",
    "resume",
    "train",
]
