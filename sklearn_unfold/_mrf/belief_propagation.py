"""Generalized belief-propagation messages for binary pairwise MRFs.

Paper sec. 3.2-3.3 and appendix C.  For binary units with edge log-potential
``Psi(h_i, h_j) = a h_i h_j`` (unary terms live in the field, see
:mod:`.network`), the combined message of eq. (61),

.. math::

    \\tilde m_{j\\to i}(h_i) \\propto \\Big(\\sum_{h_j} q(h_j)^{\\kappa}
    \\big(e^{\\Psi(h_i, h_j)} / m_{i \\to j}(h_j)\\big)^{\\lambda\\kappa}
    \\Big)^{1/(\\lambda\\kappa)}

(the constant ``N_{h_j}^{-lambda}`` drops out; we read the exponent of
``e^Psi`` as ``lambda kappa`` so that the stated limits hold), has the
log-ratio ``r = log m(1) - log m(0)``

.. math::

    r_{j\\to i} = \\frac{\\operatorname{softplus}(d + s a)
                         - \\operatorname{softplus}(d)}{s},
    \\quad s = \\lambda\\kappa,\\quad d = \\kappa\\,\\eta_j - s\\,\\rho_{i\\to j},

where ``eta_j`` is the belief log-odds of ``h_j`` and ``rho_{i->j}`` the
log-ratio of the reverse message.  Special cases: ``lambda = kappa = 1`` is
sum-product BP (eq. 22/24, ``d`` is the cavity log-odds); ``lambda -> 0``,
``kappa = 1`` is the mean-field message ``a sigmoid(eta_j)`` (eq. 28);
``kappa -> inf`` is max-product BP (eq. 30),
``r = (relu(u + lambda a) - relu(u)) / lambda`` with ``u = eta_j - lambda rho``.
Everything stays in the log domain; the division by ``s`` is evaluated by
:func:`.power_mean.scaled_power_mean_g`, stable through ``s = 0``.  Arrays are
``(n_samples, n_directed_edges)``; all operations are vectorized over both.
"""

import numpy as np
from scipy.special import expit

from .power_mean import power_mean_g_dd, power_mean_g_ddelta, scaled_power_mean_g


def bp_message(coupling, eta_src, rho_rev, lam, kappa=1.0):
    """Generalized message log-ratios (eq. 22, 27, 59, 60, 61).

    Parameters
    ----------
    coupling : ndarray of shape (n_directed_edges,)
        ``a`` of each directed edge ``j -> i``.
    eta_src : ndarray of shape (n_samples, n_directed_edges)
        Belief log-odds of each edge's source ``j`` at the previous layer.
    rho_rev : ndarray of shape (n_samples, n_directed_edges)
        Log-ratio of the reverse message ``i -> j`` at the previous layer.
    lam : float
        Power-mean exponent lambda (1: BP, 0: mean field).
    kappa : float or inf
        Sum-product (1) to max-product (inf) exponent.

    Returns
    -------
    r : ndarray of shape (n_samples, n_directed_edges)
    """
    if np.isinf(kappa):
        u = eta_src - lam * rho_rev
        if lam == 0:
            return coupling * np.heaviside(u, 0.5)
        return (np.maximum(u + lam * coupling, 0) - np.maximum(u, 0)) / lam
    s = lam * kappa
    d = _tempered_cavity(eta_src, rho_rev, kappa, s)
    return scaled_power_mean_g(d, s * coupling, coupling)


def _tempered_cavity(eta_src, rho_rev, kappa, s):
    """``d = kappa eta_j - lambda kappa rho_{i->j}`` (the cavity log-odds at 1, 1)."""
    if s == 0:
        return eta_src if kappa == 1 else kappa * eta_src
    if kappa == 1 and s == 1:
        return eta_src - rho_rev
    return kappa * eta_src - s * rho_rev


def bp_message_grad(grad_r, coupling, eta_src, rho_rev, lam, kappa=1.0, need_lambda=True):
    """Backward step of :func:`bp_message`.

    Parameters
    ----------
    grad_r : ndarray of shape (n_samples, n_directed_edges)
        Gradient of the loss with respect to the messages.
    coupling, eta_src, rho_rev, lam, kappa : see :func:`bp_message`.
    need_lambda : bool, default=True
        Whether to compute ``grad_lam`` (skipped work when lambda is fixed).

    Returns
    -------
    grad_coupling : ndarray of shape (n_directed_edges,)
        Summed over samples.
    grad_eta_src : ndarray of shape (n_samples, n_directed_edges)
    grad_rho_rev : ndarray of shape (n_samples, n_directed_edges)
    grad_lam : float
        0.0 when ``need_lambda`` is False.
    """
    if np.isinf(kappa):
        # Piecewise linear: these are the almost-everywhere derivatives.
        u = eta_src - lam * rho_rev
        if lam == 0:
            zero = np.zeros_like(grad_r)
            return np.sum(grad_r * np.heaviside(u, 0.5), axis=0), zero, zero, 0.0
        h1 = np.heaviside(u + lam * coupling, 0.5)
        h0 = np.heaviside(u, 0.5)
        dr_du = (h1 - h0) / lam
        grad_lam = 0.0
        if need_lambda:
            # r is a (h1 = h0) or linear in 1/lam between the kinks, where
            # dr/dlam = -eta / lam^2 (h1 > h0) or eta / lam^2 (h0 > h1).
            dr_dlam = (h0 - h1) * eta_src / lam**2
            grad_lam = float(np.sum(grad_r * dr_dlam))
        return np.sum(grad_r * h1, axis=0), grad_r * dr_du, -lam * grad_r * dr_du, grad_lam
    s = lam * kappa
    d = _tempered_cavity(eta_src, rho_rev, kappa, s)
    delta = s * coupling
    # d r / d a = sigmoid(d + s a): the derivative of softplus(d + s a) / s.
    shifted = expit(d + delta)
    weighted = grad_r * shifted
    grad_coupling = np.sum(weighted, axis=0)
    dg_dd = power_mean_g_dd(d, delta, sigmoid_shift=shifted)
    grad_d = grad_r * dg_dd * coupling
    grad_lam = 0.0
    if need_lambda:
        dg_ddelta = power_mean_g_ddelta(d, delta)
        dr_dlam = kappa * (coupling**2 * dg_ddelta - coupling * dg_dd * rho_rev)
        grad_lam = float(np.sum(grad_r * dr_dlam))
    grad_eta = grad_d if kappa == 1 else kappa * grad_d
    return grad_coupling, grad_eta, -s * grad_d, grad_lam
