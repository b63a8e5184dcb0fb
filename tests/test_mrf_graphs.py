"""Graphs between hidden units: builders, validation, message aggregation."""

import numpy as np
import pytest
import scipy.sparse as sp

from sklearn_unfold._mrf.graphs import (
    chain_graph,
    empty_graph,
    full_graph,
    graph_from_adjacency,
    grid_graph,
    make_graph,
    with_latent_units,
)


def _edge_set(graph):
    return {tuple(e) for e in graph.edges.tolist()}


@pytest.mark.parametrize("shape", [(8, 8), (3, 5), (1, 4)])
@pytest.mark.parametrize("connectivity", [4, 8])
def test_grid_graph_matches_pixel_distance(shape, connectivity):
    # Independent definition: pixels are neighbours iff their row/column offsets
    # are at most 1 (Chebyshev) for 8-connectivity, or sum to 1 for 4.
    rows, cols = np.unravel_index(np.arange(shape[0] * shape[1]), shape)
    dr = np.abs(rows[:, None] - rows[None, :])
    dc = np.abs(cols[:, None] - cols[None, :])
    if connectivity == 4:
        adj = dr + dc == 1
    else:
        adj = (np.maximum(dr, dc) == 1)
    expected = {(i, j) for i, j in zip(*np.nonzero(np.triu(adj, 1)))}
    graph = grid_graph(shape, connectivity)
    assert _edge_set(graph) == expected
    assert graph.n_nodes == shape[0] * shape[1]


def test_named_graphs():
    assert grid_graph((8, 8)).n_edges == 112
    assert grid_graph((8, 8), 8).n_edges == 112 + 2 * 49
    assert _edge_set(chain_graph(4)) == {(0, 1), (1, 2), (2, 3)}
    assert full_graph(5).n_edges == 10
    assert empty_graph(3).n_edges == 0
    assert chain_graph(1).n_edges == 0
    np.testing.assert_array_equal(chain_graph(4).degree, [1, 2, 2, 1])


def test_directed_edge_indexing():
    g = grid_graph((3, 4))
    src, dst, rev = g.src, g.dst, g.reverse
    assert src.shape == (2 * g.n_edges,)
    np.testing.assert_array_equal(rev[rev], np.arange(2 * g.n_edges))
    np.testing.assert_array_equal(src[rev], dst)
    np.testing.assert_array_equal(dst[rev], src)
    np.testing.assert_array_equal(g.adjacency(), g.adjacency().T)
    # Every ordered neighbour pair appears exactly once as a directed edge.
    assert len(set(zip(src.tolist(), dst.tolist()))) == 2 * g.n_edges


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sum_incoming_and_outgoing_match_dense_reference(dtype):
    g = grid_graph((3, 3), 8)
    rng = np.random.RandomState(0)
    r = rng.randn(4, 2 * g.n_edges).astype(dtype)
    incoming = np.zeros((4, g.n_nodes))
    outgoing = np.zeros((4, g.n_nodes))
    for e, (s, d) in enumerate(zip(g.src, g.dst)):
        incoming[:, d] += r[:, e]
        outgoing[:, s] += r[:, e]
    out = g.sum_incoming(r)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, incoming, rtol=1e-6)
    np.testing.assert_allclose(g.sum_outgoing(r), outgoing, rtol=1e-6)


def test_graph_from_adjacency_dense_and_sparse():
    A = np.zeros((5, 5))
    for i, j in [(0, 1), (1, 2), (0, 4), (3, 4)]:
        A[i, j] = A[j, i] = 0.5
    expected = {(0, 1), (1, 2), (0, 4), (3, 4)}
    assert _edge_set(graph_from_adjacency(A, 5)) == expected
    assert _edge_set(graph_from_adjacency(sp.csr_matrix(A), 5)) == expected
    assert _edge_set(graph_from_adjacency(sp.coo_array(A), 5)) == expected
    assert _edge_set(make_graph(A.astype(bool), 5)) == expected


@pytest.mark.parametrize(
    "A, match",
    [
        (np.ones((4, 4)) - np.eye(4), "shape"),
        (np.eye(5), "self-loops"),
        (np.triu(np.ones((5, 5)), 1), "symmetric"),
        (np.full((5, 5), np.nan), "NaN"),
        (np.zeros(5), "2-D"),
    ],
)
def test_graph_from_adjacency_errors(A, match):
    with pytest.raises(ValueError, match=match):
        make_graph(A, 5)
    if A.ndim == 2:
        with pytest.raises(ValueError, match=match):
            make_graph(sp.csr_matrix(A), 5)


def test_make_graph_names_and_image_shape():
    assert make_graph("4-grid", 12, (3, 4)).n_edges == 17
    assert make_graph("8-grid", 9).n_edges == 20
    assert _edge_set(make_graph("chain", 3)) == {(0, 1), (1, 2)}
    with pytest.raises(ValueError, match="image_shape"):
        make_graph("4-grid", 10)
    with pytest.raises(ValueError, match="pixels"):
        make_graph("4-grid", 12, (3, 3))
    with pytest.raises(ValueError, match="positive integers"):
        make_graph("4-grid", 12, (3, 4, 1))
    with pytest.raises(ValueError, match="graph must be one of"):
        make_graph("ring", 4)


def test_latent_units_connect_to_every_node_and_not_to_each_other():
    g = with_latent_units(chain_graph(3), 2)
    assert g.n_nodes == 5
    expected = {(0, 1), (1, 2)} | {(i, m) for i in range(3) for m in (3, 4)}
    assert _edge_set(g) == expected
    assert _edge_set(with_latent_units(chain_graph(3), 0)) == {(0, 1), (1, 2)}


def test_latent_block_splits_off_the_latent_units():
    # The block of with_latent_units: edge (i, V + l) at [l, i]; the rest is the base graph.
    from sklearn_unfold._mrf.graphs import latent_block

    base_graph = grid_graph((2, 3))
    graph = with_latent_units(base_graph, 2)
    block, base = latent_block(graph)
    assert block.shape == (2, 6)
    for l in range(2):
        for i in range(6):
            assert tuple(graph.edges[block[l, i]]) == (i, 6 + l)
    assert _edge_set(base_graph) == {tuple(e) for e in graph.edges[base].tolist()}
    assert sorted(np.concatenate([block.ravel(), base]).tolist()) == list(range(graph.n_edges))
    # A star is a block with one visible node; a full graph splits off its last node.
    star = graph_from_adjacency(_star(5), 5)
    assert latent_block(star)[0].shape == (4, 1)
    assert latent_block(full_graph(4))[0].shape == (1, 3)
    # No block: a grid, an empty graph.
    for other in (grid_graph((3, 3)), empty_graph(4), chain_graph(4)):
        block, base = latent_block(other)
        assert block is None and base.tolist() == list(range(other.n_edges))


def _star(n):
    A = np.zeros((n, n))
    A[0, 1:] = A[1:, 0] = 1
    return A
