"""Binary MRF potentials <-> sigmoid-network parameters (paper appendix A).

A binary pairwise MRF is given by 2x2 log-potential tables ``psi[e][h_i, h_j]``
on hidden-hidden edges ``(i, j)`` and ``psi[e][h_i, v_l]`` on hidden-visible
edges ``(i, l)``.  Its posterior equals ``exp(h^T A h / 2 + h^T b + h^T C v)``
up to a constant (eq. 19), with ``A, b, C`` from eq. (46); eq. (48) goes back.
The unfolded networks of :mod:`.network` use ``A`` restricted to the graph's
edges (``coupling``), ``b`` (``bias``) and ``C`` (``dense``) directly.
"""

import numpy as np


def _interaction(psi):
    return psi[:, 1, 1] - psi[:, 0, 1] - psi[:, 1, 0] + psi[:, 0, 0]


def mrf_to_sigmoid(psi_hh, edges_hh, psi_hv, edges_hv, n_hidden, n_visible):
    """Sigmoid-network parameters ``A, b, C`` of a binary MRF, eq. (46).

    Parameters
    ----------
    psi_hh : ndarray of shape (n_edges_hh, 2, 2)
        ``psi[e][h_i, h_j]`` for hidden-hidden edge ``e = (i, j)``.
    edges_hh : ndarray of shape (n_edges_hh, 2)
        Hidden-hidden edges ``(i, j)``, ``i != j``, each pair at most once.
    psi_hv : ndarray of shape (n_edges_hv, 2, 2)
        ``psi[e][h_i, v_l]`` for hidden-visible edge ``e = (i, l)``.
    edges_hv : ndarray of shape (n_edges_hv, 2)
        Hidden-visible edges ``(i, l)``.
    n_hidden, n_visible : int

    Returns
    -------
    A : ndarray of shape (n_hidden, n_hidden)
        Symmetric, zero diagonal, ``a_ij = psi11 - psi01 - psi10 + psi00``.
    b : ndarray of shape (n_hidden,)
        ``sum_j (psi10 - psi00)`` over hidden-hidden edges plus the same over
        hidden-visible edges.
    C : ndarray of shape (n_hidden, n_visible)
    """
    psi_hh = np.asarray(psi_hh, dtype=float).reshape(-1, 2, 2)
    psi_hv = np.asarray(psi_hv, dtype=float).reshape(-1, 2, 2)
    ehh = np.asarray(edges_hh, dtype=np.intp).reshape(-1, 2)
    ehv = np.asarray(edges_hv, dtype=np.intp).reshape(-1, 2)
    A = np.zeros((n_hidden, n_hidden))
    a = _interaction(psi_hh)
    A[ehh[:, 0], ehh[:, 1]] = a
    A[ehh[:, 1], ehh[:, 0]] = a
    C = np.zeros((n_hidden, n_visible))
    np.add.at(C, (ehv[:, 0], ehv[:, 1]), _interaction(psi_hv))
    # h_i's linear coefficient from edge (i, j) is psi10 - psi00, h_j's is psi01 - psi00.
    b = (
        np.bincount(ehh[:, 0], psi_hh[:, 1, 0] - psi_hh[:, 0, 0], minlength=n_hidden)
        + np.bincount(ehh[:, 1], psi_hh[:, 0, 1] - psi_hh[:, 0, 0], minlength=n_hidden)
        + np.bincount(ehv[:, 0], psi_hv[:, 1, 0] - psi_hv[:, 0, 0], minlength=n_hidden)
    )
    return A, b, C


def sigmoid_to_mrf(A, b, C, edges_hh=None, edges_hv=None):
    """Binary MRF potentials from sigmoid-network parameters, eq. (48).

    Each bias ``b_i`` is split evenly over node ``i``'s hidden-hidden edges
    (``b_i / n_i``), so every node with a nonzero bias needs at least one edge.

    Parameters
    ----------
    A : ndarray of shape (n_hidden, n_hidden)
        Symmetric with zero diagonal.
    b : ndarray of shape (n_hidden,)
    C : ndarray of shape (n_hidden, n_visible)
    edges_hh : ndarray of shape (n_edges_hh, 2) or None
        Hidden-hidden edges ``(i, j)``, ``i < j``; default: the nonzeros of ``A``.
    edges_hv : ndarray of shape (n_edges_hv, 2) or None
        Hidden-visible edges; default: the nonzeros of ``C``.

    Returns
    -------
    psi_hh : ndarray of shape (n_edges_hh, 2, 2)
    edges_hh : ndarray of shape (n_edges_hh, 2)
    psi_hv : ndarray of shape (n_edges_hv, 2, 2)
    edges_hv : ndarray of shape (n_edges_hv, 2)
    """
    A = np.asarray(A, dtype=float)
    b = np.asarray(b, dtype=float)
    C = np.asarray(C, dtype=float)
    if not np.allclose(A, A.T) or np.any(np.diag(A) != 0):
        raise ValueError("A must be symmetric with a zero diagonal (no self-edges).")
    if edges_hh is None:
        i, j = np.nonzero(np.triu(A, k=1))
        edges_hh = np.stack([i, j], axis=1)
    if edges_hv is None:
        i, l = np.nonzero(C)
        edges_hv = np.stack([i, l], axis=1)
    ehh = np.asarray(edges_hh, dtype=np.intp).reshape(-1, 2)
    ehv = np.asarray(edges_hv, dtype=np.intp).reshape(-1, 2)
    n = np.bincount(ehh.ravel(), minlength=b.shape[0])
    if np.any((n == 0) & (b != 0)):
        raise ValueError(
            "eq. (48) assigns each bias b_i to node i's hidden-hidden edges; nodes "
            f"{np.flatnonzero((n == 0) & (b != 0))[:10].tolist()} have a bias but no edge."
        )
    share = np.divide(b, n, out=np.zeros_like(b), where=n > 0)
    bi, bj = share[ehh[:, 0]], share[ehh[:, 1]]
    psi_hh = np.zeros((ehh.shape[0], 2, 2))
    psi_hh[:, 0, 1] = bj
    psi_hh[:, 1, 0] = bi
    psi_hh[:, 1, 1] = A[ehh[:, 0], ehh[:, 1]] + bi + bj
    psi_hv = np.zeros((ehv.shape[0], 2, 2))
    psi_hv[:, 1, 1] = C[ehv[:, 0], ehv[:, 1]]
    return psi_hh, ehh, psi_hv, ehv


def couplings_from_matrix(A, graph):
    """Per-edge couplings ``a_ij`` of ``graph.edges`` read from a dense ``A``."""
    return np.asarray(A)[graph.edges[:, 0], graph.edges[:, 1]]


def coupling_matrix(coupling, graph):
    """Dense symmetric ``A`` from per-undirected-edge couplings (zero off the graph)."""
    coupling = np.asarray(coupling)
    A = np.zeros((graph.n_nodes, graph.n_nodes), dtype=coupling.dtype)
    A[graph.edges[:, 0], graph.edges[:, 1]] = coupling
    A[graph.edges[:, 1], graph.edges[:, 0]] = coupling
    return A
