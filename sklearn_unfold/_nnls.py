"""Non-negative least squares for many right-hand sides, and its derivative.

The NeuralNMF layer map is (Gao et al., poster "Neural NMF", definition of q)

    q(X, A) = argmin_{S >= 0} ||X - A S||_F,

which splits into one NNLS problem per column of X. :func:`nnls` solves all
columns at once with the Lawson-Hanson active-set method: every column keeps
its own passive set, the columns advance in lock-step, and each step solves
the masked normal equations of all columns in one batched LAPACK call. The
answer is the exact KKT point of the final passive set, like
``scipy.optimize.nnls`` (which runs the same algorithm on one column).

On the passive set J of a column, ``s_J = (A_J^T A_J)^{-1} A_J^T x`` and
``s = 0`` elsewhere; :func:`nnls_backward` differentiates this formula, which
is the exact derivative wherever the passive set does not change.

Arrays follow the poster: columns are samples, ``A`` is (m, k), ``X`` is
(m, n) and ``S`` is (k, n).

Units: ``q(x X, a A) = (x / a) q(X, A)``. :func:`nnls` solves on ``A`` and
``X`` divided by powers of two (:func:`power_of_two_exponent`), which is
exact, so its answer follows that rule bit for bit for powers of two, and
the normal equations neither overflow nor underflow whatever the scale of
A and X within the dtype's range.
"""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

# Largest number of entries of one stack of masked k x k systems; bounds memory.
_CHUNK_ENTRIES = 1 << 22


def power_of_two_exponent(X):
    """The ``e`` for which ``max |X| / 2**e`` lies in [1, 2); 0 for empty, all-zero or non-finite X.

    Dividing by ``2**e`` (``np.ldexp(X, -e)``) is exact: it changes the
    units of X, not its digits, so a solver run on the scaled array returns
    exactly the scaled answer, while its squares and products stay near 1
    instead of overflowing (data at 1e200 in float64, 1e20 in float32) or
    underflowing. A local copy of the idea of ``safe_scale`` in the NMF
    updates, applied always: its exactness makes it free.
    """
    X = np.asarray(X)
    largest = float(np.max(np.abs(X))) if X.size else 0.0
    if not largest > 0 or not np.isfinite(largest):
        return 0
    return int(np.frexp(largest)[1]) - 1


