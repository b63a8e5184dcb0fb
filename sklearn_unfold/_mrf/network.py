"""Unfolded message passing: K layers of mean field or generalized BP.

Layer ``k = 1..K`` of the unfolded network (paper eq. 14-17, 23-25, 27) maps
the previous beliefs ``eta^(k-1)`` (log-odds, ``mu = sigmoid(eta)``) and the
previous messages ``r~^(k-1)`` (log-ratios, one per directed edge) to

.. math::

    r^k_{j\\to i} &= \\operatorname{msg}(a^k_{ij}, \\eta^{k-1}_j,
                    \\tilde r^{k-1}_{i\\to j}; \\lambda^k, \\kappa)
                    \\qquad &\\text{(13/16, 22/24, 27, 61)} \\\\
    \\tilde r^k &= \\alpha^k r^k + (1 - \\alpha^k)\\, \\tilde r^{k-1}
                    &\\text{(15 with } \\rho \\to 0\\text{, i.e. 17)} \\\\
    \\eta^k_i &= f^k_i + \\sum_{j \\in N_i} \\tilde r^k_{j \\to i},
    \\qquad f^k = b^k + w^k \\odot v + C^k v  &\\text{(14/23)}

starting from ``r~^0 = 0`` (uniform messages) and ``eta^0 = f^1`` (beliefs
from the local evidence alone).  The hidden-hidden log-potential of an edge is
``a_ij h_i h_j``; unary terms (biases ``b``, per-node observation weights
``w`` and a dense observation matrix ``C``) form the field ``f``, which is the
sum of the hidden-visible potentials of eq. (14) in the sigmoid
parameterization of eq. (46).  Putting biases in the field instead of spreading
them over the hidden-hidden edges as in eq. (48) gives the same distribution
(appendix A notes the assignment is arbitrary) and keeps the messages free of
biases.

Parameters are a dict of arrays whose first axis indexes the layer; an axis of
length 1 ties that parameter across all layers (the model-based,
un-unfolded network).  Keys:

``coupling``  (L, E) per undirected edge, or (L, 2E) per directed edge;
``bias``      (L, N);
``local``     (L, F) optional, ``F <= N``: unit ``i < F`` observes ``v_i``;
``dense``     (L, N, F) optional;
``schedule``  (L, 1) or (L, 2E) optional logits ``z``, ``alpha = sigmoid(z)``;
``lambda``    (L,) for ``kind="bp"``.
"""

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from .belief_propagation import bp_message, bp_message_grad
from .graphs import Graph
from .mean_field import mf_message, mf_message_grad


@dataclass(frozen=True, eq=False)
class NetworkSpec:
    """Structure of an unfolded network (everything that is not trained).

    Parameters
    ----------
    graph : Graph
    n_layers : int
        Number of unfolded layers ``K``.
    kind : {"mf", "bp"}
        Mean-field messages (eq. 13) or generalized BP messages (eq. 61).
    kappa : float, default=1.0
        Sum-product (1) to max-product (inf) exponent, ``kind="bp"`` only.
    symmetric : bool, default=True
        Whether ``coupling`` has one entry per undirected edge (``a_ij = a_ji``,
        an MRF) or one per directed edge.
    """

    graph: Graph
    n_layers: int
    kind: str = "bp"
    kappa: float = 1.0
    symmetric: bool = True


@dataclass(eq=False)
class Trace:
    """What the forward pass keeps for the backward pass (and for inspection).

    Attributes
    ----------
    eta : list of ndarray of shape (n_samples, n_nodes)
        Beliefs ``eta^0 .. eta^K`` as log-odds.
    messages : list of ndarray of shape (n_samples, 2 * n_edges)
        Scheduled messages ``r~^0 .. r~^K``.
    raw_messages : list of ndarray
        Unscheduled messages ``r^1 .. r^K``.
    """

    eta: list
    messages: list
    raw_messages: list


def _at(array, k):
    """Layer ``k`` of a parameter array (layer 0 if the parameter is tied)."""
    return k if array.shape[0] > 1 else 0


def layer_field(params, k, X):
    """Field ``f^k = b^k + w^k * v + C^k v`` of layer ``k`` (0-based), eq. (14).

    The local weights ``w`` cover the first ``n_features`` nodes (node ``i``
    observes feature ``i``); further nodes (latent units) get no local term.
    """
    bias = params["bias"][_at(params["bias"], k)]
    f = np.broadcast_to(bias, (X.shape[0], bias.shape[0]))
    if "local" in params:
        local = params["local"][_at(params["local"], k)] * X
        pad = bias.shape[0] - local.shape[1]
        f = f + (np.pad(local, ((0, 0), (0, pad))) if pad else local)
    if "dense" in params:
        f = f + X @ params["dense"][_at(params["dense"], k)].T
    return f


def _field_grad(grads, params, k, X, g_eta):
    grads["bias"][_at(params["bias"], k)] += g_eta.sum(axis=0)
    if "local" in params:
        grads["local"][_at(params["local"], k)] += np.sum(g_eta[:, : X.shape[1]] * X, axis=0)
    if "dense" in params:
        grads["dense"][_at(params["dense"], k)] += g_eta.T @ X


