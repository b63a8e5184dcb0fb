"""Multiplicative updates for sparse NMF with the beta-divergence.

Pure array math in the paper's orientation: data ``M`` is (n_features, n_frames),
bases ``W`` are (n_features, n_components), activations ``H`` are
(n_components, n_frames), and ``M ~ W @ H``. Estimators pass transposed views
of their (n_samples, n_features) arrays; nothing here sees an estimator.

References
----------
.. [1] J. R. Hershey, J. Le Roux, F. Weninger, "Deep unfolding: model-based
   inspiration of novel deep architectures", 2014, eq. 32-34.
.. [2] J. Le Roux, F. Weninger, J. R. Hershey, "Sparse NMF - half-baked or well
   done?", MERL TR2015-023, 2015.
.. [3] C. Févotte, J. Idier, "Algorithms for nonnegative matrix factorization
   with the beta-divergence", Neural Computation, 2011.
"""

import time

import numpy as np

from ._divergences import beta_divergence, eps_for, mm_exponent


def initial_activations(M, W):
    """Deterministic starting activations, one value per frame.

    Every activation of frame t equals ``sum(M[:, t]) / sum(W)`` so that the
    model ``W @ H`` starts with the same total mass as the frame. Depending only
    on the frame itself keeps inference of each frame independent of the
    others (results do not change with the batch a frame arrives in).

    Returns
    -------
    H0 : ndarray of shape (n_components, n_frames)
    """
    eps = eps_for(M.dtype)
    per_frame = M.sum(axis=0) / max(float(W.sum()), eps)
    return np.repeat(per_frame[np.newaxis, :].astype(M.dtype, copy=False), W.shape[1], axis=0)


def model(W, H, eps):
    """``W @ H`` floored at ``eps`` so it can be divided by and logged."""
    Lam = W @ H
    np.maximum(Lam, eps, out=Lam)
    return Lam


def activation_ratio(M, W, Lam, beta, mu, eps, *, W_colsum=None):
    """Numerator, denominator of the activation update (eq. 33).

    ``P = W.T @ (M * Lam**(beta-2))`` and ``Q = W.T @ Lam**(beta-1) + mu``.
    For KL (beta = 1) ``Q`` is the column sums of ``W`` plus ``mu`` and does not
    depend on the frame; it is returned with shape (n_components, 1).

    Returns
    -------
    P : ndarray of shape (n_components, n_frames)
    Q : ndarray of shape (n_components, n_frames) or (n_components, 1)
    """
    if beta == 1:
        P = W.T @ (M / Lam)
        colsum = W.sum(axis=0) if W_colsum is None else W_colsum
        Q = (colsum + mu)[:, np.newaxis]
    elif beta == 2:
        P = W.T @ M
        Q = W.T @ Lam
        Q += mu
    else:
        Lb2 = Lam ** (beta - 2.0)
        P = W.T @ (M * Lb2)
        Lb2 *= Lam
        Q = W.T @ Lb2
        Q += mu
    np.maximum(Q, eps, out=Q)
    return P, Q


def update_activations(M, W, H, beta, mu, *, exponent=1.0, Lam=None, W_colsum=None):
    """One multiplicative activation update, eq. 33 (with an optional MM exponent).

    Parameters
    ----------
    M : ndarray of shape (n_features, n_frames)
    W : ndarray of shape (n_features, n_components)
    H : ndarray of shape (n_components, n_frames)
    beta : float
    mu : float
        L1 sparsity weight.
    exponent : float, default=1.0
        ``H <- H * (P / Q) ** exponent``; 1 is eq. 33 itself, :func:`mm_exponent`
        makes it a majorization-minimization step for beta outside [1, 2].
    Lam : ndarray, optional
        ``W @ H`` already computed (floored).

    Returns
    -------
    H_new : ndarray of shape (n_components, n_frames)
    """
    eps = eps_for(M.dtype)
    if Lam is None:
        Lam = model(W, H, eps)
    P, Q = activation_ratio(M, W, Lam, beta, mu, eps, W_colsum=W_colsum)
    P /= Q
    if exponent != 1.0:
        P **= exponent
    P *= H
    return P


