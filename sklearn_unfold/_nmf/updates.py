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
from sklearn.utils import check_random_state

from .. import _array_api as aa
from .._array_api import get_namespace, is_numpy
from .._fitting import run_interruptible
from .chunks import frame_buffer, frame_chunks
from .divergences import beta_divergence, eps_for, mm_exponent
from .scaling import safe_scale, scale_power, scaled_sparsity
from .steps import halving_step


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
    xp = get_namespace(M, W)
    eps = eps_for(M.dtype)
    per_frame = xp.sum(M, axis=0) / max(float(xp.sum(W)), eps)
    return xp.repeat(aa.astype(per_frame[None, :], M.dtype, xp), W.shape[1], axis=0)


def model(W, H, eps):
    """``W @ H`` floored at ``eps`` so it can be divided by and logged."""
    Lam = W @ H
    return aa.floor_(Lam, eps, get_namespace(Lam))


def activation_ratio(M, W, Lam, beta, mu, eps, *, W_colsum=None, numerator=None):
    """Numerator, denominator of the activation update (eq. 33).

    ``P = W.T @ (M * Lam**(beta-2))`` and ``Q = W.T @ Lam**(beta-1) + mu``.
    For KL (beta = 1) ``Q`` is the column sums of ``W`` plus ``mu`` and does not
    depend on the frame; it is returned with shape (n_components, 1), and
    ``numerator``, if given, is ``P`` already computed (returned as it is;
    ``Lam`` is then not read).

    Returns
    -------
    P : ndarray of shape (n_components, n_frames)
    Q : ndarray of shape (n_components, n_frames) or (n_components, 1)
    """
    xp = get_namespace(M, W)
    if beta == 1:
        P = W.T @ (M / Lam) if numerator is None else numerator
        colsum = xp.sum(W, axis=0) if W_colsum is None else W_colsum
        Q = (colsum + mu)[:, None]
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
    return P, aa.floor_(Q, eps, xp)


