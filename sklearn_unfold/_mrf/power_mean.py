"""Log-domain power mean of two values, in the form binary messages need.

For binary variables every generalized message of appendix C reduces to the
divided difference

.. math::

    G(d, \\delta) = \\frac{\\operatorname{softplus}(d + \\delta)
                          - \\operatorname{softplus}(d)}{\\delta},
    \\qquad G(d, 0) = \\sigma(d),

the log-domain power mean (appendix B, eq. 56) of the values ``{0, 1}`` with
weights ``1 - sigma(d), sigma(d)`` and exponent ``delta``.  With
``p = sigma(d)`` it is ``log(1 + p (e^delta - 1)) / delta`` (the Bernoulli
cumulant generating function over ``delta``), smooth through ``delta = 0``,
where it becomes the geometric mean (eq. 57): the mean-field limit.

Evaluation uses the symmetry ``G(d, delta) = 1 - G(-d, -delta)`` to work with
``delta >= 0`` only, where ``log1p(p expm1(delta))`` has no cancellation and
no overflow below ``delta = 50``; above that the softplus difference itself is
accurate.  In the messages ``delta`` is per edge while ``d`` is per sample and
edge, so the ``delta``-only factors are cheap.  Everything broadcasts.
"""

import numpy as np
from scipy.special import expit

_BIG = 50.0  # above this, expm1(delta) is near overflow; use the softplus difference


def fast_expit(x, out=None):
    """``sigmoid(x) = 1 / (1 + exp(-x))`` from NumPy's vectorized ``exp``.

    About ten times faster than :func:`scipy.special.expit` on float32 arrays
    and accurate to a few ulp wherever ``sigmoid(x)`` is a normal number; where
    ``exp(-x)`` overflows (``x < -88`` in float32) it returns 0 instead of a
    subnormal.  ``out`` may be ``x`` itself.
    """
    out = np.negative(x, out=out)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


