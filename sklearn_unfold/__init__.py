"""Deep-unfolded inference algorithms as scikit-learn estimators."""

__version__ = "0.1.0"

from .sparse_nmf import SparseNMF

__all__ = ["SparseNMF", "__version__"]
