"""Beta-divergences, their derivatives and dtype-aware epsilons.

Pure array math shared by every NMF-based module. All functions take and
return arrays of one namespace (numpy, or any Array API library under
scikit-learn's ``array_api_dispatch``) and never see an estimator.
"""

import numbers

import numpy as np

from .._array_api import get_namespace, numpy_dtype, scalar, vdot

_BETA_LOSS_NAMES = {"frobenius": 2.0, "kullback-leibler": 1.0, "itakura-saito": 0.0}


def beta_loss_to_float(beta_loss):
    """Map a beta-loss name or number to the float beta.

    Parameters
    ----------
    beta_loss : float or {'frobenius', 'kullback-leibler', 'itakura-saito'}
        The divergence. Numbers must be >= 0.

    Returns
    -------
    beta : float
    """
    if isinstance(beta_loss, str):
        try:
            return _BETA_LOSS_NAMES[beta_loss]
        except KeyError:
            raise ValueError(
                f"Unknown beta_loss {beta_loss!r}; expected a float >= 0 or one of "
                f"{sorted(_BETA_LOSS_NAMES)}."
            ) from None
    if not isinstance(beta_loss, numbers.Real) or isinstance(beta_loss, bool):
        raise ValueError(f"beta_loss must be a float or a name, got {beta_loss!r}.")
    beta = float(beta_loss)
    if not np.isfinite(beta) or beta < 0:
        raise ValueError(f"beta_loss must be a finite float >= 0, got {beta_loss!r}.")
    return beta


def eps_for(dtype):
    """Smallest value divisions and logs are guarded with, for ``dtype`` (of any namespace).

    It scales with the dtype's range rather than being one constant: float64
    keeps its precision (about 1e-77) while for float32 (about 3e-10) even
    ``x / eps**3``, which the beta < 1 gradients form, stays finite.
    """
    return float(np.finfo(numpy_dtype(dtype)).tiny) ** 0.25


def mm_exponent(beta):
    """Exponent that makes the multiplicative update a majorization-minimization step.

    Févotte & Idier (2011), "Algorithms for NMF with the beta-divergence", table 2:
    ``1 / (2 - beta)`` for beta < 1, 1 for 1 <= beta <= 2, ``1 / (beta - 1)`` for beta > 2.
    """
    if beta < 1:
        return 1.0 / (2.0 - beta)
    if beta > 2:
        return 1.0 / (beta - 1.0)
    return 1.0


def beta_divergence(X, Y, beta, axis=None):
    """Dense beta-divergence ``D_beta(X | Y)`` summed over all entries (or an axis).

    ``D_2`` is half the squared Euclidean distance, ``D_1`` the generalized
    Kullback-Leibler divergence, ``D_0`` the Itakura-Saito divergence
    (paper eq. 32; Févotte & Idier 2011 eq. 2).

    Parameters
    ----------
    X : ndarray
        Data, non-negative.
    Y : ndarray of the same shape
        Model, non-negative.
    beta : float
    axis : int, default=None
        Sum over this axis only (e.g. ``axis=0`` gives one value per frame of
        an (n_features, n_frames) array); None sums everything.

    Returns
    -------
    divergence : float, or ndarray when ``axis`` is given
    """
    xp = get_namespace(X, Y)
    eps = eps_for(xp.result_type(X.dtype, Y.dtype, xp.float32))
    if beta == 2:
        diff = X - Y
        if axis is None:
            return 0.5 * vdot(diff, diff, xp)
        diff *= diff
        return 0.5 * xp.sum(diff, axis=axis)
    Y = xp.maximum(Y, scalar(eps, Y, xp))
    if beta == 1:
        # x log(x / y) with the convention 0 log 0 = 0.
        if xp is np:
            with np.errstate(divide="ignore", invalid="ignore"):
                elementwise = np.where(X > 0, X * np.log(X / Y), 0.0)
        else:
            # No log(0) to mask (libraries that warn, e.g. array-api-strict, stay quiet).
            elementwise = X * xp.log(xp.where(X > 0, X / Y, scalar(1.0, Y, xp)))
        elementwise += Y - X
    elif beta == 0:
        ratio = xp.maximum(X, scalar(eps, X, xp)) / Y
        elementwise = ratio - xp.log(ratio) - 1.0
    else:
        elementwise = (X**beta + (beta - 1.0) * Y**beta - beta * X * Y ** (beta - 1.0)) / (
            beta * (beta - 1.0)
        )
    total = xp.sum(elementwise, axis=axis)
    return float(total) if axis is None else total


def beta_divergence_grad_parts(X, Y, beta):
    """Positive and negative parts of ``d D_beta(X | Y) / d Y``.

    The derivative is ``Y**(beta - 1) - X * Y**(beta - 2)``; both parts are
    non-negative for non-negative inputs.

    Returns
    -------
    positive, negative : ndarray
    """
    if beta == 2:
        return Y, X
    xp = get_namespace(X, Y)
    eps = eps_for(Y.dtype)
    Y = xp.maximum(Y, scalar(eps, Y, xp))
    if beta == 1:
        return xp.ones_like(Y), X / Y
    Yb2 = Y ** (beta - 2.0)
    return Y * Yb2, X * Yb2
