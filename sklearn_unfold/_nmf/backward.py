"""Backward passes: positive and negative gradient parts of every layer.

Back-propagation keeps the positive and negative parts of every gradient
(eq. 39-42, 83-87) so that ``W <- W * [grad]_- / [grad]_+`` keeps the bases
non-negative without projection (eq. 38). For ``beta = 1`` the formulas below
are exactly eq. 98-105 of appendix D.5; they are derived here for any
``beta >= 0`` of the layer updates and any ``beta`` of the training target.
The output layer's objective is the Wiener-filter error (eq. 37) plus, for
PAD-NMF, a reconstruction penalty.
"""

import numpy as np

from .. import _array_api as aa
from .._array_api import get_namespace, is_numpy, scalar
from .divergences import beta_divergence, beta_divergence_grad_parts, eps_for
from .network import wiener_masks


# --------------------------------------------------------------------------
# One update layer (eq. 93-97, 102-105)
# --------------------------------------------------------------------------
def _lambda_powers(M, Lam, beta):
    """``M Lam^(beta-2)``, ``M Lam^(beta-3)``, ``Lam^(beta-1)``, ``Lam^(beta-2)``.

    ``Lam^(beta-1)`` is None for beta = 1 (all ones); the last two are only
    needed when beta != 1, the second only when beta != 2.
    """
    if beta == 1:
        MLb2 = M / Lam
        return MLb2, MLb2 / Lam, None, None
    if beta == 2:
        return M, None, Lam, get_namespace(Lam).ones_like(Lam)
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
    xp = get_namespace(M, W)
    eps = eps_for(M.dtype)
    ratio = P / Q
    if exponent == 1.0:
        a = H / Q
        ratio_pow = ratio
    else:
        ratio = aa.floor_(ratio, eps, xp)
        ratio_pow = ratio**exponent
        a = (exponent * ratio_pow / ratio) * H / Q
    MLb2, MLb3, Lb1, Lb2 = _lambda_powers(M, Lam, beta)
    kB, kC = abs(beta - 2.0), abs(beta - 1.0)
    # For beta = 1, G c is only summed over frames: sum(G a ratio), no c needed.
    c = None if Lb1 is None and not kC else a * ratio

    def parts(G):
        """The Jacobian pieces applied to one non-negative G (diagonal groups apart)."""
        Ga = G * a
        out = {"D": MLb2 @ Ga.T, "Ga": Ga}
        if need_input_grad:
            out["A"] = G * ratio_pow
        if kB:
            U = W @ Ga
            U *= MLb3
            if kB != 1:
                U *= kB
            out["E"] = U @ H.T
            if need_input_grad:
                out["B"] = W.T @ U
        if c is None:
            out["F"] = xp.broadcast_to(aa.row_dots(Ga, ratio, xp), W.shape)
            return out
        Gc = G * c
        out["F"] = xp.broadcast_to(xp.sum(Gc, axis=1), W.shape) if Lb1 is None else Lb1 @ Gc.T
        if kC:
            V = W @ Gc
            V *= Lb2
            if kC != 1:
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
        GaH = pp["Ga"] + pm["Ga"]  # (Gp + Gm) a
        GaH *= H
        diagonal = W * (MLb3 @ GaH.T)
        if kB != 1:
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
        return aa.floor_(plus, 0, xp), aa.floor_(minus, 0, xp)

    dW = combine(W_pos, W_neg, W, diagonal)
    dH = combine(H_pos, H_neg, H) if need_input_grad else None
    return dH, dW


def _sum_parts(d, keys, like):
    """Sum of ``d[k]`` over ``keys`` (missing keys count as 0)."""
    acc = get_namespace(like).zeros_like(like)
    for key in keys:
        if key in d:
            acc += d[key]
    return acc



