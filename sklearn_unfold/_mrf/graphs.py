"""Graphs between the hidden units of a pairwise binary MRF.

A :class:`Graph` stores the undirected edge set :math:`\\mathcal{E}_{hh}` of the
paper (sec. 3) together with the index arrays that message passing needs:
each undirected edge ``(i, j)`` with ``i < j`` gives two directed edges (the
messages ``i -> j`` and ``j -> i``).  Directed edge ``e < E`` runs
``edges[e, 0] -> edges[e, 1]`` and directed edge ``e + E`` runs the other way,
so ``reverse`` is a fixed permutation and folding a per-directed-edge array back
onto undirected edges is ``x[:E] + x[E:]``.

Builders: :func:`chain_graph`, :func:`full_graph`, :func:`grid_graph`,
:func:`graph_from_adjacency`, and :func:`make_graph` which turns an estimator's
``graph`` parameter into a :class:`Graph`.
"""

from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
import scipy.sparse as sp

GRAPH_NAMES = ("chain", "full", "4-grid", "8-grid", "empty")


@dataclass(frozen=True, eq=False)
class Graph:
    """Undirected graph over ``n_nodes`` hidden units with directed-edge indices.

    Parameters
    ----------
    n_nodes : int
        Number of hidden units.
    edges : ndarray of shape (n_edges, 2), dtype=intp
        Undirected edges ``(i, j)``, ``i < j``, sorted, without duplicates.
    """

    n_nodes: int
    edges: np.ndarray
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_edges(self):
        """Number of undirected edges ``E``."""
        return self.edges.shape[0]

    @property
    def src(self):
        """Source node of each of the ``2E`` directed edges (the ``j`` of ``j -> i``)."""
        return np.concatenate([self.edges[:, 0], self.edges[:, 1]])

    @property
    def dst(self):
        """Destination node of each directed edge (the ``i`` of ``j -> i``)."""
        return np.concatenate([self.edges[:, 1], self.edges[:, 0]])

    @property
    def reverse(self):
        """Index of the opposite directed edge; an involution."""
        E = self.n_edges
        return np.concatenate([np.arange(E, 2 * E), np.arange(E)])

    @property
    def degree(self):
        """Number of neighbours of each node, ``n_i = |N_i^hh|``."""
        return np.bincount(self.edges.ravel(), minlength=self.n_nodes)

    def adjacency(self):
        """Dense boolean adjacency matrix of shape (n_nodes, n_nodes)."""
        A = np.zeros((self.n_nodes, self.n_nodes), dtype=bool)
        A[self.edges[:, 0], self.edges[:, 1]] = True
        A[self.edges[:, 1], self.edges[:, 0]] = True
        return A

    def _incidence(self, which, dtype):
        key = (which, np.dtype(dtype).str)
        if key not in self._cache:
            cols = self.dst if which == "dst" else self.src
            n_dir = 2 * self.n_edges
            self._cache[key] = sp.csr_array(
                (np.ones(n_dir, dtype=dtype), (np.arange(n_dir), cols)),
                shape=(n_dir, self.n_nodes),
            )
        return self._cache[key]

    def cached(self, key, make):
        """``make()`` computed once per graph and kept (index arrays, sparse operators)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def node_edge_matrix(self, which, dtype):
        """CSR ``(n_nodes, 2 E)`` matrix with a 1 at ``(dst[e], e)`` (``which="dst"``) or ``(src[e], e)``.

        ``M @ x`` with ``x`` of shape ``(2 E, n_samples)`` (edge-major) sums each
        node's incoming (or outgoing) directed-edge values: the sparse edge
        reductions of message passing as one matrix product.
        """
        def make():
            rows = self.dst if which == "dst" else self.src
            n_dir = 2 * self.n_edges
            return sp.csr_array(
                (np.ones(n_dir, dtype=dtype), (rows, np.arange(n_dir))),
                shape=(self.n_nodes, n_dir),
            )

        return self.cached(("node_edge", which, np.dtype(dtype).str), make)

    def coupling_operator(self, coupling, dense):
        """Matrix ``A`` with ``A[dst[e], src[e]] = coupling[e]`` over the ``2 E`` directed edges.

        ``A @ mu`` (``mu`` of shape ``(n_nodes, n_samples)``) is the summed
        mean-field message ``sum_j a_ij mu_j`` at every node.  Dense
        ``ndarray`` if ``dense`` else a CSR array; the CSR structure (rows by
        destination, columns by source) is built once per graph.
        """
        coupling = np.asarray(coupling)
        N = self.n_nodes
        if dense:
            A = np.zeros((N, N), dtype=coupling.dtype)
            src, dst = self.cached("src", lambda: self.src), self.cached("dst", lambda: self.dst)
            A[dst, src] = coupling
            return A

        def make():
            src, dst = self.src, self.dst
            order = np.lexsort((src, dst))
            indptr = np.zeros(N + 1, dtype=np.intp)
            np.cumsum(np.bincount(dst, minlength=N), out=indptr[1:])
            return order, src[order], indptr

        order, indices, indptr = self.cached("coupling_csr", make)
        return sp.csr_array((coupling[order], indices, indptr), shape=(N, N))

    def sum_incoming(self, messages):
        """Sum of messages arriving at each node: ``out[:, i] = sum_j messages[:, j->i]``.

        Parameters
        ----------
        messages : ndarray of shape (n_samples, 2 * n_edges)

        Returns
        -------
        ndarray of shape (n_samples, n_nodes)
        """
        return messages @ self._incidence("dst", messages.dtype)

    def sum_outgoing(self, values):
        """Sum over directed edges leaving each node (adjoint of gathering ``x[:, src]``)."""
        return values @ self._incidence("src", values.dtype)


def _make(n_nodes, pairs):
    pairs = np.asarray(pairs, dtype=np.intp).reshape(-1, 2)
    pairs = np.sort(pairs, axis=1)
    pairs = np.unique(pairs, axis=0) if pairs.shape[0] else pairs
    return Graph(int(n_nodes), pairs)


def chain_graph(n_nodes):
    """Path graph ``0 - 1 - ... - (n_nodes - 1)``."""
    i = np.arange(n_nodes - 1)
    return _make(n_nodes, np.stack([i, i + 1], axis=1))


def full_graph(n_nodes):
    """Complete graph: every pair of hidden units is connected."""
    i, j = np.triu_indices(n_nodes, k=1)
    return _make(n_nodes, np.stack([i, j], axis=1))


def empty_graph(n_nodes):
    """Graph without edges: the hidden units are independent given ``v``."""
    return _make(n_nodes, np.empty((0, 2), dtype=np.intp))


def grid_graph(shape, connectivity=4):
    """Image grid, pixels numbered in C (row-major) order like ``image.ravel()``.

    Parameters
    ----------
    shape : tuple of int (n_rows, n_cols)
    connectivity : {4, 8}
        4 connects horizontal and vertical neighbours, 8 adds diagonals.
    """
    n_rows, n_cols = shape
    idx = np.arange(n_rows * n_cols).reshape(n_rows, n_cols)
    pairs = [
        np.stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()], axis=1),
        np.stack([idx[:-1, :].ravel(), idx[1:, :].ravel()], axis=1),
    ]
    if connectivity == 8:
        pairs.append(np.stack([idx[:-1, :-1].ravel(), idx[1:, 1:].ravel()], axis=1))
        pairs.append(np.stack([idx[:-1, 1:].ravel(), idx[1:, :-1].ravel()], axis=1))
    return _make(n_rows * n_cols, np.concatenate(pairs))


def graph_from_adjacency(adjacency, n_nodes):
    """Graph from a dense or scipy sparse adjacency matrix (nonzeros are edges).

    Raises
    ------
    ValueError
        If the matrix is not ``(n_nodes, n_nodes)``, holds NaN or inf, has a
        nonzero diagonal (self-loops) or is not symmetric.
    """
    if sp.issparse(adjacency):
        A = sp.coo_array(adjacency)
        data, rows, cols = A.data, A.row, A.col
        shape = A.shape
        keep = data != 0
        data, rows, cols = data[keep], rows[keep], cols[keep]
    else:
        A = np.asarray(adjacency)
        if A.ndim != 2:
            raise ValueError(
                f"graph adjacency matrix must be 2-D, got an array with ndim={A.ndim}."
            )
        shape = A.shape
        rows, cols = np.nonzero(A)
        data = A[rows, cols]
    if shape != (n_nodes, n_nodes):
        raise ValueError(
            f"graph adjacency matrix has shape {shape} but there are {n_nodes} hidden "
            f"units (columns of y); expected shape ({n_nodes}, {n_nodes})."
        )
    if data.dtype.kind not in "biuf":
        raise ValueError(
            f"graph adjacency matrix must be numeric, got dtype {data.dtype}."
        )
    if not np.all(np.isfinite(data)):
        raise ValueError("graph adjacency matrix contains NaN or infinity.")
    if np.any(rows == cols):
        raise ValueError(
            "graph adjacency matrix has nonzero diagonal entries (self-loops) at "
            f"nodes {np.unique(rows[rows == cols])[:10].tolist()}; a pairwise MRF has "
            "no self-edges (a_ii = 0)."
        )
    S = sp.csr_array((data.astype(np.float64), (rows, cols)), shape=shape)
    asym = sp.coo_array(S - S.T)
    asym.eliminate_zeros()
    if asym.nnz:
        raise ValueError(
            "graph adjacency matrix must be symmetric (the MRF graph is undirected); "
            f"entries ({asym.row[0]}, {asym.col[0]}) and ({asym.col[0]}, {asym.row[0]}) "
            "differ."
        )
    return _make(n_nodes, np.stack([rows, cols], axis=1)[rows < cols])


def with_latent_units(graph, n_latent):
    """Append ``n_latent`` nodes, each connected to every node of ``graph``.

    The new nodes ``n_nodes .. n_nodes + n_latent - 1`` form a complete
    bipartite graph with the old ones (as the hidden layer of an RBM) and are
    not connected to each other.
    """
    if n_latent == 0:
        return graph
    old = np.arange(graph.n_nodes)
    new = graph.n_nodes + np.arange(n_latent)
    pairs = np.stack(np.meshgrid(old, new, indexing="ij"), axis=-1).reshape(-1, 2)
    return _make(graph.n_nodes + n_latent, np.concatenate([graph.edges, pairs]))


def make_graph(spec, n_nodes, image_shape=None):
    """Resolve an estimator's ``graph`` parameter into a :class:`Graph`.

    Parameters
    ----------
    spec : {"chain", "full", "4-grid", "8-grid", "empty"}, array-like or sparse matrix
        A graph name or an ``(n_nodes, n_nodes)`` symmetric adjacency matrix.
    n_nodes : int
        Number of hidden units.
    image_shape : tuple of int or None
        ``(n_rows, n_cols)`` for the grid graphs; ``None`` means a square image.

    Returns
    -------
    Graph
    """
    if isinstance(spec, Graph):
        if spec.n_nodes != n_nodes:
            raise ValueError(
                f"graph has {spec.n_nodes} nodes but there are {n_nodes} hidden units."
            )
        return spec
    if isinstance(spec, str):
        if spec == "chain":
            return chain_graph(n_nodes)
        if spec == "full":
            return full_graph(n_nodes)
        if spec == "empty":
            return empty_graph(n_nodes)
        if spec in ("4-grid", "8-grid"):
            shape = _resolve_image_shape(image_shape, n_nodes, spec)
            return grid_graph(shape, connectivity=int(spec[0]))
        raise ValueError(f"graph must be one of {GRAPH_NAMES} or a matrix, got {spec!r}.")
    return graph_from_adjacency(spec, n_nodes)


def _resolve_image_shape(image_shape, n_nodes, name):
    if image_shape is None:
        side = int(round(np.sqrt(n_nodes)))
        if side * side != n_nodes:
            raise ValueError(
                f"graph={name!r} needs image_shape when the number of hidden units "
                f"({n_nodes}) is not a perfect square."
            )
        return side, side
    shape = tuple(image_shape)
    if len(shape) != 2 or not all(
        isinstance(s, Integral) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ValueError(
            f"image_shape must be a pair of positive integers, got {image_shape!r}."
        )
    if shape[0] * shape[1] != n_nodes:
        raise ValueError(
            f"image_shape={shape} has {shape[0] * shape[1]} pixels but there are "
            f"{n_nodes} hidden units (columns of y)."
        )
    return shape


def latent_block(graph):
    """Split off a complete bipartite block between the first and the last nodes.

    :func:`with_latent_units` connects each of the last ``L`` nodes to all of
    the first ``V = n_nodes - L`` and to nothing else; message passing runs
    such a block as dense ``(L, V)`` arrays (broadcasts and axis sums instead
    of gathers and sparse products).  Any graph of that shape qualifies (a
    star is a block with ``V = 1``).

    Returns
    -------
    block : ndarray of shape (L, V) or None
        Undirected edge index of edge ``(i, V + l)`` at ``[l, i]``; None if
        the graph has no such block.
    base : ndarray of shape (n_edges - L * V,)
        Indices of the other edges (all edges when ``block`` is None).
    """
    N, edges = graph.n_nodes, graph.edges
    everything = np.arange(graph.n_edges)
    if graph.n_edges == 0:
        return None, everything
    degree = graph.degree
    V = int(degree[N - 1])
    L = N - V
    in_block = edges[:, 1] >= V
    if not (
        0 < V < N
        and np.all(degree[V:] == V)
        and np.count_nonzero(in_block) == L * V
        and np.all(edges[in_block, 0] < V)
    ):
        return None, everything
    block = np.empty((L, V), dtype=np.intp)
    block[edges[in_block, 1] - V, edges[in_block, 0]] = everything[in_block]
    return block, everything[~in_block]
