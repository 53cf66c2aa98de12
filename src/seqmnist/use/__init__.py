"""Using trained models: prepare people's images, predict, explain, export."""

from seqmnist.use.explain import Explanation, explain
from seqmnist.use.predict import Prediction, Predictor
from seqmnist.use.preprocess import load_image, prepare_image

__all__ = ["Explanation", "Prediction", "Predictor", "explain", "load_image", "prepare_image"]
