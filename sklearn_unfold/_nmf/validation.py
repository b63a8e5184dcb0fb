"""Input checks shared by the NMF estimators: clear errors before any work starts."""

import numpy as np
from sklearn.utils import check_array
from sklearn.utils.validation import check_non_negative

from .. import _array_api as aa


def check_nmf_input(X, beta, whom):
    """Raise a clear ValueError for data an NMF cannot take (already validated as finite)."""
    check_non_negative(X, whom)
    if beta <= 0 and aa.size(X) and float(aa.get_namespace(X).min(X)) == 0:
        raise ValueError(
            f"{whom}: with a beta-divergence of beta <= 0 (e.g. 'itakura-saito') the data must be "
            "strictly positive, but it contains zeros; add a small floor to the data or use beta > 0."
        )


def check_given_matrix(values, expected_shape, dtype, *, name, meaning, whom, like=None):
    """A user-given dictionary (``bases``, ``reconstruction_bases``) as a checked copy.

    With ``like`` (the data) of a namespace other than numpy, the copy is an
    array of that namespace on its device (``dtype`` is then ``like``'s).

    Parameters
    ----------
    values : array-like
    expected_shape : tuple of int
    name : str
        The parameter's name, for the messages.
    meaning : str
        What the shape means, e.g. ``"(n_sources * n_components, n_features_in)"``.
    whom : str
        The estimator's name.
    like : array, default=None
    """
    xp = aa.get_namespace(like)
    if not aa.is_numpy(xp):
        values, dtype = aa.asarray(values, xp, like=like), like.dtype
    W = check_array(values, dtype=dtype, copy=True, input_name=name)
    if W.shape != tuple(expected_shape):
        raise ValueError(
            f"{name} has shape {W.shape}; expected {tuple(expected_shape)} = {meaning}."
        )
    check_nmf_input(W, 1.0, f"{whom} ({name})")
    return W


def check_source_weights(source_weights, n_sources):
    """Weights gamma_l of the sources in the training objective; None means (1, 0, ...)."""
    if source_weights is None:
        weights = np.zeros(n_sources)
        weights[0] = 1.0
        return tuple(weights.tolist())
    weights = np.asarray(source_weights, dtype=np.float64)
    if weights.shape != (n_sources,):
        raise ValueError(
            f"source_weights must be a 1-D array with one weight per source; got shape "
            f"{weights.shape} while y holds {n_sources} sources."
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or not np.any(weights > 0):
        raise ValueError("source_weights must be finite, non-negative and not all zero.")
    return tuple(weights.tolist())