def _coupling(params, spec, k):
    c = params["coupling"][_at(params["coupling"], k)]
    return np.concatenate([c, c]) if spec.symmetric else c


def _alpha(params, k):
    if "schedule" not in params:
        return None
    return expit(params["schedule"][_at(params["schedule"], k)])


def _lam(params, k):
    lam = params.get("lambda")
    return None if lam is None else lam[_at(lam, k)]


def _message(spec, coupling, eta_src, rho_rev, lam):
    if spec.kind == "mf":
        return mf_message(coupling, eta_src)
    return bp_message(coupling, eta_src, rho_rev, lam, spec.kappa)


def forward(params, spec, X, keep_trace=True):
    """Run the K unfolded layers.

    Parameters
    ----------
    params : dict of ndarray
        See the module docstring.
    spec : NetworkSpec
    X : ndarray of shape (n_samples, n_features)
        Observations ``v``.
    keep_trace : bool, default=True
        Keep every layer's beliefs and messages (needed by :func:`backward`);
        inference only needs the last ones.

    Returns
    -------
    eta : ndarray of shape (n_samples, n_nodes)
        Output beliefs ``eta^K`` as log-odds.
    trace : Trace
        With ``keep_trace=False``, only the last layer's beliefs and messages.
    """
    g = spec.graph
    src, rev = g.src, g.reverse
    eta = layer_field(params, 0, X)
    rt = np.zeros((X.shape[0], 2 * g.n_edges), dtype=eta.dtype)
    trace = Trace([eta], [rt], [])
    for k in range(spec.n_layers):
        rho_rev = rt[:, rev] if spec.kind == "bp" else None
        r = _message(spec, _coupling(params, spec, k), eta[:, src], rho_rev, _lam(params, k))
        alpha = _alpha(params, k)
        rt = r if alpha is None else alpha * r + (1 - alpha) * rt
        eta = layer_field(params, k, X) + g.sum_incoming(rt)
        if not keep_trace:
            trace = Trace([], [], [])
        trace.eta.append(eta)
        trace.messages.append(rt)
        trace.raw_messages.append(r)
    return eta, trace


def backward(params, spec, X, trace, grad_eta, need_lambda=True):
    """Back-propagate ``d loss / d eta^K`` through the K layers (eq. 4-5).

    Parameters
    ----------
    params, spec, X : as given to :func:`forward`.
    trace : Trace
        The trace returned by :func:`forward`.
    grad_eta : ndarray of shape (n_samples, n_nodes)
        Gradient of the loss with respect to the output log-odds.
    need_lambda : bool, default=True
        Whether to compute the gradient with respect to lambda (left at 0
        otherwise, which saves work when lambda is fixed).

    Returns
    -------
    grads : dict of ndarray
        Same keys and shapes as ``params``.
    """
    g = spec.graph
    src, dst, rev = g.src, g.dst, g.reverse
    E = g.n_edges
    grads = {key: np.zeros_like(value) for key, value in params.items()}
    g_rt = np.zeros_like(trace.messages[-1])
    for k in range(spec.n_layers - 1, -1, -1):
        eta_prev, rt_prev, r = trace.eta[k], trace.messages[k], trace.raw_messages[k]
        # eta^k = f^k + sum_incoming(r~^k)
        _field_grad(grads, params, k, X, grad_eta)
        g_rt = g_rt + grad_eta[:, dst]
        # r~^k = alpha r^k + (1 - alpha) r~^(k-1)
        alpha = _alpha(params, k)
        if alpha is None:
            g_r, g_rt = g_rt, np.zeros_like(g_rt)
        else:
            g_alpha = np.sum(g_rt * (r - rt_prev), axis=0) * alpha * (1 - alpha)
            z = grads["schedule"][_at(params["schedule"], k)]
            z += g_alpha if z.shape == g_alpha.shape else g_alpha.sum(keepdims=True)
            g_r, g_rt = alpha * g_rt, (1 - alpha) * g_rt
        # r^k = msg(a^k, eta^(k-1)[src], r~^(k-1)[rev])
        coupling = _coupling(params, spec, k)
        if spec.kind == "mf":
            g_a, g_src = mf_message_grad(g_r, coupling, eta_prev[:, src])
        else:
            g_a, g_src, g_rho, g_lam = bp_message_grad(
                g_r,
                coupling,
                eta_prev[:, src],
                rt_prev[:, rev],
                _lam(params, k),
                spec.kappa,
                need_lambda=need_lambda,
            )
            g_rt = g_rt + g_rho[:, rev]
            grads["lambda"][_at(params["lambda"], k)] += g_lam
        grads["coupling"][_at(params["coupling"], k)] += (
            (g_a[:E] + g_a[E:]) if spec.symmetric else g_a
        )
        grad_eta = g.sum_outgoing(g_src)
    # eta^0 = f^1; r~^0 = 0 is a constant.
    _field_grad(grads, params, 0, X, grad_eta)
    return grads