def softplus(x):
    """``log(1 + exp(x))`` without overflow: ``max(x, 0) + log1p(exp(-|x|))``.

    The same formula as ``np.logaddexp(0, x)``, several times faster (NumPy's
    vectorized ``exp`` and ``log1p`` instead of a scalar loop).
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    out = np.abs(x)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.log1p(out, out=out)
    out += np.maximum(x, 0)
    return out[()] if out.ndim == 0 else out


def _flip(d, delta):
    """Map ``(d, delta)`` to ``(s d, |delta|)`` with ``s = sign(delta)`` (+1 at 0)."""
    sign = np.where(delta < 0, -1.0, 1.0).astype(np.result_type(d, delta, np.float32))
    return d * sign, np.abs(delta), sign


def _g_direct(d, delta):
    """``G(d, delta)`` for ``delta >= 0``, or any ``delta`` when ``d <= 0``.

    Either condition keeps ``p expm1(delta) > -1/2``, away from log1p's pole.
    """
    p = expit(d)
    capped = np.minimum(delta, _BIG)
    g = np.log1p(p * np.expm1(capped)) / np.where(delta == 0, 1, capped)
    g = np.where(delta == 0, p, g)
    big = delta > _BIG
    if np.any(big):
        g = np.where(big, (softplus(d + delta) - softplus(d)) / np.where(big, delta, 1), g)
    return g


def scaled_power_mean_g(d, delta, scale):
    """``scale * G(d, delta)``, with the ``delta``-only work done on ``delta``'s shape.

    In the messages ``delta`` and ``scale`` hold one value per edge while ``d``
    holds one per sample and edge; folding the sign flip, ``1 / |delta|`` and
    ``scale`` into per-edge constants leaves six elementwise operations on the
    large array.

    Parameters
    ----------
    d : ndarray
    delta, scale : ndarray or float
        Broadcast against ``d``.

    Returns
    -------
    ndarray
    """
    d, delta = np.asarray(d), np.asarray(delta)
    sign = np.where(delta < 0, -1, 1).astype(np.result_type(d, delta, np.float32))
    mag = np.abs(delta)
    capped = np.minimum(mag, _BIG)
    zero = mag == 0
    # G = (1 - sign)/2 + sign * log1p(p' expm1(|delta|)) / |delta|, p' = sigmoid(sign d)
    c0 = scale * (1 - sign) / 2
    c1 = scale * sign / np.where(zero, 1, capped)
    p = expit(d * sign)
    out = c0 + c1 * np.log1p(p * np.expm1(capped))
    if np.any(zero):
        out = np.where(zero, scale * p, out)
    big = mag > _BIG
    if np.any(big):
        d_f = d * sign
        g_big = (softplus(d_f + mag) - softplus(d_f)) / np.where(big, mag, 1)
        out = np.where(big, c0 + scale * sign * g_big, out)
    return out


def power_mean_g(d, delta):
    """Evaluate ``G(d, delta) = (softplus(d + delta) - softplus(d)) / delta``.

    Parameters
    ----------
    d : array-like
        Log-odds of the weights (``p = sigmoid(d)``).
    delta : array-like
        Exponent; broadcast against ``d``.

    Returns
    -------
    ndarray
        ``G``, equal to ``sigmoid(d)`` where ``delta == 0``.
    """
    return scaled_power_mean_g(d, delta, 1.0)


def power_mean_g_dd(d, delta, sigmoid_shift=None):
    """``dG/dd = (sigmoid(d + delta) - sigmoid(d)) / delta``, ``sigmoid'(d)`` at 0.

    Uses ``sigmoid(x) - sigmoid(y) = sigmoid(x) (1 - sigmoid(y)) (1 - e^(y-x))``,
    which has no cancellation; the factor ``-expm1(-delta) / delta`` depends on
    ``delta`` only.  Beyond ``|delta| = 50`` the equivalent form at
    ``(-d, -delta)`` (the derivative is invariant under that flip) avoids
    overflow.

    Parameters
    ----------
    d, delta : array-like
    sigmoid_shift : ndarray, optional
        ``sigmoid(d + delta)`` if the caller already has it.
    """
    d, delta = np.asarray(d), np.asarray(delta)
    if np.any(np.abs(delta) > _BIG):
        d_f, delta_f, _ = _flip(d, delta)
        ratio = -np.expm1(-delta_f) / np.where(delta_f == 0, 1, delta_f)
        ratio = np.where(delta_f == 0, 1, ratio)
        return expit(d_f + delta_f) * expit(-d_f) * ratio
    ratio = -np.expm1(-delta) / np.where(delta == 0, 1, delta)
    ratio = np.where(delta == 0, 1, ratio)
    shifted = expit(d + delta) if sigmoid_shift is None else sigmoid_shift
    return shifted * expit(-d) * ratio


def power_mean_g_ddelta(d, delta):
    """``dG/ddelta = (sigmoid(d + delta) - G(d, delta)) / delta``.

    ``sigmoid(d + delta) - G`` cancels for small ``delta``; there a five-term
    series in the Bernoulli cumulants ``kappa_n`` of ``p = sigmoid(d)``,
    ``sum_n kappa_n delta^(n-2) (n-1)/n!``, is used.  The function is invariant
    under ``(d, delta) -> (-d, -delta)``; it is evaluated where ``p <= 1/2`` so
    that the closed form keeps relative accuracy.
    """
    d, delta = np.asarray(d), np.asarray(delta)
    dtype = np.result_type(d, delta, np.float32)
    flip = d > 0
    d_s = np.where(flip, -d, d)
    t = np.where(flip, -delta, delta)
    small = np.abs(t) < 4 * float(np.finfo(dtype).eps) ** (1.0 / 6.0)
    p, q = expit(d_s), expit(-d_s)
    v = p * q
    series = v * (
        1 / 2
        + (q - p) * t / 3
        + (1 - 6 * v) * t**2 / 8
        + (q - p) * (1 - 12 * v) * t**3 / 30
        + (1 - 30 * v + 120 * v**2) * t**4 / 144
    )
    safe = np.where(small, 1, t)
    # With d_s <= 0, G is evaluated without the flip, keeping relative accuracy.
    direct = (expit(d_s + t) - _g_direct(d_s, safe)) / safe
    return np.where(small, series, direct)