def normalize_columns(W, eps):
    """Scale the columns of ``W`` to unit L2 norm (in place) and return it."""
    norms = np.sqrt(np.einsum("fr,fr->r", W, W))
    np.maximum(norms, eps, out=norms)
    W /= norms
    return W


def update_bases_normalized(M, W, H, beta, *, Lam=None, step=1.0):
    """Normalization-aware multiplicative update of unit-norm bases [2].

    The objective ``D(M | W~ H)`` with ``W~ = W / ||W||`` column-wise is
    differentiated *through* the normalization: with ``G = dD/dW~`` the gradient
    is ``G - W~ * (1^T (W~ * G))`` per column. Splitting ``G`` into its positive
    part ``Lam**(beta-1) H^T`` and negative part ``(M Lam**(beta-2)) H^T`` gives

        W <- W * [(M Lam^(beta-2)) H^T + W * 1 1^T (W * Lam^(beta-1) H^T)]
                 / [Lam^(beta-1) H^T + W * 1 1^T (W * (M Lam^(beta-2)) H^T)]

    followed by a renormalization, so the L1 penalty on ``H`` cannot be
    dodged by rescaling. A plain update followed by renormalization is a
    different (and worse) algorithm.

    Parameters
    ----------
    step : float, default=1.0
        Exponent applied to the multiplicative factor (1 is the update above;
        smaller values take a shorter step in the same direction).

    Returns
    -------
    W_new : ndarray of shape (n_features, n_components), unit-norm columns.
    """
    eps = eps_for(M.dtype)
    if Lam is None:
        Lam = model(W, H, eps)
    if beta == 1:
        neg = (M / Lam) @ H.T
        pos = np.broadcast_to(H.sum(axis=1), W.shape)
    elif beta == 2:
        neg = M @ H.T
        pos = Lam @ H.T
    else:
        Lb2 = Lam ** (beta - 2.0)
        neg = (M * Lb2) @ H.T
        Lb2 *= Lam
        pos = Lb2 @ H.T
    # Column sums of W * G: the projection that removes the scale direction.
    pos_proj = np.einsum("fr,fr->r", W, pos)
    neg_proj = np.einsum("fr,fr->r", W, neg)
    numer = neg + W * pos_proj
    denom = pos + W * neg_proj
    np.maximum(denom, eps, out=denom)
    numer /= denom
    if step != 1.0:
        numer **= step
    numer *= W
    return normalize_columns(numer, eps)


def sparse_nmf_objective(M, Lam, H, beta, mu):
    """Full objective of eq. 32: ``D_beta(M | Lam) + mu * ||H||_1``."""
    return beta_divergence(M, Lam, beta) + mu * float(H.sum())


def make_objective(M, beta, mu, axis=None):
    """``f(Lam, H) = D_beta(M | Lam) + mu * ||H||_1`` with the data-only terms precomputed.

    For KL, ``D_1 = sum(M log M - M) - sum(M log Lam) + sum(Lam)``: the first
    sum depends on the data only, so each evaluation costs one ``log`` and
    two reductions instead of several full-size temporaries (reductions
    accumulate in float64). Other betas use :func:`beta_divergence`. With ``axis=0`` the
    function returns one value per frame (column).
    """

    def total(A):
        return A.sum(axis=axis, dtype=np.float64)

    if beta == 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            const = total(np.where(M > 0, M * np.log(M), 0.0)) - total(M)

        def objective(Lam, H):
            return const - total(M * np.log(Lam)) + total(Lam) + mu * total(H)

    else:

        def objective(Lam, H):
            return beta_divergence(M, Lam, beta, axis=axis) + mu * total(H)

    if axis is None:
        return lambda Lam, H: float(objective(Lam, H))
    return objective


