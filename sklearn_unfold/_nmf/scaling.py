"""Scale equivariance: solve data far from unit scale as the same problem on ``X / s``.

Sparse NMF with the beta-divergence is scale-equivariant: with ``M = s M'``
and ``H = s H'`` the objective is
``s**beta [D(M' | W H') + mu s**(1-beta) ||H'||_1]`` and the multiplicative
updates of one problem map exactly onto those of the other. Every NMF
estimator therefore divides data at extreme scales by a power of two (no
precision lost), uses :func:`scaled_sparsity`, and maps results back.
"""

import numpy as np

from .._array_api import get_namespace, is_numpy, numpy_dtype, size


def safe_scale(X):
    """Power of two to divide ``X`` by before the multiplicative updates (1.0 when not needed).

    The updates and objectives form products up to ``Lam**max(beta, 2)``
    summed over frames, and floor ``Lam`` at
    :func:`~.divergences.eps_for`: in float32, data at 1e30 overflows and
    data at 1e-30 sinks under the floor. Data whose largest value lies
    outside ``[2**-e, 2**e]``, ``e = maxexp / 8`` of its dtype (16 for
    float32, 128 for float64), is divided by the power of two that brings
    its largest value into [1, 2); data inside that range is used as it is.

    Returns
    -------
    scale : float
        A power of two, 1.0 for data in range, all-zero or empty data.
    """
    xp = get_namespace(X)
    largest = float(xp.max(X)) if size(X) else 0.0
    if not largest > 0 or not np.isfinite(largest):
        return 1.0
    exponent = int(np.frexp(largest)[1]) - 1  # largest / 2**exponent is in [1, 2)
    limit = np.finfo(numpy_dtype(X.dtype)).maxexp // 8
    if -limit <= exponent <= limit:
        return 1.0
    return float(np.ldexp(1.0, exponent))


def scaled_sparsity(mu, beta, scale, dtype):
    """L1 weight of the problem on data divided by ``scale``: ``mu * scale**(1 - beta)``.

    Clipped at ``sqrt(finfo(dtype).max)``: a weight that large already
    drives every activation to zero within a few updates, like any larger
    one would, while the objective ``mu * ||H||_1`` stays finite.
    """
    if mu == 0 or scale == 1.0:
        return float(mu)
    with np.errstate(over="ignore", under="ignore"):
        value = mu * np.exp2(np.log2(scale) * (1.0 - beta))
    return float(min(value, np.sqrt(np.finfo(numpy_dtype(dtype)).max)))


def scale_power(scale, power):
    """``scale ** power`` for a power-of-two scale, as a float (inf / 0 when out of range)."""
    if scale == 1.0:
        return 1.0
    with np.errstate(over="ignore", under="ignore"):
        return float(np.exp2(np.log2(scale) * power))


def data_level(X):
    """Mean of ``X`` (float64 accumulation), the level a relative sparsity refers to.

    1.0 for empty, all-zero or non-finite data, where no level is defined
    (the relative and the absolute sparsity then coincide).
    """
    xp = get_namespace(X)
    if not size(X):
        level = 0.0
    elif is_numpy(xp):
        level = float(np.mean(X, dtype=np.float64))
    else:
        level = float(xp.sum(X, dtype=xp.float64)) / size(X)
    return level if level > 0 and np.isfinite(level) else 1.0


def relative_sparsity(sparsity, beta, level, dtype):
    """L1 weight ``sparsity * level**(beta - 1)`` at the scale of data of mean ``level``.

    The beta-divergence scales as ``s**beta`` and ``||H||_1`` as ``s`` when
    data and activations are scaled by ``s``: with this weight, data ``s``
    times louder is exactly the same problem scaled by ``s``. For
    Kullback-Leibler (beta = 1) the weight is ``sparsity`` itself. Clipped
    like :func:`scaled_sparsity`.
    """
    if sparsity == 0 or beta == 1 or level == 1.0:
        return float(sparsity)
    with np.errstate(over="ignore", under="ignore"):
        value = sparsity * np.exp((beta - 1.0) * np.log(level))
    return float(min(value, np.sqrt(np.finfo(numpy_dtype(dtype)).max)))
