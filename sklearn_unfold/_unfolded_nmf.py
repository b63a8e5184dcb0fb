"""Unfolded NMF: layer steps, Wiener output layer, multiplicative back-propagation.

Arrays are in the paper's orientation: spectra ``M`` (n_features, n_frames),
bases ``W`` (n_features, n_components), activations ``H`` (n_components,
n_frames). Nothing here sees an estimator.

Network (paper eq. 62-63, sec. 5.4). ``H^0`` is the deterministic start of
:func:`initial_activations`. Iteration ``k = 1..K`` computes
``H^k = f(W^(k-1), M, H^(k-1))`` with the multiplicative update of eq. 33 and
the reconstruction is the Wiener-like filter of eq. 34 with ``W^K``. The
``C`` trained matrices are ``W^(K-C+1) .. W^K`` (the reconstruction layer
counts, so ``C = 1`` is DNMF); the iterations that use ``W^0 .. W^(K-C)`` run
with the fixed, context-stacked sparse-NMF bases on the context-stacked
mixture and do not depend on anything trained, so their output is computed
once per fit. Trained layers are single-frame (the last F rows).

Back-propagation keeps the positive and negative parts of every gradient
(eq. 39-42, 83-87) so that ``W <- W * [grad]_- / [grad]_+`` keeps the bases
non-negative without projection (eq. 38). For ``beta = 1`` the formulas below
are exactly eq. 98-105 of appendix D.5; they are derived here for any
``beta >= 0`` of the layer updates and any ``beta`` of the training target.
"""

import time
import warnings

import numpy as np

from ._divergences import beta_divergence, beta_divergence_grad_parts, eps_for
from ._nmf_updates import activation_ratio, frame_chunks, initial_activations, model


# --------------------------------------------------------------------------
# One update layer (eq. 33 / 69) and its backward step (eq. 93-97, 102-105)
# --------------------------------------------------------------------------
def layer_forward(M, W, H, beta, mu, exponent=1.0, *, keep=False, W_colsum=None):
    """One unfolded iteration ``H_new = H * (P / Q) ** exponent`` (eq. 33).

    Parameters
    ----------
    M : ndarray of shape (n_features, n_frames)
    W : ndarray of shape (n_features, n_components)
    H : ndarray of shape (n_components, n_frames)
    beta, mu : float
        Divergence of the inference objective and L1 weight (eq. 32).
    exponent : float, default=1.0
        1 in the paper; :func:`mm_exponent` for beta outside [1, 2].
    keep : bool, default=False
        Also return what the backward step needs.

    Returns
    -------
    H_new : ndarray of shape (n_components, n_frames)
    cache : tuple (H, Lam, P, Q), only when ``keep``
    """
    eps = eps_for(M.dtype)
    Lam = model(W, H, eps)
    P, Q = activation_ratio(M, W, Lam, beta, mu, eps, W_colsum=W_colsum)
    ratio = P / Q
    if exponent != 1.0:
        ratio **= exponent
    ratio *= H
    if keep:
        return ratio, (H, Lam, P, Q)
    return ratio


def _lambda_powers(M, Lam, beta):
    """``M Lam^(beta-2)``, ``M Lam^(beta-3)``, ``Lam^(beta-1)``, ``Lam^(beta-2)``.

    ``Lam^(beta-1)`` is None for beta = 1 (all ones); the last two are only
    needed when beta != 1, the second only when beta != 2.
    """
    if beta == 1:
        MLb2 = M / Lam
        return MLb2, MLb2 / Lam, None, None
    if beta == 2:
        return M, None, Lam, np.ones_like(Lam)
    Lb2 = Lam ** (beta - 2.0)
    MLb2 = M * Lb2
    return MLb2, MLb2 / Lam, Lb2 * Lam, Lb2


