"""Appendix A: binary MRF potentials <-> sigmoid-network parameters (eq. 46, 48)."""

import itertools

import numpy as np
import pytest
from scipy.special import expit

from sklearn_unfold._mrf.conversions import (
    coupling_matrix,
    couplings_from_matrix,
    mrf_to_sigmoid,
    sigmoid_to_mrf,
)
from sklearn_unfold._mrf.graphs import chain_graph, grid_graph
from sklearn_unfold._mrf.network import NetworkSpec, forward


def _log_posterior_from_potentials(psi_hh, edges_hh, psi_hv, edges_hv, H, v):
    """sum over edges of psi[h_i, h_j] + psi[h_i, v_l] for every state row of H (eq. 7)."""
    vb = v.astype(int)
    out = np.zeros(H.shape[0])
    hi, hj = H[:, edges_hh[:, 0]].astype(int), H[:, edges_hh[:, 1]].astype(int)
    out += psi_hh[np.arange(len(edges_hh)), hi, hj].sum(axis=1)
    hl = H[:, edges_hv[:, 0]].astype(int)
    out += psi_hv[np.arange(len(edges_hv)), hl, vb[edges_hv[:, 1]]].sum(axis=1)
    return out


def _random_mrf(rng, n_hidden=5, n_visible=3):
    graph = grid_graph((1, n_hidden))  # a chain
    edges_hv = np.array([(i, l) for i in range(n_hidden) for l in range(n_visible)
                         if rng.rand() < 0.6] + [(0, 0)])
    edges_hv = np.unique(edges_hv, axis=0)
    psi_hh = rng.randn(graph.n_edges, 2, 2)
    psi_hv = rng.randn(len(edges_hv), 2, 2)
    return graph, psi_hh, psi_hv, edges_hv


def test_mrf_to_sigmoid_gives_same_posterior():
    # eq. (45)/(46): sum of edge potentials == h'Ah/2 + h'b + h'Cv + const(v).
    rng = np.random.RandomState(0)
    graph, psi_hh, psi_hv, edges_hv = _random_mrf(rng)
    N, M = 5, 3
    A, b, C = mrf_to_sigmoid(psi_hh, graph.edges, psi_hv, edges_hv, N, M)
    np.testing.assert_allclose(A, A.T)
    np.testing.assert_array_equal(np.diag(A), 0)
    H = np.array(list(itertools.product([0, 1], repeat=N)), dtype=float)
    for v in itertools.product([0, 1], repeat=M):
        v = np.array(v, dtype=float)
        lhs = _log_posterior_from_potentials(psi_hh, graph.edges, psi_hv, edges_hv, H, v)
        rhs = 0.5 * np.einsum("si,ij,sj->s", H, A, H) + H @ b + H @ (C @ v)
        diff = lhs - rhs
        np.testing.assert_allclose(diff, diff[0], atol=1e-12)  # constant in h


def test_sigmoid_to_mrf_to_sigmoid_round_trip():
    rng = np.random.RandomState(1)
    graph = grid_graph((3, 3), 8)
    A = coupling_matrix(rng.randn(graph.n_edges), graph)
    b = rng.randn(9)
    C = rng.randn(9, 4) * (rng.rand(9, 4) < 0.7)
    psi_hh, ehh, psi_hv, ehv = sigmoid_to_mrf(A, b, C)
    # eq. (48): psi_00 = 0, psi_01 = b_j/n_j, psi_10 = b_i/n_i, psi_11 = a + both.
    n = graph.degree
    np.testing.assert_array_equal(psi_hh[:, 0, 0], 0)
    np.testing.assert_allclose(psi_hh[:, 1, 0], b[ehh[:, 0]] / n[ehh[:, 0]])
    A2, b2, C2 = mrf_to_sigmoid(psi_hh, ehh, psi_hv, ehv, 9, 4)
    np.testing.assert_allclose(A2, A, atol=1e-14)
    np.testing.assert_allclose(b2, b, atol=1e-14)
    np.testing.assert_allclose(C2, C, atol=1e-14)


def test_mrf_to_sigmoid_to_mrf_keeps_the_distribution():
    rng = np.random.RandomState(2)
    graph, psi_hh, psi_hv, edges_hv = _random_mrf(rng)
    A, b, C = mrf_to_sigmoid(psi_hh, graph.edges, psi_hv, edges_hv, 5, 3)
    psi_hh2, ehh2, psi_hv2, ehv2 = sigmoid_to_mrf(A, b, C, edges_hh=graph.edges, edges_hv=edges_hv)
    H = np.array(list(itertools.product([0, 1], repeat=5)), dtype=float)
    for v in ([0, 1, 1], [1, 0, 0]):
        v = np.array(v, dtype=float)
        l1 = _log_posterior_from_potentials(psi_hh, graph.edges, psi_hv, edges_hv, H, v)
        l2 = _log_posterior_from_potentials(psi_hh2, ehh2, psi_hv2, ehv2, H, v)
        np.testing.assert_allclose(l1 - l1[0], l2 - l2[0], atol=1e-12)


def test_bp_on_converted_potentials_gives_exact_marginals():
    # General 2x2 tables -> eq. (46) -> the network's (coupling, bias, C).
    rng = np.random.RandomState(3)
    N, M = 7, 2
    graph = chain_graph(N)
    psi_hh = rng.randn(graph.n_edges, 2, 2)
    edges_hv = np.array([(i, i % M) for i in range(N)])
    psi_hv = rng.randn(N, 2, 2)
    A, b, C = mrf_to_sigmoid(psi_hh, graph.edges, psi_hv, edges_hv, N, M)
    params = {"coupling": couplings_from_matrix(A, graph)[None], "bias": b[None],
              "dense": C[None], "lambda": np.ones(1)}
    v = np.array([[1.0, 0.0], [0.0, 1.0]])
    eta, _ = forward(params, NetworkSpec(graph, N), v)
    H = np.array(list(itertools.product([0, 1], repeat=N)), dtype=float)
    for s in range(2):
        logp = _log_posterior_from_potentials(psi_hh, graph.edges, psi_hv, edges_hv, H, v[s])
        p = np.exp(logp - logp.max())
        np.testing.assert_allclose(expit(eta[s]), (p / p.sum()) @ H, atol=1e-10)


def test_couplings_matrix_helpers_round_trip():
    graph = grid_graph((2, 3))
    c = np.arange(1.0, graph.n_edges + 1)
    A = coupling_matrix(c, graph)
    assert np.count_nonzero(A) == 2 * graph.n_edges
    np.testing.assert_array_equal(couplings_from_matrix(A, graph), c)


def test_sigmoid_to_mrf_errors():
    A = np.zeros((3, 3))
    A[0, 1] = A[1, 0] = 1.0
    with pytest.raises(ValueError, match="bias but no edge"):
        sigmoid_to_mrf(A, np.array([0.0, 0.0, 1.0]), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="symmetric"):
        sigmoid_to_mrf(np.triu(np.ones((3, 3)), 1), np.zeros(3), np.zeros((3, 1)))
