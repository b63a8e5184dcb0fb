"""Deep-unfolded inference algorithms as scikit-learn estimators."""

__version__ = "0.1.0"

from .deep_nmf import DeepNMF, DiscriminativeNMF
from .enhance import SpeechEnhancer, make_noisy
from .neural_nmf import NeuralNMF
from .pad_nmf import PhysicsAwareDeepNMF
from .metrics import magnitude_sdr, make_sdr_scorer, sdr, sdr_scorer, si_sdr
from .sparse_nmf import SparseNMF
from .unfolded_mrf import UnfoldedBP, UnfoldedMeanField

__all__ = [
    "DeepNMF",
    "DiscriminativeNMF",
    "NeuralNMF",
    "PhysicsAwareDeepNMF",
    "SparseNMF",
    "SpeechEnhancer",
    "UnfoldedBP",
    "UnfoldedMeanField",
    "magnitude_sdr",
    "make_noisy",
    "make_sdr_scorer",
    "sdr",
    "sdr_scorer",
    "si_sdr",
    "__version__",
]