def layer_backward(M, W, cache, Gp, Gm, beta, exponent=1.0, *, need_input_grad=True):
    """Positive and negative gradient parts through one update layer.

    Given ``[dE/dH_new]_+ = Gp`` and ``[dE/dH_new]_- = Gm``, returns the parts
    for the layer's input ``H`` (eq. 95, 97 / 102, 103) and for ``W``
    (eq. 90, 92 / 104, 105), combining them by the sign of each Jacobian term
    as in eq. 83-87. With ``a = rho H / Q``, ``c = a P / Q`` (``rho`` is 1 for
    the plain update) the Jacobian of ``H_new`` splits into

    - for ``H``: ``A = R^exponent`` (diagonal, positive),
      ``B = |beta-2| W^T [M Lam^(beta-3) (W (G a))]`` (sign of beta - 2),
      ``C = |beta-1| W^T [Lam^(beta-2) (W (G c))]`` (sign of 1 - beta);
    - for ``W``: ``D = (M Lam^(beta-2)) (G a)^T`` (positive),
      ``E = |beta-2| (M Lam^(beta-3) (W (G a))) H^T`` (sign of beta - 2) with
      diagonal part ``Ed = |beta-2| W * ((M Lam^(beta-3)) (G a H)^T)``,
      ``F = Lam^(beta-1) (G c)^T`` (negative),
      ``G = |beta-1| (Lam^(beta-2) (W (G c))) H^T`` (sign of 1 - beta) with
      diagonal part ``Gd``.

    As in eq. 77-80, a diagonal derivative ``dh_r / dw_nr`` whose mixed-sign
    pieces sum to a sign-definite expression is split as a whole: for
    1 <= beta < 2, ``D - Ed >= 0`` (eq. 77: the factor ``1 - w h / Lam``), for
    beta < 1, ``F - Gd >= 0``. For beta = 1 this gives eq. 104-105 exactly.

    Returns
    -------
    (dHp, dHm) : tuple of ndarray of shape (n_components, n_frames) or None
    (dWp, dWm) : tuple of ndarray of shape (n_features, n_components)
    """
    H, Lam, P, Q = cache
    eps = eps_for(M.dtype)
    ratio = P / Q
    if exponent == 1.0:
        a = H / Q
        ratio_pow = ratio
    else:
        np.maximum(ratio, eps, out=ratio)
        ratio_pow = ratio**exponent
        a = (exponent * ratio_pow / ratio) * H / Q
    c = a * ratio
    MLb2, MLb3, Lb1, Lb2 = _lambda_powers(M, Lam, beta)
    kB, kC = abs(beta - 2.0), abs(beta - 1.0)

    def parts(G):
        """The Jacobian pieces applied to one non-negative G (diagonal groups apart)."""
        Ga = G * a
        out = {"D": MLb2 @ Ga.T}
        if need_input_grad:
            out["A"] = G * ratio_pow
        if kB:
            U = MLb3 * (W @ Ga)
            U *= kB
            out["E"] = U @ H.T
            if need_input_grad:
                out["B"] = W.T @ U
        Gc = G * c
        out["F"] = np.broadcast_to(Gc.sum(axis=1), W.shape) if Lb1 is None else Lb1 @ Gc.T
        if kC:
            V = Lb2 * (W @ Gc)
            V *= kC
            out["G"] = V @ H.T
            if need_input_grad:
                out["C"] = W.T @ V
        return out

    pp, pm = parts(Gp), parts(Gm)

    # Which pieces are positive / negative, per the sign of beta - 2, beta - 1.
    if beta < 1:
        W_pos, W_neg = ("D", "G"), ("E", "F")
        H_pos, H_neg = ("A", "C"), ("B",)
    elif beta < 2:
        W_pos, W_neg = ("D",), ("E", "F", "G")
        H_pos, H_neg = ("A",), ("B", "C")
    else:
        W_pos, W_neg = ("D", "E"), ("F", "G")
        H_pos, H_neg = ("A", "B"), ("C",)

    # The grouped diagonal piece (Ed for 1 <= beta < 2, Gd for beta < 1) is
    # subtracted from J+ and from J-, so both gradient parts lose
    # diag(Gp) + diag(Gm) = diag(Gp + Gm): one product instead of two.
    if beta < 1:
        diagonal = W * (Lb2 @ ((Gp + Gm) * c * H).T)
        diagonal *= kC
    elif beta < 2:
        diagonal = W * (MLb3 @ ((Gp + Gm) * a * H).T)
        diagonal *= kB
    else:
        diagonal = None

    def combine(pos, neg, zero_like, diagonal=None):
        # [grad]_+ = J+(Gp) + J-(Gm);  [grad]_- = J+(Gm) + J-(Gp)  (eq. 83-87)
        plus = _sum_parts(pp, pos, zero_like) + _sum_parts(pm, neg, zero_like)
        minus = _sum_parts(pm, pos, zero_like) + _sum_parts(pp, neg, zero_like)
        if diagonal is not None:
            plus -= diagonal
            minus -= diagonal
        # The grouped differences are >= 0 in exact arithmetic; clip rounding.
        np.maximum(plus, 0, out=plus)
        np.maximum(minus, 0, out=minus)
        return plus, minus

    dW = combine(W_pos, W_neg, W, diagonal)
    dH = combine(H_pos, H_neg, H) if need_input_grad else None
    return dH, dW


