"""Where each source's frames sit in the estimators' ``X`` and ``y``.

``X`` holds context-stacked mixture magnitudes, one frame per row: row t is
frames t-T+1, ..., t, the target frame last, shape ``(n_samples, T * F)``.
``y`` holds each source's magnitudes stacked exactly like ``X``, side by side,
source 0 first: ``(n_samples, n_sources * T * F)``.
"""

import numpy as np

from .._array_api import asarray, get_namespace, is_numpy
from .chunks import is_memmap_backed


def n_frequencies_of(n_features, n_context):
    """F from the width of X; a clear error when X cannot hold ``n_context`` stacked frames."""
    if n_features % n_context:
        raise ValueError(
            f"X has {n_features} columns, which is not a multiple of n_context={n_context}: "
            "X must hold n_context stacked frames of n_frequencies each."
        )
    return n_features // n_context


def n_sources_of(y, n_features):
    """Number of sources in ``y``; a clear error for any other width."""
    if y.ndim != 2 or y.shape[1] % n_features or y.shape[1] // n_features < 2:
        raise ValueError(
            f"y must have shape (n_samples, n_sources * {n_features}) with n_sources >= 2: each "
            f"source's magnitudes stacked with the same context as X; got y of shape {y.shape}."
        )
    return y.shape[1] // n_features


def _columns(block, contiguous):
    """``block.T``, as a C-ordered copy when asked, unless the data is memory mapped (or not numpy)."""
    if contiguous and isinstance(block, np.ndarray) and not is_memmap_backed(block):
        return np.ascontiguousarray(block.T)
    return block.T


def mixture_targets(X, n_frequencies, *, contiguous=False):
    """The mixture's target frames, (F, n_samples): a view of X, or a C-ordered copy.

    Training copies them (``contiguous=True``, F values per frame, a fraction
    of X) so that the element-wise work of every epoch runs on contiguous
    arrays; memory-mapped data stays a view.
    """
    return _columns(X[:, -n_frequencies:], contiguous)


def source_targets(y, n_features, n_frequencies, n_sources, *, contiguous=False):
    """Each source's target frame, a list of (F, n_samples) views of y (or copies, see above)."""
    target = n_features - n_frequencies
    return [_columns(y[:, l * n_features + target : (l + 1) * n_features], contiguous) for l in range(n_sources)]


def source_block(y, n_features, source):
    """All context-stacked frames of one source, an (n_samples, T F) view of y."""
    return y[:, source * n_features : (source + 1) * n_features]


def scoring_targets(y, n_samples, n_context, n_frequencies, n_sources):
    """Each source's target frames from a ``y`` given to ``score``, (n_samples, n_sources * F).

    ``y`` is laid out as in fit (n_sources * T * F columns) or holds only
    the target frames (n_sources * F columns). When T equals n_sources the
    second width is also that of a single context-stacked source, so it is
    refused as ambiguous rather than guessed.
    """
    n_features = n_context * n_frequencies
    full, targets_only = n_sources * n_features, n_sources * n_frequencies
    if y.ndim != 2 or y.shape[0] != n_samples or y.shape[1] not in (full, targets_only):
        raise ValueError(
            f"y must have shape ({n_samples}, {full}) = (n_samples, n_sources * n_features_in), every one "
            f"of the {n_sources} sources stacked like X as in fit, or ({n_samples}, {targets_only}) with "
            f"only their target frames; got {y.shape}."
        )
    if y.shape[1] == full:
        columns = [l * n_features + n_features - n_frequencies + f for l in range(n_sources) for f in range(n_frequencies)]
        xp = get_namespace(y)
        return y[:, columns] if is_numpy(xp) else xp.take(y, asarray(np.asarray(columns), xp, like=y), axis=1)
    if n_context == n_sources and n_context > 1:
        raise ValueError(
            f"y has {targets_only} columns, which is ambiguous: both the target frames of {n_sources} sources and one "
            f"source stacked over n_context={n_context} frames; pass y laid out as in fit "
            f"({full} columns) to score this model."
        )
    return y