# --------------------------------------------------------------------------
# Wiener-like output layer (eq. 65-68 / 98-101) and the reconstruction penalty
# --------------------------------------------------------------------------
def wiener_backward(M, sources, W, H, source_slices, weights, beta):
    """Objective (eq. 37/64) and its gradient parts for ``W^K`` and ``H^K``.

    ``E = sum_l gamma_l D_beta(S_l | S_hat_l)`` with ``S_hat_l = M m_l``,
    ``m_l = Lam_l / Lam`` (:func:`~.network.wiener_masks`). With
    ``e_l^+ - e_l^-`` the derivative of ``D_beta`` in ``S_hat_l`` and
    ``R = M / Lam``, ``dS_hat_l / dLam_j = R (delta_lj - m_l)``, so

        [dE/dLam_j]_+ = R (gamma_j e_j^+ (1 - m_j) + sum_{l != j} gamma_l e_l^- m_l)
        [dE/dLam_j]_- = R (gamma_j e_j^- (1 - m_j) + sum_{l != j} gamma_l e_l^+ m_l)

    and ``dE/dH_j = W_j^T dE/dLam_j``, ``dE/dW_j = dE/dLam_j H_j^T`` keep
    the signs. For beta = 2 and one target source these are eq. 98-101 (eq.
    100 of the paper has ``S^lbar`` where its own eq. 67 and this derivation
    have ``S^l``). Written with the masks, nothing divides by ``Lam**2``: a
    frame whose model is 0 has equal masks and no gradient.

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
    xp = get_namespace(M, W)
    _, Lam, masks = wiener_masks(W, H, source_slices)
    n_sources = len(source_slices)
    if is_numpy(xp):
        with np.errstate(over="ignore"):
            if Lam.size == 0 or Lam.min() > 0:
                R = M / Lam
            else:
                R = np.zeros_like(Lam)
                np.divide(M, Lam, out=R, where=Lam > 0)
    else:
        positive = Lam > 0
        R = xp.where(positive, M / xp.where(positive, Lam, scalar(1.0, Lam, xp)), scalar(0.0, Lam, xp))
    # A model many orders below the mixture: keep the gradient finite.
    high = np.sqrt(np.finfo(R.dtype).max) if is_numpy(xp) else float(xp.finfo(R.dtype).max) ** 0.5
    R = aa.ceil_(R, high, xp)
    loss = 0.0
    e_plus, e_minus = [None] * n_sources, [None] * n_sources
    for l, (S_l, mask, gamma) in enumerate(zip(sources, masks, weights)):
        if gamma:
            S_hat = M * mask
            loss += gamma * beta_divergence(S_l, S_hat, beta)
            ep, em = beta_divergence_grad_parts(S_l, S_hat, beta)
            # gamma * part, without a copy when gamma is 1 (the usual target weight).
            e_plus[l] = ep if gamma == 1 else gamma * ep
            e_minus[l] = em if gamma == 1 else gamma * em
    dWp, dWm = xp.zeros_like(W), xp.zeros_like(W)
    dHp, dHm = xp.zeros_like(H), xp.zeros_like(H)
    for j, sl in enumerate(source_slices):
        pos = neg = None
        if e_plus[j] is not None:
            if n_sources == 2:
                rest = masks[1 - j]
            else:
                rest = aa.floor_(1.0 - masks[j], 0, xp)
            pos, neg = e_plus[j] * rest, e_minus[j] * rest
        for l in range(n_sources):
            if l != j and e_plus[l] is not None:
                pos = e_minus[l] * masks[l] if pos is None else _add_product(pos, e_minus[l], masks[l])
                neg = e_plus[l] * masks[l] if neg is None else _add_product(neg, e_plus[l], masks[l])
        if pos is None:
            continue
        pos *= R
        neg *= R
        if is_numpy(xp):
            # Straight into the row blocks (C-ordered): no temporary and copy.
            np.matmul(W[:, sl].T, pos, out=dHp[sl, :])
            np.matmul(W[:, sl].T, neg, out=dHm[sl, :])
        else:
            dHp[sl, :] = W[:, sl].T @ pos
            dHm[sl, :] = W[:, sl].T @ neg
        dWp[:, sl] = pos @ H[sl, :].T
        dWm[:, sl] = neg @ H[sl, :].T
    return loss, (dWp, dWm), (dHp, dHm)


def _add_product(acc, a, b):
    """``acc += a * b`` with one temporary, returning ``acc``."""
    acc += a * b
    return acc


def reconstruction_penalty(sources, W, H, source_slices, weights, gamma):
    """``gamma sum_l w_l D_2(S_l | W_l H_l)`` and its gradient parts in ``W`` and ``H``.

    Returns
    -------
    loss : float
    (dWp, dWm) : ndarrays like W
    (dHp, dHm) : ndarrays like H
    """
    xp = get_namespace(W, H)
    dWp, dWm = xp.zeros_like(W), xp.zeros_like(W)
    dHp, dHm = xp.zeros_like(H), xp.zeros_like(H)
    loss = 0.0
    for S_l, sl, w in zip(sources, source_slices, weights):
        if not w:
            continue
        Lam_l = W[:, sl] @ H[sl, :]
        diff = S_l - Lam_l
        loss += 0.5 * gamma * w * aa.vdot(diff, diff, xp)
        pos, neg = (gamma * w) * Lam_l, (gamma * w) * S_l
        dHp[sl, :] = W[:, sl].T @ pos
        dHm[sl, :] = W[:, sl].T @ neg
        dWp[:, sl] = pos @ H[sl, :].T
        dWm[:, sl] = neg @ H[sl, :].T
    return loss, (dWp, dWm), (dHp, dHm)


def output_backward(M, sources, W, H, source_slices, weights, beta, gamma):
    """Objective ``E`` of the output layer and its gradient parts (slides' loss).

    The Wiener term of :func:`~._unfolded_nmf.wiener_backward` plus, for
    ``gamma > 0``, :func:`reconstruction_penalty`; positive parts add to
    positive parts.

    Returns
    -------
    loss : float
    (dWp, dWm) : ndarrays like W
    (dHp, dHm) : ndarrays like H
    """
    loss, (dWp, dWm), (dHp, dHm) = wiener_backward(M, sources, W, H, source_slices, weights, beta)
    if gamma:
        extra, (ep, em), (hp, hm) = reconstruction_penalty(sources, W, H, source_slices, weights, gamma)
        loss += extra
        dWp += ep
        dWm += em
        dHp += hp
        dHm += hm
    return loss, (dWp, dWm), (dHp, dHm)