def _sum_parts(d, keys, like):
    """Sum of ``d[k]`` over ``keys`` (missing keys count as 0)."""
    acc = np.zeros(like.shape, dtype=like.dtype)
    for key in keys:
        if key in d:
            acc += d[key]
    return acc


# --------------------------------------------------------------------------
# Wiener-like output layer (eq. 34) and its gradient (eq. 65-68 / 98-101)
# --------------------------------------------------------------------------
def wiener_forward(M, W, H, source_slices):
    """Source estimates ``S_l = M * Lam_l / Lam`` (eq. 34).

    Parameters
    ----------
    M : ndarray of shape (n_features, n_frames)
        Mixture (target frames).
    W : ndarray of shape (n_features, n_components)
    H : ndarray of shape (n_components, n_frames)
    source_slices : list of slice
        Components of each source in ``W``'s columns / ``H``'s rows.

    Returns
    -------
    estimates : list of ndarray, one (n_features, n_frames) per source
    Lams : list of ndarray, the per-source models ``W_l H_l``
    Lam : ndarray, their sum (floored)
    """
    eps = eps_for(M.dtype)
    Lams = [W[:, sl] @ H[sl] for sl in source_slices]
    Lam = np.add.reduce(Lams) if len(Lams) > 1 else Lams[0].copy()
    np.maximum(Lam, eps, out=Lam)
    ratio = M / Lam
    return [Lam_l * ratio for Lam_l in Lams], Lams, Lam