def infer_activations(M, W, H, *, beta, mu, max_iter, tol):
    """Activation updates with the bases frozen, each frame stopping on its own.

    A frame stops when one iteration lowers *its* objective by at most
    ``tol`` times its value, so its result does not depend on the other
    frames it is processed with (a global stopping rule would make it).
    Only frames still running are updated.

    Returns
    -------
    H : ndarray of shape (n_components, n_frames)
    n_iter : int
        Iterations until the last frame stopped.
    loss_curve : list of float
        Objective summed over frames, at the start and after each iteration.
    """
    eps = eps_for(M.dtype)
    exponent = mm_exponent(beta)
    W_colsum = W.sum(axis=0)
    H = H.copy()
    per_frame = beta_divergence(M, model(W, H, eps), beta, axis=0) + mu * H.sum(axis=0)
    loss_curve = [float(per_frame.sum())]
    running = np.arange(M.shape[1])
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        M_run, H_run = M[:, running], H[:, running]
        H_run = update_activations(M_run, W, H_run, beta, mu, exponent=exponent, W_colsum=W_colsum)
        new = beta_divergence(M_run, model(W, H_run, eps), beta, axis=0) + mu * H_run.sum(axis=0)
        H[:, running] = H_run
        old = per_frame[running]
        per_frame[running] = new
        loss_curve.append(float(per_frame.sum()))
        if tol > 0:
            running = running[old - new > tol * np.abs(new)]
            if running.size == 0:
                break
    return H, n_iter, loss_curve


def fit_sparse_nmf(
    M,
    W,
    H,
    *,
    beta,
    mu,
    max_iter,
    tol,
    update_W=True,
    verbose=0,
    max_halvings=8,
):
    """Alternate multiplicative updates of ``H`` (and ``W``) until convergence.

    Activation updates use the majorization-minimization exponent of [3] and
    never increase the objective. The normalization-aware basis update of [2]
    is a heuristic without that guarantee, so each one is checked: if the
    objective is above that of the previous iteration, the step's exponent is
    halved (at most ``max_halvings`` times, after which ``W`` is left
    unchanged for this iteration). The objective recorded after every
    iteration is therefore non-increasing.

    Parameters
    ----------
    M : ndarray of shape (n_features, n_frames)
    W : ndarray of shape (n_features, n_components), unit-norm columns
    H : ndarray of shape (n_components, n_frames)
    beta, mu : float
    max_iter : int
    tol : float
        Stop when one iteration lowers the objective by at most ``tol`` times
        its current value.
    update_W : bool, default=True
        False freezes the bases (inference only).

    Returns
    -------
    W, H : ndarray
    n_iter : int
    loss_curve : list of float
        Objective after each iteration (index 0 is the starting point).
    """
    eps = eps_for(M.dtype)
    exponent = mm_exponent(beta)
    W_colsum = W.sum(axis=0)
    Lam = model(W, H, eps)
    objective = make_objective(M, beta, mu)
    loss = objective(Lam, H)
    loss_curve = [loss]
    start = time.perf_counter()
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        H = update_activations(M, W, H, beta, mu, exponent=exponent, Lam=Lam, W_colsum=W_colsum)
        Lam = model(W, H, eps)
        previous = loss
        if update_W:
            # The activation step above is a majorization-minimization step
            # (objective <= previous), so checking the basis step against
            # ``previous`` keeps every recorded objective non-increasing
            # with a single evaluation per iteration.
            step = 1.0
            for _ in range(max_halvings + 1):
                W_new = update_bases_normalized(M, W, H, beta, Lam=Lam, step=step)
                Lam_new = model(W_new, H, eps)
                loss_new = objective(Lam_new, H)
                if loss_new <= previous:
                    W, Lam, loss = W_new, Lam_new, loss_new
                    W_colsum = W.sum(axis=0)
                    break
                step *= 0.5
            else:
                # No basis step helped: the iteration only moved H.
                loss = objective(Lam, H)
        else:
            loss = objective(Lam, H)
        loss_curve.append(loss)
        if verbose and (n_iter % 10 == 0 or n_iter == 1):
            print(
                f"SparseNMF iteration {n_iter:4d}: objective {loss:.6g} "
                f"({time.perf_counter() - start:.2f} s)"
            )
        if tol > 0 and (previous - loss) <= tol * abs(loss):
            break
    return W, H, n_iter, loss_curve
