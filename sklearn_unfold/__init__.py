"""Deep-unfolded inference algorithms as scikit-learn estimators."""

__version__ = "0.1.0"