def wiener_backward(M, sources, W, H, source_slices, weights, beta):
    """Objective (eq. 37/64) and its gradient parts for ``W^K`` and ``H^K``.

    ``E = sum_l gamma_l D_beta(S_l | S_hat_l)``. With ``e_l^+ - e_l^-`` the
    derivative of ``D_beta`` in ``S_hat_l`` and ``Z = M / Lam^2``,

        [dE/dLam_j]_+ = Z (gamma_j e_j^+ Lam_jbar + sum_{l != j} gamma_l e_l^- Lam_l)
        [dE/dLam_j]_- = Z (gamma_j e_j^- Lam_jbar + sum_{l != j} gamma_l e_l^+ Lam_l)

    (``Lam_jbar = Lam - Lam_j``) and ``dE/dH_j = W_j^T dE/dLam_j``,
    ``dE/dW_j = dE/dLam_j H_j^T`` keep the signs. For beta = 2 and one target
    source these are eq. 98-101 (eq. 100 of the paper has ``S^lbar`` where
    its own eq. 67 and this derivation have ``S^l``).

    Parameters
    ----------
    sources : list of ndarray
        Target spectra ``S_l`` (n_features, n_frames) per source.
    weights : sequence of float
        ``gamma_l``.

    Returns
    -------
    loss : float
    (dWp, dWm) : ndarrays like W
    (dHp, dHm) : ndarrays like H
    """
    estimates, Lams, Lam = wiener_forward(M, W, H, source_slices)
    Z = M / Lam
    Z /= Lam
    loss = 0.0
    e_plus, e_minus = [], []
    for S_l, S_hat, gamma in zip(sources, estimates, weights):
        if gamma:
            loss += gamma * beta_divergence(S_l, S_hat, beta)
            ep, em = beta_divergence_grad_parts(S_l, S_hat, beta)
            # gamma * part, without a copy when gamma is 1 (the usual target weight).
            e_plus.append(ep if gamma == 1 else gamma * ep)
            e_minus.append(em if gamma == 1 else gamma * em)
        else:
            e_plus.append(None)
            e_minus.append(None)
    n_sources = len(source_slices)
    dWp, dWm = np.zeros_like(W), np.zeros_like(W)
    dHp, dHm = np.zeros_like(H), np.zeros_like(H)
    for j, sl in enumerate(source_slices):
        # [dE/dLam_j]_+ and _-: products of non-negative arrays accumulated
        # in place (each term is one multiplication, no zero-filled buffers).
        pos = neg = None
        if e_plus[j] is not None:
            others = Lams[1 - j] if n_sources == 2 else sum(Lams[l] for l in range(n_sources) if l != j)
            pos, neg = e_plus[j] * others, e_minus[j] * others
        for l in range(n_sources):
            if l != j and e_plus[l] is not None:
                pos = e_minus[l] * Lams[l] if pos is None else _add_product(pos, e_minus[l], Lams[l])
                neg = e_plus[l] * Lams[l] if neg is None else _add_product(neg, e_plus[l], Lams[l])
        pos *= Z
        neg *= Z
        dHp[sl] = W[:, sl].T @ pos
        dHm[sl] = W[:, sl].T @ neg
        dWp[:, sl] = pos @ H[sl].T
        dWm[:, sl] = neg @ H[sl].T
    return loss, (dWp, dWm), (dHp, dHm)


def _add_product(acc, a, b):
    """``acc += a * b`` with one temporary, returning ``acc``."""
    acc += a * b
    return acc


# --------------------------------------------------------------------------
# The whole network on one chunk of frames
# --------------------------------------------------------------------------
def fixed_activations(M_ctx, W_fixed, n_iter, beta, mu, exponent):
    """Run the first ``n_iter`` iterations with the fixed context bases.

    Returns
    -------
    H : ndarray of shape (n_components, n_frames)
    """
    H = initial_activations(M_ctx, W_fixed)
    W_colsum = W_fixed.sum(axis=0)
    for _ in range(n_iter):
        H = layer_forward(M_ctx, W_fixed, H, beta, mu, exponent, W_colsum=W_colsum)
    return H


def trained_forward(M, H, W_layers, beta, mu, exponent, *, keep=False):
    """Run the trained update layers ``W_layers[:-1]`` from ``H``.

    The last entry of ``W_layers`` is the reconstruction layer and is not
    applied here. Returns the final activations (and the caches if ``keep``).
    """
    caches = []
    for W in W_layers[:-1]:
        if keep:
            H, cache = layer_forward(M, W, H, beta, mu, exponent, keep=True)
            caches.append(cache)
        else:
            H = layer_forward(M, W, H, beta, mu, exponent)
    return (H, caches) if keep else H


def chunk_loss_and_gradients(M, sources, H_start, W_layers, source_slices, weights, beta1, beta2, mu, exponent):
    """Objective and gradient parts of every trained matrix on one chunk.

    Parameters
    ----------
    M : ndarray of shape (n_features, n_frames)
        Mixture target frames.
    sources : list of ndarray
        Target spectra per source.
    H_start : ndarray of shape (n_components, n_frames)
        Output of the fixed iterations.
    W_layers : list of ndarray
        Trained matrices, bottom to top; the last is the reconstruction layer.

    Returns
    -------
    loss : float
    grads : list of (dWp, dWm), one per entry of ``W_layers``
    """
    H_top, caches = trained_forward(M, H_start, W_layers, beta1, mu, exponent, keep=True)
    loss, dW_out, (Gp, Gm) = wiener_backward(M, sources, W_layers[-1], H_top, source_slices, weights, beta2)
    grads = [dW_out]
    for i in range(len(caches) - 1, -1, -1):
        dH, dW = layer_backward(M, W_layers[i], caches[i], Gp, Gm, beta1, exponent, need_input_grad=i > 0)
        grads.append(dW)
        if dH is not None:
            Gp, Gm = dH
    grads.reverse()
    return loss, grads


