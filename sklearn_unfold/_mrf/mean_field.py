"""Mean-field messages for binary pairwise MRFs (paper sec. 3.1).

With binary units and edge log-potential ``a_ij h_i h_j`` the mean-field
message of eq. (13)/(16) is, as a log-ratio ``log m(1) - log m(0)``,

.. math:: r_{j \\to i} = a_{ij} \\mu_j, \\qquad \\mu_j = \\sigma(\\eta_j),

so that the belief update (14) with all ``alpha = 1`` is the sigmoid layer of
eq. (20), ``mu^k = logistic(A^k mu^(k-1) + b^k + C^k v)``.  Arrays are laid out
``(n_samples, n_directed_edges)``; ``coupling`` has one entry per directed edge.
"""

import numpy as np
from scipy.special import expit


def mf_message(coupling, eta_src):
    """Mean-field message log-ratios, eq. (13)/(16): ``r = a * sigmoid(eta_src)``.

    Parameters
    ----------
    coupling : ndarray of shape (n_directed_edges,)
        ``a_ij`` for each directed edge ``j -> i``.
    eta_src : ndarray of shape (n_samples, n_directed_edges)
        Belief log-odds ``eta_j`` of each edge's source at the previous layer.

    Returns
    -------
    r : ndarray of shape (n_samples, n_directed_edges)
    """
    return coupling * expit(eta_src)


def mf_message_grad(grad_r, coupling, eta_src):
    """Backward step of :func:`mf_message`.

    Parameters
    ----------
    grad_r : ndarray of shape (n_samples, n_directed_edges)
        Gradient of the loss with respect to the messages.
    coupling, eta_src : see :func:`mf_message`.

    Returns
    -------
    grad_coupling : ndarray of shape (n_directed_edges,)
        Summed over samples.
    grad_eta_src : ndarray of shape (n_samples, n_directed_edges)
    """
    mu = expit(eta_src)
    grad_coupling = np.sum(grad_r * mu, axis=0)
    grad_eta_src = grad_r * coupling * mu * (1 - mu)
    return grad_coupling, grad_eta_src
