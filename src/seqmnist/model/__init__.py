"""Models: a sequence view in front of a recurrent core and a linear readout."""

from seqmnist.model.recurrent import RecurrentClassifier, count_parameters
from seqmnist.model.views import SequenceView, make_permutation

__all__ = ["RecurrentClassifier", "SequenceView", "count_parameters", "make_permutation"]