def network_loss(M, sources, H_start, W_layers, source_slices, weights, beta1, beta2, mu, exponent):
    """Objective alone on one chunk (forward pass only)."""
    H_top = trained_forward(M, H_start, W_layers, beta1, mu, exponent)
    estimates, _, _ = wiener_forward(M, W_layers[-1], H_top, source_slices)
    return sum(
        gamma * beta_divergence(S_l, S_hat, beta2)
        for S_l, S_hat, gamma in zip(sources, estimates, weights)
        if gamma
    )


# --------------------------------------------------------------------------
# Chunked evaluation and the multiplicative-backprop trainer
# --------------------------------------------------------------------------
def map_chunks(func, chunks, n_jobs):
    """``[func(chunk) for chunk in chunks]``, spread over threads when n_jobs != 1.

    Threads share the arrays without copies; numpy releases the GIL in the
    matrix products and large element-wise operations. BLAS is limited to one
    thread per worker so the workers do not oversubscribe the cores. Results
    keep the order of ``chunks``, so sums over them are reproducible.
    """
    from joblib import Parallel, delayed, effective_n_jobs

    if len(chunks) <= 1 or effective_n_jobs(n_jobs) == 1:
        return [func(chunk) for chunk in chunks]
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return Parallel(n_jobs=n_jobs, prefer="threads")(delayed(func)(chunk) for chunk in chunks)


def imap_chunks(func, chunks, n_jobs):
    """Like :func:`map_chunks`, but yields the results in order as they come.

    The caller can reduce them on the fly, so at most a few chunks' results
    are held at once, however many chunks there are: joblib dispatches
    ``2 * n_jobs`` tasks ahead, one chunk each (its automatic batching would
    group more and more fast chunks per task, and buffer their results).
    """
    from joblib import Parallel, delayed, effective_n_jobs

    if len(chunks) <= 1 or effective_n_jobs(n_jobs) == 1:
        for chunk in chunks:
            yield func(chunk)
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield from Parallel(
            n_jobs=n_jobs, prefer="threads", return_as="generator", batch_size=1, pre_dispatch="2*n_jobs"
        )(delayed(func)(chunk) for chunk in chunks)


def evaluate_network(
    M,
    sources,
    H_start,
    W_layers,
    source_slices,
    weights,
    *,
    beta1,
    beta2,
    mu,
    exponent,
    chunks,
    n_jobs=None,
    gradients=True,
):
    """Objective and gradient parts of every trained matrix, summed over ``chunks`` of frames.

    The chunks' results are added in order as they arrive (float64
    accumulators), so the sums do not depend on ``n_jobs`` and memory does
    not grow with the number of chunks.

    Returns
    -------
    loss : float
        Summed over all frames.
    grads : list of (plus, minus), one per entry of ``W_layers``, or None
        when ``gradients`` is False (forward passes only).
    """

    def one(chunk):
        M_c, sources_c, H_c = M[:, chunk], [S[:, chunk] for S in sources], H_start[:, chunk]
        args = (M_c, sources_c, H_c, W_layers, source_slices, weights, beta1, beta2, mu, exponent)
        return chunk_loss_and_gradients(*args) if gradients else (network_loss(*args), None)

    shapes = [W.shape for W in W_layers] if gradients else None
    return sum_chunk_results(one, chunks, n_jobs, shapes)