def update_activations(M, W, H, beta, mu, *, exponent=1.0, Lam=None, W_colsum=None, numerator=None):
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
    numerator : ndarray of shape (n_components, n_frames), optional
        For KL only (ignored otherwise): ``W.T @ (M / Lam)`` already
        computed (by the solver's pass over the model,
        :func:`_kl_frame_blocks`); ``Lam`` is then not needed. Not modified.

    Returns
    -------
    H_new : ndarray of shape (n_components, n_frames)
    """
    eps = eps_for(M.dtype)
    numerator = numerator if beta == 1 else None
    if Lam is None and numerator is None:
        Lam = model(W, H, eps)
    P, Q = activation_ratio(M, W, Lam, beta, mu, eps, W_colsum=W_colsum, numerator=numerator)
    if numerator is None:
        P /= Q
    else:
        P = P / Q  # a new array: the caller's numerator is left as it is
    if exponent != 1.0:
        P **= exponent
    P *= H
    return P


def normalize_columns(W, eps):
    """Scale the columns of ``W`` to unit L2 norm (in place) and return it."""
    xp = get_namespace(W)
    norms = aa.floor_(xp.sqrt(aa.column_dots(W, W, xp)), eps, xp)
    W /= norms
    return W


def bases_gradient_parts(M, W, H, beta, *, Lam=None):
    """Negative and positive parts of the gradient of ``D_beta(M | W H)`` in ``W``.

    ``neg = (M * Lam**(beta-2)) @ H.T`` and ``pos = Lam**(beta-1) @ H.T``
    (Févotte & Idier 2011). Both are sums over frames, so the parts of a data
    set are the sums of the parts of its chunks: this is what lets the
    basis update run chunk by chunk (:func:`fit_sparse_nmf` with
    ``batch_size``) or accumulate statistics over mini-batches
    (``SparseNMF.partial_fit``).

    Returns
    -------
    neg, pos : ndarray of shape (n_features, n_components)
        For KL ``pos`` is a read-only broadcast of ``H.sum(axis=1)``.
    """
    xp = get_namespace(M, W)
    eps = eps_for(M.dtype)
    if Lam is None:
        Lam = model(W, H, eps)
    if beta == 1:
        ratio = M / Lam
        # (H ratio^T)^T: the product BLAS runs fastest for frames-major data.
        neg = (H @ ratio.T).T
        pos = xp.broadcast_to(xp.sum(H, axis=1), W.shape)
    elif beta == 2:
        neg = M @ H.T
        pos = Lam @ H.T
    else:
        Lb2 = Lam ** (beta - 2.0)
        neg = (M * Lb2) @ H.T
        Lb2 *= Lam
        pos = Lb2 @ H.T
    return neg, pos


def normalized_bases_step(W, neg, pos, eps, *, step=1.0):
    """Normalization-aware multiplicative step of unit-norm bases from gradient parts [2].

    ``W <- W * [neg + W * 1 1^T (W * pos)] / [pos + W * 1 1^T (W * neg)]``,
    then renormalized; see :func:`update_bases_normalized`.

    Returns
    -------
    W_new : ndarray of shape (n_features, n_components), unit-norm columns,
        in the dtype of ``neg`` and ``pos`` combined with ``W``'s.
    """
    # Column sums of W * G: the projection that removes the scale direction.
    xp = get_namespace(W, neg, pos)
    pos_proj = aa.column_dots(W, pos, xp)
    neg_proj = aa.column_dots(W, neg, xp)
    numer = neg + W * pos_proj
    denom = aa.floor_(pos + W * neg_proj, eps, xp)
    numer /= denom
    if step != 1.0:
        numer **= step
    numer *= W
    return normalize_columns(numer, eps)


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
    neg, pos = bases_gradient_parts(M, W, H, beta, Lam=Lam)
    return normalized_bases_step(W, neg, pos, eps, step=step)


def sparse_nmf_objective(M, Lam, H, beta, mu):
    """Full objective of eq. 32: ``D_beta(M | Lam) + mu * ||H||_1``."""
    return beta_divergence(M, Lam, beta) + mu * float(get_namespace(H).sum(H))


def make_objective(M, beta, mu, axis=None):
    """``f(Lam, H) = D_beta(M | Lam) + mu * ||H||_1`` with the data-only terms precomputed.

    For KL, ``D_1 = sum(M log M - M) - sum(M log Lam) + sum(Lam)``: the first
    sum depends on the data only, so each evaluation costs one ``log`` and
    two reductions instead of several full-size temporaries (reductions
    accumulate in float64). Other betas use :func:`beta_divergence`. With ``axis=0`` the
    function returns one value per frame (column).
    """

    xp = get_namespace(M)

    def total(A):
        return xp.sum(A, axis=axis, dtype=xp.float64)

    if beta == 1:
        if is_numpy(xp):
            with np.errstate(divide="ignore", invalid="ignore"):
                const = total(np.where(M > 0, M * np.log(M), 0.0)) - total(M)
        else:
            # No log(0) to mask (libraries that warn, e.g. array-api-strict, stay quiet).
            const = total(M * xp.log(xp.where(M > 0, M, aa.scalar(1.0, M, xp)))) - total(M)

        def objective(Lam, H):
            return const - total(M * xp.log(Lam)) + total(Lam) + mu * total(H)

    else:

        def objective(Lam, H):
            return beta_divergence(M, Lam, beta, axis=axis) + mu * total(H)

    if axis is None:
        return lambda Lam, H: float(objective(Lam, H))
    return objective


# --------------------------------------------------------------------------
# Solver internals: full-size arrays in one memory layout, reused buffers
# --------------------------------------------------------------------------
# Elements per block of the blockwise passes (a few blocks fit in L2). For
# the KL passes a block is a set of whole frames; narrower blocks make the
# per-block products slow (1161 features, 100 components, one thread: 56
# frames 0.135 s per iteration, 112 frames 0.113 s, 225 to 3600 frames 0.108 s).
_BLOCK = 1 << 18


def _contiguous_frames(M):
    """``M`` itself when it is C- or F-contiguous, else a frames-major (F-ordered) copy.

    Every full-size array of the one-shot solver is laid out like ``M``, so
    element-wise work runs over contiguous memory in one order; an
    estimator's ``X.T`` is F-ordered (frames-major) and is used as it is.
    """
    if not isinstance(M, np.ndarray) or M.flags.c_contiguous or M.flags.f_contiguous:
        return M
    return np.asfortranarray(M)


def _model_into(W, H, eps, out):
    """:func:`model` written into ``out`` (C- or F-ordered), without a temporary.

    ``out=None`` (arrays other than numpy's) computes a new model.
    """
    if out is None:
        return model(W, H, eps)
    if out.flags.c_contiguous:
        np.matmul(W, H, out=out)
    else:
        np.matmul(H.T, W.T, out=out.T)
    np.maximum(out, eps, out=out)
    return out


def _flat(A):
    """The elements of a contiguous array in memory order (a view)."""
    return A.ravel(order="K")


def _kl_frame_blocks(M, mu, eps, numerator, max_frames=None):
    """The numpy KL iteration's passes over the data, a block of frames at a time.

    For KL the model ``Lam = W @ H`` is only ever needed through ``M / Lam``
    and the objective, so no full-size array is stored: each block of
    frames ``c`` (about ``_BLOCK`` elements) forms ``W @ H[:, c]`` in a
    scratch array that stays in cache, floors it at ``eps``, and uses it
    there. Each pass reads the data once. Returns two functions of bases
    ``W`` and activations ``H``:

    ``gradient(W, H)``
        the gradient parts of :func:`bases_gradient_parts`, the negative
        part ``(M / Lam) H^T`` summed over the blocks;
    ``objective(W, H)``
        :func:`make_objective`'s value, ``sum(M log M - M) - sum(M log Lam)
        + sum(Lam) + mu * sum(H)`` (each block's sums pairwise, float64
        across blocks), and ``W.T @ (M / Lam)`` written into ``numerator``:
        the next activation update's numerator (:func:`update_activations`)
        when ``(W, H)`` is the point the iteration ends at.

    Element-wise operations are those of the unfused expressions
    (``maximum``, ``divide``, ``log`` in the data's dtype); only the order
    in which products and sums accumulate differs (rounding). A block
    holds at most ``max_frames`` frames (None: no bound but ``_BLOCK``).
    """
    n_features, n_frames = M.shape
    width = max(1, min(n_frames, _BLOCK // max(n_features, 1), max_frames or n_frames))
    blocks = [slice(start, min(start + width, n_frames)) for start in range(0, n_frames, width)]
    # Scratch in M's layout, so that element-wise work on a block runs over
    # memory in one order: frames-major whenever each frame is contiguous
    # (also a column slice of an estimator's X, used where it lies).
    order = "F" if M.flags.f_contiguous or (M.strides[0] == M.itemsize and n_features > 1) else "C"
    dtype = numerator.dtype
    scratch = np.empty((n_features, width), dtype=dtype, order=order)
    ratio = np.empty_like(scratch)
    # sum(M log M - M), block by block (no data-size temporary).
    const = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        for c in blocks:
            M_c = M[:, c]
            const += float(np.where(M_c > 0, M_c * np.log(M_c), 0.0).sum(dtype=np.float64))
            const -= float(M_c.sum(dtype=np.float64))

    def model_block(W, H, c):
        Lam = scratch[:, : c.stop - c.start]
        if order == "F":
            np.matmul(H[:, c].T, W.T, out=Lam.T)
        else:
            np.matmul(W, H[:, c], out=Lam)
        return np.maximum(Lam, eps, out=Lam)

    def gradient(W, H):
        neg_t = np.zeros((W.shape[1], n_features), dtype=dtype)
        part = np.empty_like(neg_t)
        for c in blocks:
            R = model_block(W, H, c)
            np.divide(M[:, c], R, out=R)
            # (H R^T)^T: the product BLAS runs fastest for frames-major data.
            np.matmul(H[:, c], R.T, out=part)
            neg_t += part
        return neg_t.T, np.broadcast_to(np.sum(H, axis=1), W.shape)

    def objective(W, H):
        m_log_lam = 0.0
        lam_sum = 0.0
        for c in blocks:
            Lam = model_block(W, H, c)
            R = ratio[:, : c.stop - c.start]
            np.divide(M[:, c], Lam, out=R)
            np.matmul(W.T, R, out=numerator[:, c])
            lam_sum += float(Lam.sum())
            np.log(Lam, out=Lam)
            Lam *= M[:, c]
            m_log_lam += float(Lam.sum())
        return const - m_log_lam + lam_sum + mu * float(H.sum(dtype=np.float64))

    return gradient, objective


def _sum_of_squares(M):
    """``sum(M**2)`` accumulated in float64, block by block."""
    M_flat = _flat(M)
    total = 0.0
    for start in range(0, M_flat.size, _BLOCK):
        block = M_flat[start : start + _BLOCK].astype(np.float64)
        total += float(np.dot(block, block))
    return total


def _fit_frobenius_one_shot(M, state, *, mu, max_iter, tol, update_W, verbose, max_halvings):
    """The one-shot iterations for beta = 2 from Gram matrices, never forming ``W @ H``.

    With ``G = M H^T`` and ``K = H H^T`` (and ``W^T W``), everything the
    iteration needs is small: the activation update is
    ``H * (W^T M) / ((W^T W) H + mu)``, the basis-gradient parts are ``G``
    and ``W K``, and the objective of any bases ``W`` is

        0.5 ||M||^2 - <W, G> + 0.5 <W^T W, K> + mu sum(H),

    with the small products in float64. Two products of the data's size per
    iteration (``W^T M`` and ``M H^T``), as scikit-learn's NMF does; the
    algorithm is the one of :func:`_fit_sparse_nmf_one_shot` (the model is
    not floored at ``eps`` here, which only matters for entries below it).
    """
    W, H = state["W"], state["H"]
    xp = get_namespace(M, W)
    eps = eps_for(M.dtype)
    if is_numpy(xp):
        half_norm = 0.5 * _sum_of_squares(M)
    else:
        M64 = aa.astype(M, xp.float64, xp)
        half_norm = 0.5 * float(xp.sum(M64 * M64))
        del M64

    def objective(W_, G, K, H_):
        W64 = aa.astype(W_, xp.float64, xp, copy=True)
        cross = float(xp.sum(aa.column_dots(W64, G, xp)))
        gram = float(xp.sum(aa.column_dots(W64.T @ W64, K, xp)))
        return half_norm - cross + 0.5 * gram + mu * float(xp.sum(H_, dtype=xp.float64))

    def stats(H_):
        H64 = aa.astype(H_, xp.float64, xp, copy=True)
        return aa.astype((H_ @ M.T).T, xp.float64, xp, copy=True), H64 @ H64.T

    G, K = stats(H)
    loss = objective(W, G, K, H)
    loss_curve = state["loss_curve"] = [loss]
    start = time.perf_counter()
    for n_iter in range(1, max_iter + 1):
        # Activation update of eq. 33 (exponent 1 for beta = 2).
        P = W.T @ M
        Q = (W.T @ W) @ H
        Q += mu
        Q = aa.floor_(Q, eps, xp)
        P /= Q
        P *= H
        H = P
        G, K = stats(H)
        previous = loss
        if update_W:
            neg = aa.astype(G, W.dtype, xp) if W.dtype == xp.float64 else G
            pos = xp.matmul(W, K)  # float64 (``@`` refuses mixed dtypes on torch)

            def propose(step):
                W_new = aa.astype(normalized_bases_step(W, neg, pos, eps, step=step), W.dtype, xp)
                return W_new, objective(W_new, G, K, H)

            accepted, loss, _ = halving_step(propose, previous, max_halvings=max_halvings)
            if accepted is None:
                loss = objective(W, G, K, H)
            else:
                W = accepted
        else:
            loss = objective(W, G, K, H)
        state.update(W=W, H=H, loss_curve=loss_curve + [loss])
        loss_curve = state["loss_curve"]
        _report(verbose, n_iter, loss, start)
        if tol > 0 and (previous - loss) <= tol * abs(loss):
            break


def infer_activations(M, W, H, *, beta, mu, max_iter, tol):
    """Activation updates with the bases frozen, each frame stopping on its own.

    A frame stops when one iteration lowers *its* objective by at most
    ``tol`` times its value, so its result does not depend on the other
    frames it is processed with (a global stopping rule would make it).
    On numpy only frames still running are updated. Other namespaces
    update every frame and keep the result of the running ones (the same
    numbers, without data-dependent shapes), and look whether any frame is
    still running every ``check_every`` iterations only, so that a GPU is
    not waited for at every iteration; ``n_iter`` is then a multiple of it.

    Returns
    -------
    H : ndarray of shape (n_components, n_frames)
    n_iter : int
        Iterations until the last frame stopped.
    loss_curve : list of float
        Objective summed over frames, at the start and after each iteration.
    """
    xp = get_namespace(M, W)
    eps = eps_for(M.dtype)
    exponent = mm_exponent(beta)
    W_colsum = xp.sum(W, axis=0)
    H = aa.copy(H, xp)
    per_frame = beta_divergence(M, model(W, H, eps), beta, axis=0) + mu * xp.sum(H, axis=0)
    loss_curve = [xp.sum(per_frame)]
    running = np.arange(M.shape[1]) if is_numpy(xp) else xp.ones(M.shape[1], dtype=xp.bool, device=aa.device(M))
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        M_run, H_run = _running_frames(M, running, xp), _running_frames(H, running, xp)
        H_run = update_activations(M_run, W, H_run, beta, mu, exponent=exponent, W_colsum=W_colsum)
        new = beta_divergence(M_run, model(W, H_run, eps), beta, axis=0) + mu * xp.sum(H_run, axis=0)
        H, per_frame, still = _keep_running(H, H_run, per_frame, new, running, tol, xp)
        loss_curve.append(xp.sum(per_frame))
        if tol > 0:
            running = still
            if _all_stopped(running, n_iter, xp):
                break
    return H, n_iter, [float(loss) for loss in loss_curve]


_CHECK_EVERY = 10  # iterations between host syncs of the stopping test (non-numpy arrays)


def _running_frames(A, running, xp):
    """The columns of ``A`` still running (all of them outside numpy: ``running`` is then a mask)."""
    return A[:, running] if is_numpy(xp) else A


def _keep_running(H, H_run, per_frame, new, running, tol, xp):
    """Store the running frames' update; the frames that keep running after it.

    A frame stops when its objective fell by at most ``tol`` times its value.
    ``running`` holds frame indices on numpy (updated in place), a boolean
    mask elsewhere (stopped frames keep their old values).
    """
    if is_numpy(xp):
        H[:, running] = H_run
        old = per_frame[running]
        per_frame[running] = new
        return H, per_frame, running[old - new > tol * np.abs(new)]
    H = xp.where(running, H_run, H)
    still = running & (per_frame - new > tol * xp.abs(new))
    return H, xp.where(running, new, per_frame), still


def _all_stopped(running, n_iter, xp):
    if is_numpy(xp):
        return running.size == 0
    return n_iter % _CHECK_EVERY == 0 and not bool(xp.any(running))


def infer_activations_batched(M, W, *, beta, mu, max_iter, tol, batch_size=None):
    """:func:`infer_activations` from :func:`initial_activations`, ``batch_size`` frames at a time.

    Frames are independent (own start, own stopping rule), so chunking only
    bounds the memory of intermediates; results equal one call on all frames
    up to rounding.

    Returns
    -------
    H : ndarray of shape (n_components, n_frames)
        The transpose of a C-ordered (n_frames, n_components) array.
    """
    xp = get_namespace(M, W)
    n_frames = M.shape[1]
    out = xp.empty((n_frames, W.shape[1]), dtype=xp.result_type(M.dtype, W.dtype), **_on(M, xp))
    for chunk in frame_chunks(n_frames, batch_size):
        M_c = M[:, chunk]
        H_c, _, _ = infer_activations(
            M_c, W, initial_activations(M_c, W), beta=beta, mu=mu, max_iter=max_iter, tol=tol
        )
        out[chunk, :] = H_c.T
    return out.T


def _on(like, xp):
    """``device=`` of ``like`` for the array constructors, on namespaces that have devices."""
    return {} if is_numpy(xp) else {"device": aa.device(like)}


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
    batch_size=None,
    stop_on_interrupt=False,
    name="SparseNMF",
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
    batch_size : int, default=None
        Process the frames ``batch_size`` at a time: the same algorithm (the
        basis update sums the gradient parts of the chunks, see
        :func:`bases_gradient_parts`, and the step check sums their
        objectives), so results equal the one-shot run up to rounding, but
        intermediates never exceed ``batch_size`` frames. ``H`` is then
        updated in place (it may be a ``numpy.memmap``, see
        :func:`frame_buffer`). None processes all frames at once.
    stop_on_interrupt : bool, default=False
        On ``KeyboardInterrupt``, warn and return the state after the last
        completed iteration (as scikit-learn's ``MLPClassifier`` does)
        instead of propagating the interrupt.

    Returns
    -------
    W, H : ndarray
    n_iter : int
    loss_curve : list of float
        Objective after each iteration (index 0 is the starting point).
    """
    if batch_size is not None and batch_size < M.shape[1]:
        # numpy KL has its own passes (two per iteration, in cache, no copy of M).
        solver = _fit_kl_in_place if beta == 1 and is_numpy(get_namespace(M, W)) else _fit_sparse_nmf_chunked
        extra = {"batch_size": batch_size}
    else:
        solver, extra = _fit_sparse_nmf_one_shot, {}
    state = {"W": W, "H": H, "loss_curve": []}

    def loop():
        solver(
            M, state, beta=beta, mu=mu, max_iter=max_iter, tol=tol, update_W=update_W,
            verbose=verbose, max_halvings=max_halvings, **extra,
        )

    run_interruptible(
        loop, lambda: len(state["loss_curve"]) - 1, name=name, stop_on_interrupt=stop_on_interrupt,
        what="iteration",
    )
    loss_curve = state["loss_curve"]
    return state["W"], state["H"], len(loss_curve) - 1, loss_curve


def _report(verbose, n_iter, loss, start):
    if verbose and (n_iter % 10 == 0 or n_iter == 1):
        print(
            f"SparseNMF iteration {n_iter:4d}: objective {loss:.6g} "
            f"({time.perf_counter() - start:.2f} s)"
        )


def _fit_sparse_nmf_one_shot(M, state, *, beta, mu, max_iter, tol, update_W, verbose, max_halvings):
    """All frames at once. ``state`` holds W, H and the loss curve of the last
    completed iteration (rebound, never modified in place).

    On numpy, full-size arrays are buffers allocated once, in the memory
    layout of ``M``: for KL only ``M / Lam`` (the model itself is formed a
    block of frames at a time, :func:`_kl_frame_blocks`), for other betas
    the model before and after a basis step; the model (or ``M / Lam``) of
    accepted bases is the next iteration's.
    """
    M = _contiguous_frames(M)
    if beta == 2:
        return _fit_frobenius_one_shot(
            M, state, mu=mu, max_iter=max_iter, tol=tol, update_W=update_W, verbose=verbose,
            max_halvings=max_halvings,
        )
    W, H = state["W"], state["H"]
    xp = get_namespace(M, W)
    eps = eps_for(M.dtype)
    exponent = mm_exponent(beta)
    W_colsum = xp.sum(W, axis=0)
    # ``evaluate(W, H, out) -> (Lam, loss)`` and ``gradient(W, H, out) ->
    # (neg, pos, Lam)``: the model of (W, H) (written into ``out`` on numpy)
    # with the objective or the basis-gradient parts.
    if is_numpy(xp) and beta == 1:
        # The model is never stored (_kl_frame_blocks, Lam is None); every
        # evaluation leaves W.T @ (M / Lam) of the point it evaluated in
        # ``numerator``. The iteration ends at the last point evaluated (the
        # accepted proposal, or (W, H) itself), so that is the next
        # activation update's numerator.
        numerator = np.empty(H.shape, dtype=np.result_type(M, W, H))
        kl_gradient, kl_objective = _kl_frame_blocks(M, mu, eps, numerator)

        def evaluate(W_, H_, out):
            return None, kl_objective(W_, H_)

        def gradient(W_, H_, out):
            return (*kl_gradient(W_, H_), None)

        Lam, spare = None, None
    else:
        # Full-size models in reused buffers on numpy, new arrays elsewhere.
        numerator = None
        objective = make_objective(M, beta, mu)
        buffers = is_numpy(xp)

        def evaluate(W_, H_, out):
            Lam_ = _model_into(W_, H_, eps, out if buffers else None)
            return Lam_, objective(Lam_, H_)

        def gradient(W_, H_, out):
            Lam_ = _model_into(W_, H_, eps, out if buffers else None)
            return (*bases_gradient_parts(M, W_, H_, beta, Lam=Lam_), Lam_)

        Lam = np.empty_like(M, dtype=np.result_type(W, H)) if buffers else None
        spare = np.empty_like(Lam) if update_W and buffers else None
    Lam, loss = evaluate(W, H, Lam)
    loss_curve = state["loss_curve"] = [loss]
    start = time.perf_counter()
    for n_iter in range(1, max_iter + 1):
        H = update_activations(M, W, H, beta, mu, exponent=exponent, Lam=Lam, W_colsum=W_colsum, numerator=numerator)
        previous = loss
        if update_W:
            # The activation step above is a majorization-minimization step
            # (objective <= previous), so checking the basis step against
            # ``previous`` keeps every recorded objective non-increasing
            # with a single evaluation per iteration. The gradient parts do
            # not depend on the step: shorter steps reuse them.
            neg, pos, Lam = gradient(W, H, Lam)

            def propose(step):
                W_new = normalized_bases_step(W, neg, pos, eps, step=step)
                Lam_new, loss_new = evaluate(W_new, H, spare)
                return (W_new, Lam_new), loss_new

            accepted, loss, _ = halving_step(propose, previous, max_halvings=max_halvings)
            if accepted is None:
                # No basis step helped: the iteration only moved H.
                Lam, loss = evaluate(W, H, Lam)
            else:
                (W, Lam), spare = accepted, Lam
                W_colsum = xp.sum(W, axis=0)
        else:
            Lam, loss = evaluate(W, H, Lam)
        state.update(W=W, H=H, loss_curve=loss_curve + [loss])
        loss_curve = state["loss_curve"]
        _report(verbose, n_iter, loss, start)
        if tol > 0 and (previous - loss) <= tol * abs(loss):
            break


def _fit_sparse_nmf_chunked(M, state, *, beta, mu, max_iter, tol, update_W, verbose, max_halvings, batch_size):
    """The same iterations, ``batch_size`` frames at a time, ``H`` updated in place.

    Per iteration: one pass updates each chunk's activations and sums the
    chunks' basis-gradient parts; each tried basis step costs one more pass
    (objective of the new bases with the new activations).
    """
    W, H = state["W"], state["H"]
    xp = get_namespace(M, W)
    eps = eps_for(M.dtype)
    exponent = mm_exponent(beta)
    chunks = frame_chunks(M.shape[1], batch_size)
    objectives = [make_objective(M[:, c], beta, mu) for c in chunks]

    def total_objective(W_):
        return sum(f(model(W_, H[:, c], eps), H[:, c]) for f, c in zip(objectives, chunks))

    loss = total_objective(W)
    loss_curve = state["loss_curve"] = [loss]
    start = time.perf_counter()
    for n_iter in range(1, max_iter + 1):
        W_colsum = xp.sum(W, axis=0)
        neg = xp.zeros(W.shape, dtype=xp.float64, **_on(W, xp))
        pos = xp.zeros(W.shape, dtype=xp.float64, **_on(W, xp))
        for c in chunks:
            M_c = M[:, c]
            H_c = update_activations(M_c, W, H[:, c], beta, mu, exponent=exponent, W_colsum=W_colsum)
            # An MM step per frame: any subset of updated chunks is a valid,
            # better point, so an interrupt here leaves a consistent state.
            H[:, c] = H_c
            if update_W:
                n_c, p_c = bases_gradient_parts(M_c, W, H_c, beta)
                neg += n_c
                pos += p_c
        previous = loss
        if update_W:

            def propose(step):
                W_new = aa.astype(normalized_bases_step(W, neg, pos, eps, step=step), W.dtype, xp)
                return W_new, total_objective(W_new)

            accepted, loss, _ = halving_step(propose, previous, max_halvings=max_halvings)
            if accepted is None:
                loss = total_objective(W)
            else:
                W = accepted
        else:
            loss = total_objective(W)
        state.update(W=W, loss_curve=loss_curve + [loss])
        loss_curve = state["loss_curve"]
        _report(verbose, n_iter, loss, start)
        if tol > 0 and (previous - loss) <= tol * abs(loss):
            break


def _fit_kl_in_place(M, state, *, beta, mu, max_iter, tol, update_W, verbose, max_halvings, batch_size):
    """:func:`_fit_sparse_nmf_chunked` for KL (``beta`` = 1) on numpy: the one-shot solver's passes, ``H`` updated in place.

    The model is formed a block of frames at a time (:func:`_kl_frame_blocks`,
    M used in its own layout, no copy), so no intermediate grows with the
    data; the activation numerators ``W.T @ (M / Lam)`` left by each
    objective pass live in a :func:`~.chunks.frame_buffer` like ``H`` (a
    temporary file when ``M`` is memory mapped). An iteration is two passes
    over the data (basis gradient, objective of the proposal) instead of
    three, each in cache. ``H`` is updated ``batch_size`` frames at a time,
    each an MM step per frame, so an interrupt leaves a consistent state.
    """
    W, H = state["W"], state["H"]
    eps = eps_for(M.dtype)
    n_frames = M.shape[1]
    chunks = frame_chunks(n_frames, batch_size)
    dtype = np.result_type(M, W, H)
    numerator = frame_buffer(n_frames, W.shape[1], dtype, like=M)
    kl_gradient, kl_objective = _kl_frame_blocks(M, mu, eps, numerator, max_frames=batch_size)
    # Every objective pass writes the numerators of the point it evaluated;
    # the iteration ends at the last point evaluated (see the one-shot solver).
    loss = kl_objective(W, H)
    loss_curve = state["loss_curve"] = [loss]
    start = time.perf_counter()
    for n_iter in range(1, max_iter + 1):
        W_colsum = np.sum(W, axis=0)
        for c in chunks:
            # From the numerators of (W, H): M is not read.
            H[:, c] = update_activations(
                M[:, c], W, H[:, c], 1.0, mu, W_colsum=W_colsum, numerator=numerator[:, c]
            )
        previous = loss
        if update_W:
            neg, pos = kl_gradient(W, H)

            def propose(step):
                W_new = aa.astype(normalized_bases_step(W, neg, pos, eps, step=step), W.dtype, np)
                return W_new, kl_objective(W_new, H)

            accepted, loss, _ = halving_step(propose, previous, max_halvings=max_halvings)
            if accepted is None:
                loss = kl_objective(W, H)
            else:
                W = accepted
        else:
            loss = kl_objective(W, H)
        state.update(W=W, loss_curve=loss_curve + [loss])
        loss_curve = state["loss_curve"]
        _report(verbose, n_iter, loss, start)
        if tol > 0 and (previous - loss) <= tol * abs(loss):
            break


def init_bases(M, n_components, init, random_state):
    """Starting unit-norm bases, shape (n_features, n_components).

    ``'exemplar'`` picks random frames of ``M`` as the paper does (sec. 5.3),
    with replacement only when there are fewer frames than components; a small
    random floor (1e-3 of the data's mean) keeps exact zeros from locking under
    multiplicative updates. ``'random'`` draws uniform entries.
    """
    xp = get_namespace(M)
    rng = check_random_state(random_state)
    n_features, n_frames = M.shape
    scale = float(xp.mean(M)) if aa.size(M) else 1.0
    scale = scale if scale > 0 else 1.0
    if init == "exemplar":
        idx = rng.choice(n_frames, size=n_components, replace=n_components > n_frames)
        noise = aa.asarray(rng.uniform(size=(n_features, n_components)), xp, like=M)
        W = _frames(M, idx, xp) + 1e-3 * scale * noise
    else:
        W = aa.asarray(rng.uniform(size=(n_features, n_components)) * scale + 1e-3 * scale, xp, like=M)
    return normalize_columns(aa.astype(W, M.dtype, xp), eps_for(M.dtype))


def _frames(M, idx, xp):
    """``M[:, idx]`` for a numpy index array ``idx``."""
    return M[:, idx] if is_numpy(xp) else xp.take(M, aa.asarray(idx, xp, like=M), axis=1)


def init_training_activations(M, W, random_state, *, out=None, batch_size=None):
    """Random positive activations whose model matches the data's mean level.

    With ``out`` (e.g. a :func:`~.chunks.frame_buffer`) the values are written
    there ``batch_size`` frames at a time, drawn in the same order from the
    generator, so they are bit-identical to the one-shot array.
    """
    xp = get_namespace(M)
    rng = check_random_state(random_state)
    n_components, n_frames = W.shape[1], M.shape[1]
    # mean(W H) = n_components * mean(W) * level = mean(M); proportional to the
    # data, so that data s times louder starts (and stays) s times larger.
    level = float(xp.mean(M)) / (n_components * float(xp.mean(W))) if aa.size(M) and aa.size(W) else 1.0
    level = level if level > 0 and np.isfinite(level) else 1.0
    if out is None:
        H = level * rng.uniform(0.5, 1.5, size=(n_components, n_frames))
        return aa.astype(aa.asarray(H, xp, like=M), M.dtype, xp)
    # Row after row, chunk after chunk: the C order of the one-shot draw.
    for r in range(n_components):
        for chunk in frame_chunks(n_frames, batch_size):
            values = level * rng.uniform(0.5, 1.5, size=chunk.stop - chunk.start)
            out[r, chunk] = values if is_numpy(xp) else aa.astype(aa.asarray(values, xp, like=M), out.dtype, xp)
    return out


def learn_sparse_nmf(
    V,
    n_components,
    *,
    beta,
    sparsity,
    init,
    random_state,
    max_iter,
    tol,
    batch_size=None,
    verbose=0,
    stop_on_interrupt=False,
    name="SparseNMF",
):
    """Sparse NMF of ``V`` from a fresh start, at any scale of the data.

    The bases start from :func:`init_bases`, the activations from
    :func:`init_training_activations` (both drawn from ``random_state``, in
    that order), and :func:`fit_sparse_nmf` runs on ``V / s``
    (:func:`~.scaling.safe_scale`) with the matching sparsity.

    Parameters
    ----------
    V : ndarray of shape (n_samples, n_features)
        Non-negative data, one frame per row (may be a ``numpy.memmap``).

    Returns
    -------
    W : ndarray of shape (n_features, n_components)
        Unit-norm bases.
    n_iter : int
    loss_curve : list of float
        Objective in the units of ``V``.
    """
    rng = check_random_state(random_state)
    scale = safe_scale(V)
    M = V.T if scale == 1.0 else V.T / scale
    W = init_bases(M, n_components, init, rng)
    n_frames = M.shape[1]
    if batch_size is None or batch_size >= n_frames:
        H = init_training_activations(M, W, rng)
    else:
        # The activations of every frame are the solver's state; they live in
        # a temporary file when V is memory mapped.
        H = frame_buffer(n_frames, n_components, M.dtype, like=V)
        init_training_activations(M, W, rng, out=H, batch_size=batch_size)
    W, H, n_iter, loss_curve = fit_sparse_nmf(
        M,
        W,
        H,
        beta=beta,
        mu=scaled_sparsity(float(sparsity), beta, scale, M.dtype),
        max_iter=max_iter,
        tol=tol,
        verbose=verbose,
        batch_size=batch_size,
        stop_on_interrupt=stop_on_interrupt,
        name=name,
    )
    # The objective of V is scale**beta times that of V / scale.
    return W, n_iter, [loss * scale_power(scale, beta) for loss in loss_curve]