def _masked_solve(G, C, passive):
    """Solve ``G[J, J] z_J = C[J]`` for every column, with ``z = 0`` off J.

    Parameters
    ----------
    G : ndarray of shape (k, k)
        Symmetric positive semi-definite Gram matrix ``A^T A``.
    C : ndarray of shape (k, n)
        Right-hand sides, one per column.
    passive : ndarray of shape (k, n), dtype=bool
        The set J of each column.

    Returns
    -------
    Z : ndarray of shape (k, n)
    """
    k, n = C.shape
    Z = np.zeros_like(C)
    if n == 0 or k == 0:
        return Z
    diag = np.arange(k)
    # The rows off J only need a non-zero diagonal; taking G's scale (not 1)
    # keeps the relative cutoff of the pinv fallback about G's own values.
    # The solve itself gives the same bits for any value here.
    off = np.max(np.diagonal(G), initial=0.0)
    off = off if off > 0 else 1.0
    step = max(1, _CHUNK_ENTRIES // (k * k))
    for start in range(0, n, step):
        sl = slice(start, start + step)
        p = passive[:, sl].T  # (n_chunk, k)
        # Rows and columns off J become a multiple of the identity, so one
        # square system per column stands for the smaller system on J.
        M = np.where(p[:, :, None] & p[:, None, :], G, 0.0)
        M[:, diag, diag] += off * ~p
        rhs = np.where(p, C[:, sl].T, 0.0)[:, :, None]
        try:
            z = np.linalg.solve(M, rhs)
        except np.linalg.LinAlgError:
            # Only an exactly singular G[J, J] (dependent columns in J) lands
            # here; its minimum-norm solution has the same residual.
            z = np.linalg.pinv(M, hermitian=True) @ rhs
        Z[:, sl] = np.where(p, z[:, :, 0], 0.0).T
    return Z


def _kkt_tolerance(A, X):
    """Per-column threshold under which a gradient entry counts as zero.

    ``w = A^T (x - A s)`` is computed as ``A^T x - (A^T A) s``; both terms are
    bounded by ``max_j ||a_j|| ||x||``, and rounding adds about
    ``(m + k) eps`` of that.
    """
    m, k = A.shape
    eps = np.finfo(np.result_type(A, X, np.float32)).eps
    col_norm = np.sqrt(np.max(np.einsum("ij,ij->j", A, A), initial=0.0))
    return 10 * (m + k) * eps * col_norm * np.linalg.norm(X, axis=0)


def _drop_until_feasible(G, C, passive):
    """Shrink a warm-start passive set until its least-squares solution is > 0.

    Lawson-Hanson may start from any passive set whose unconstrained solution
    is positive; dropping the non-positive variables of a warm start (and
    repeating, since dropping changes the others) gives such a set.
    """
    P = passive.copy()
    S = np.zeros_like(C)
    todo = np.flatnonzero(P.any(axis=0))
    while todo.size:
        Z = _masked_solve(G, C[:, todo], P[:, todo])
        bad = P[:, todo] & (Z <= 0)
        S[:, todo] = Z
        P[:, todo] &= ~bad
        todo = todo[bad.any(axis=0)]
    return np.where(P, S, 0.0), P


def nnls_gram(G, C, tol, *, passive=None, max_iter=None):
    """Lawson-Hanson NNLS on the normal equations, all columns at once.

    Minimizes ``s^T G s / 2 - c^T s`` over ``s >= 0`` for every column c of
    C, which is ``||x - A s||^2 / 2`` up to a constant when ``G = A^T A`` and
    ``C = A^T X``.

    Parameters
    ----------
    G : ndarray of shape (k, k)
        Gram matrix ``A^T A``.
    C : ndarray of shape (k, n)
        ``A^T X``.
    tol : ndarray of shape (n,)
        A variable enters the passive set only if its negative gradient
        exceeds ``tol`` (see :func:`_kkt_tolerance`).
    passive : ndarray of shape (k, n), dtype=bool, default=None
        Warm-start passive sets, e.g. from a previous solve with a nearby A.
        None starts every column from ``s = 0``.
    max_iter : int, default=None
        Maximum number of lock-step iterations (each one an outer or an inner
        step of every unfinished column); None means ``3 k``.

    Returns
    -------
    S : ndarray of shape (k, n)
        Solutions; on each column's passive set they are the exact
        least-squares values ``G_JJ^{-1} c_J`` and they are zero elsewhere.
    passive : ndarray of shape (k, n), dtype=bool
        Final passive sets, where ``S > 0``.
    """
    k, n = C.shape
    if max_iter is None:
        max_iter = 3 * k
    if passive is None:
        S, P = np.zeros_like(C), np.zeros((k, n), dtype=bool)
    else:
        S, P = _drop_until_feasible(G, C, np.asarray(passive, dtype=bool))
    # S is feasible with S > 0 on P. `ready` columns hold the least-squares
    # solution on P; the others took a partial step and must be re-solved.
    ready = np.ones(n, dtype=bool)
    done = np.zeros(n, dtype=bool)
    blocked = np.zeros((k, n), dtype=bool)
    added = np.full(n, -1)
    for n_iter in range(max_iter + 1):
        # Outer loop of Lawson-Hanson: stop at a KKT point, otherwise free the
        # variable with the largest negative gradient.
        f = np.flatnonzero(ready & ~done)
        W = C[:, f] - G @ S[:, f]
        cand = ~P[:, f] & ~blocked[:, f] & (W > tol[f])
        has = cand.any(axis=0)
        done[f[~has]] = True
        if done.all() or n_iter == max_iter:
            break
        f = f[has]
        t = np.argmax(np.where(cand[:, has], W[:, has], -np.inf), axis=0)
        P[t, f] = True
        added[f] = t
        active = np.flatnonzero(~done)
        # Inner loop: least squares on the passive set.
        Z = _masked_solve(G, C[:, active], P[:, active])
        Sa, Pa = S[:, active], P[:, active]
        t = added[active]
        # A freed variable whose value comes out non-positive is sent back and
        # barred until the iterate moves (rounding at a degenerate point).
        reject = (t >= 0) & (Z[np.maximum(t, 0), np.arange(active.size)] <= 0)
        Pa[t[reject], reject.nonzero()[0]] = False
        blocked[t[reject], active[reject]] = True
        bad = Pa & (Z <= 0)
        feasible = ~bad.any(axis=0) & ~reject
        # Feasible: accept the solution.
        Sa[:, feasible] = Z[:, feasible]
        blocked[:, active[feasible]] = False
        # Infeasible: move towards Z until the first variable hits zero,
        # drop the variables at zero, and solve again.
        step = ~feasible & ~reject
        Sb, Zb, badb = Sa[:, step], Z[:, step], bad[:, step]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(badb, Sb / (Sb - Zb), np.inf)
        alpha = ratio.min(axis=0)
        Sb = Sb + alpha * (Zb - Sb)
        hit = (ratio <= alpha) | (Sb <= 0)
        Pb = Pa[:, step] & ~hit
        Sa[:, step] = np.where(Pb, Sb, 0.0)
        Pa[:, step] = Pb
        S[:, active], P[:, active] = Sa, Pa
        ready[active] = feasible | reject
        added[active] = -1
    if not done.all():
        warnings.warn(
            f"NNLS did not reach a KKT point in {max_iter} iterations for "
            f"{int((~done).sum())} of {n} columns; their solutions are feasible "
            "but not optimal.",
            ConvergenceWarning,
        )
    return S, P


def nnls(A, X, *, passive=None, max_iter=None):
    """Solve ``argmin_{S >= 0} ||X - A S||_F`` column by column, all at once.

    Parameters
    ----------
    A : ndarray of shape (m, k)
        Dictionary.
    X : ndarray of shape (m, n)
        Right-hand sides, one per column.
    passive : ndarray of shape (k, n), dtype=bool, default=None
        Warm-start passive sets (e.g. the previous solution's ``S > 0``).
        The solution does not depend on it, only the work does.
    max_iter : int, default=None
        Maximum number of lock-step iterations, None for ``3 k``.

    Returns
    -------
    S : ndarray of shape (k, n)
        The NNLS solutions, exact KKT points of their passive sets.
    passive : ndarray of shape (k, n), dtype=bool
        ``S > 0``: the set the derivative of :func:`nnls_backward` is taken on.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> X = np.array([[2.0, -1.0], [1.0, -1.0], [1.0, -1.0]])
    >>> S, passive = nnls(A, X)
    >>> S
    array([[1.5, 0. ],
           [1. , 0. ]])
    """
    A = np.asarray(A)
    X = np.asarray(X)
    # Solve in units where max |A| and max |X| are in [1, 2) (exact), then
    # map back: S scales as X / A.
    e_A, e_X = power_of_two_exponent(A), power_of_two_exponent(X)
    A, X = np.ldexp(A, -e_A), np.ldexp(X, -e_X)
    G = A.T @ A
    C = A.T @ X
    S, P = nnls_gram(G, C, _kkt_tolerance(A, X), passive=passive, max_iter=max_iter)
    return np.ldexp(S, e_X - e_A), P


def nnls_backward(A, X, S, passive, grad_S):
    """Back-propagate a gradient through ``S = q(X, A)``.

    On each column's passive set J, ``s_J = (A_J^T A_J)^{-1} A_J^T x`` and
    ``s = 0`` off J. With ``u_J = (A_J^T A_J)^{-1} g_J`` (``u = 0`` off J) for
    the incoming gradient g, the chain rule gives

        dC/dx = A u,        dC/dA = r u^T - (A u) s^T,    r = x - A s,

    summed over columns. This is the exact derivative wherever the passive
    sets do not change under a small perturbation of A and X.

    Parameters
    ----------
    A : ndarray of shape (m, k)
    X : ndarray of shape (m, n)
    S : ndarray of shape (k, n)
        ``q(X, A)`` as returned by :func:`nnls`.
    passive : ndarray of shape (k, n), dtype=bool
        The passive sets returned with S.
    grad_S : ndarray of shape (k, n)
        Gradient of the cost with respect to S.

    Returns
    -------
    grad_X : ndarray of shape (m, n)
    grad_A : ndarray of shape (m, k)
    """
    U = _masked_solve(A.T @ A, grad_S, passive)
    AU = A @ U
    grad_A = (X - A @ S) @ U.T - AU @ S.T
    return AU, grad_A