def sum_chunk_results(one, chunks, n_jobs, shapes):
    """Sum ``one(chunk) -> (loss, grads)`` over chunks, in order, as results arrive.

    ``shapes`` gives the shape of each layer's gradient parts (None for a
    layer that is not trained, whose entry stays None); ``shapes=None`` sums
    the losses only. Accumulators are float64 and the order is fixed, so the
    sums do not depend on ``n_jobs``, and at most a few chunks' results are
    held at once (:func:`imap_chunks`).
    """
    loss = 0
    grads = None
    if shapes is not None:
        grads = [None if shape is None else (np.zeros(shape), np.zeros(shape)) for shape in shapes]
    for chunk_loss, chunk_grads in imap_chunks(one, chunks, n_jobs):
        loss += chunk_loss
        if grads is not None:
            for acc, part in zip(grads, chunk_grads):
                if acc is not None:
                    plus, minus = acc
                    plus += part[0]
                    minus += part[1]
    return loss, grads


def multiplicative_step(W_layers, grads, step, eps):
    """``W <- W * ([grad]_- / [grad]_+) ** step`` for every trained matrix (eq. 38)."""
    return [
        (W * (minus / np.maximum(plus, eps)) ** step).astype(W.dtype, copy=False)
        for W, (plus, minus) in zip(W_layers, grads)
    ]


def train_layers(
    M,
    sources,
    H_start,
    W_layers,
    source_slices,
    weights,
    *,
    beta1,
    beta2,
    mu,
    exponent,
    max_iter,
    tol,
    batch_size,
    n_jobs=None,
    verbose=0,
    max_halvings=10,
    name="DeepNMF",
    stop_on_interrupt=False,
):
    """Train ``W_layers`` by multiplicative back-propagation (eq. 38).

    Each iteration accumulates ``[grad]_+`` and ``[grad]_-`` of every trained
    matrix over all frames (chunk by chunk, so memory is bounded by
    ``batch_size``) and updates ``W <- W * ([grad]_- / [grad]_+) ** step``.
    The ratio heuristic is not guaranteed to decrease the objective, so an
    update is accepted only if the objective did not increase; otherwise the
    exponent ``step`` is halved and the update retried from the same point
    (``step`` then grows back by a factor 2 per accepted iteration, up to 1).
    The recorded objective is therefore non-increasing.

    Parameters
    ----------
    stop_on_interrupt : bool, default=False
        On ``KeyboardInterrupt``, warn and return the layers of the last
        accepted update (as scikit-learn's ``MLPClassifier`` does) instead
        of propagating the interrupt. Layers are only ever replaced as a
        whole, so the result is never a half-applied update.

    Returns
    -------
    W_layers : list of ndarray
    n_iter : int
        Number of accepted updates.
    loss_curve : list of float
        Objective per frame at the start and after each accepted update.
    """
    n_frames = M.shape[1]
    chunks = frame_chunks(n_frames, batch_size)
    eps = eps_for(M.dtype)
    setup = dict(beta1=beta1, beta2=beta2, mu=mu, exponent=exponent, chunks=chunks, n_jobs=n_jobs)
    return safeguarded_descent(
        lambda layers: evaluate_network(M, sources, H_start, layers, source_slices, weights, **setup),
        lambda layers, grads, step: multiplicative_step(layers, grads, step, eps),
        W_layers,
        n_frames=n_frames,
        max_iter=max_iter,
        tol=tol,
        max_halvings=max_halvings,
        verbose=verbose,
        name=name,
        stop_on_interrupt=stop_on_interrupt,
    )


def safeguarded_descent(
    evaluate,
    propose,
    W_layers,
    *,
    n_frames,
    max_iter,
    tol,
    max_halvings=10,
    verbose=0,
    name="DeepNMF",
    stop_on_interrupt=False,
):
    """The multiplicative-update loop with its step-halving safeguard.

    ``evaluate(layers) -> (loss, grads)`` sums the objective and the gradient
    parts over all frames; ``propose(layers, grads, step) -> layers`` is the
    multiplicative update with exponent ``step`` (eq. 38, possibly with a
    structural projection). A proposal is accepted only if the objective did
    not increase; otherwise ``step`` is halved (at most ``max_halvings``
    times, after which training stops) and the proposal retried from the
    same point; after an accepted update ``step`` doubles back, up to 1.
    Stops after ``max_iter`` accepted updates or when one lowers the
    objective by at most ``tol`` times its value.

    Returns
    -------
    W_layers : list of ndarray
    n_iter : int
        Number of accepted updates.
    loss_curve : list of float
        Objective per frame at the start and after each accepted update.
    """
    result = {"W_layers": W_layers, "loss_curve": []}

    def run():
        start = time.perf_counter()
        layers = W_layers
        loss, grads = evaluate(layers)
        result["loss_curve"] = loss_curve = [float(loss) / n_frames]
        step = 1.0
        for _ in range(max_iter):
            for _halving in range(max_halvings + 1):
                candidate = propose(layers, grads, step)
                new_loss, new_grads = evaluate(candidate)
                if new_loss <= loss:
                    break
                step *= 0.5
            else:
                if verbose:
                    print(f"{name}: no step size decreases the objective any more; stopping.")
                break
            previous = loss
            layers, loss, grads = candidate, new_loss, new_grads
            # One statement: an interrupt sees the old or the new pair, never a mix.
            result.update(W_layers=layers, loss_curve=loss_curve + [float(loss) / n_frames])
            loss_curve = result["loss_curve"]
            step = min(1.0, 2.0 * step)
            if verbose:
                print(
                    f"{name} iteration {len(loss_curve) - 1:4d}: objective {loss / n_frames:.6g} per frame "
                    f"({time.perf_counter() - start:.2f} s)"
                )
            if tol > 0 and previous - loss <= tol * abs(loss):
                break

    try:
        run()
    except KeyboardInterrupt:
        if not stop_on_interrupt:
            raise
        n_done = max(len(result["loss_curve"]) - 1, 0)
        warnings.warn(
            f"{name}: training interrupted by user (KeyboardInterrupt); keeping the layers after "
            f"{n_done} accepted update(s).",
            UserWarning,
            stacklevel=3,
        )
    loss_curve = result["loss_curve"]
    return result["W_layers"], max(len(loss_curve) - 1, 0), loss_curve


def train_step(
    M,
    sources,
    H_start,
    W_layers,
    source_slices,
    weights,
    *,
    beta1,
    beta2,
    mu,
    exponent,
    batch_size,
    step=1.0,
    n_jobs=None,
    max_halvings=10,
):
    """One safeguarded multiplicative back-propagation update on a mini-batch.

    The gradient parts of the batch's frames (chunk by chunk) give
    ``W <- W * ([grad]_- / [grad]_+) ** step``; while the batch's objective
    increases, ``step`` is halved and the update retried (at most
    ``max_halvings`` times; then the layers are left unchanged).

    Returns
    -------
    W_layers : list of ndarray
        The updated layers (the given ones when no step helped).
    loss_before, loss_after : float
        The batch's objective per frame before and after.
    step : float
        The exponent accepted, or 0.0 when no step decreased the objective.
    """
    n_frames = M.shape[1]
    chunks = frame_chunks(n_frames, batch_size)
    setup = dict(beta1=beta1, beta2=beta2, mu=mu, exponent=exponent, chunks=chunks, n_jobs=n_jobs)
    eps = eps_for(M.dtype)
    loss, grads = evaluate_network(M, sources, H_start, W_layers, source_slices, weights, **setup)
    for _halving in range(max_halvings + 1):
        candidate = multiplicative_step(W_layers, grads, step, eps)
        new_loss, _ = evaluate_network(
            M, sources, H_start, candidate, source_slices, weights, gradients=False, **setup
        )
        if new_loss <= loss:
            return candidate, float(loss) / n_frames, float(new_loss) / n_frames, step
        step *= 0.5
    return W_layers, float(loss) / n_frames, float(loss) / n_frames, 0.0
