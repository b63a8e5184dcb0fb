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

Layout and speed: internally every array is *edge-major* or *node-major*,
``(2E, n_samples)`` and ``(N, n_samples)``, so that gathering a node value for
every edge is a copy of whole rows and summing the messages that arrive at
each node is one sparse matrix product (:meth:`.Graph.node_edge_matrix`).
Mean-field layers without a per-edge schedule never form per-edge arrays:
``sum_j a_ij mu_j`` is ``A mu`` with the (sparse or dense) coupling matrix,
and the coupling gradient is read off ``g mu^T``.  Sum-product style BP
messages (finite ``kappa``, ``lambda > 0``) use fused in-place kernels built
on NumPy's vectorized ``exp``/``log1p``.  Plain sum-product BP
(``lambda = kappa = 1`` in every layer, no schedule, ``|a| <= 20``) works on
message *ratios* ``m = e^r`` instead, where eq. (22) needs one ``exp`` per
node and no transcendental function per edge but the ``log`` of the belief
sums: ``m = (e^a + x) / (1 + x)`` with ``x = e^(-d) = m_(i->j) e^(-eta_j)``
(:func:`_ratio_message`); there the edges of a latent-unit block
(:func:`.graphs.latent_block`) are dense ``(2, n_samples, L, V)`` arrays
(broadcasts and axis sums, no gathers), the other edges edge-major as above.
In inference (``keep_trace=False``) the messages from the latent units to
each node are summed as the ``log`` of their product, one ``log`` per group
of them instead of one per edge (:func:`_block_log_sums`).
The remaining cases (max-product, ``lambda = 0``, a
trained lambda, ``|lambda kappa a| > 50``) call the reference functions of
:mod:`.belief_propagation` and :mod:`.mean_field`.
:class:`Trace` still hands out ``(n_samples, ...)`` arrays.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from .belief_propagation import bp_message, bp_message_grad
from .graphs import Graph, latent_block
from .mean_field import mf_message, mf_message_grad
from .power_mean import _BIG, fast_expit

# Ratio-domain BP (see _ratio_message): couplings up to _RATIO_MAX in size and
# beliefs clipped to +-_RATIO_CLIP keep x = e^(-d) within float32's normal range
# (e^(+-80)); clipping changes sigmoid(d) by less than e^(-40).
_RATIO_MAX = 20.0
_RATIO_CLIP = 60.0


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

    The arrays are transposed views of the edge-major / node-major arrays the
    network works with; mean-field layers without a per-edge schedule form
    their per-edge messages only when ``messages`` is read.
    """

    def __init__(self, spec):
        self._spec = spec
        self.eta_t = []  # (N, n) per layer, eta^0 .. eta^K
        self.mu_t = []  # (N, n) sigmoid(eta^(k-1)), node-level mean field only
        self.mu_coupling = []  # (2E,) coupling of the layer each mu_t entry feeds
        self.rt_t = []  # (2E, n) scheduled messages r~^0 .. r~^K, per-edge path only
        self.r_t = []  # (2E, n) raw messages r^1 .. r^K, per-edge path only
        self.cavity_t = []  # (2E, n) BP cavity log-odds d^1 .. d^K, fast BP only
        self.ratio_t = []  # ratio-domain BP: (m, local) of the base edges and of the block, per layer
        self.fast = {}  # kernel constants by (coupling, lambda) layer content
        self.buffers = {}  # reusable work arrays, see _buffer
        self.complete = True  # False: only the last layer is kept (keep_trace=False)

    def _reset(self):
        self.complete = False
        for name in ("eta_t", "mu_t", "mu_coupling", "rt_t", "r_t", "cavity_t", "ratio_t"):
            setattr(self, name, [])

    @property
    def eta(self):
        return [e.T for e in self.eta_t]

    def _node_level_messages(self):
        # r^k = a^k * sigmoid(eta^(k-1))[src] (mean field, no schedule: r~ = r).
        src = _indices(self._spec.graph)[0]
        return [(c[:, None] * mu[src]).T for c, mu in zip(self.mu_coupling, self.mu_t)]

    def _ratio_messages(self):
        # log m^k in the public edge order (ratio-domain BP network).
        layout = _ratio_layout(self._spec.graph)
        n, dtype = self.eta_t[-1].shape[1], self.eta_t[-1].dtype
        return [
            layout.join(None if mb is None else np.log(mb), None if mk is None else np.log(mk), n, dtype).T
            for mb, _, mk, _ in self.ratio_t
        ]

    def _per_edge_from_ratio(self):
        """Fill the per-edge lists from a ratio-domain trace (for the reference backward)."""
        raw = [m.T for m in self._ratio_messages()]
        self.rt_t = [np.zeros_like(raw[0])] + raw
        self.r_t = raw
        self.cavity_t = [None] * len(raw)
        self.ratio_t = []

    @property
    def messages(self):
        if self.ratio_t:
            raw = self._ratio_messages()
            if not self.complete:
                return raw
            return [np.zeros_like(raw[0])] + raw
        if self.rt_t or not self.mu_t:
            return [m.T for m in self.rt_t]
        raw = self._node_level_messages()
        if not self.complete:
            return raw
        n = self.eta_t[-1].shape[1]
        return [np.zeros((n, 2 * self._spec.graph.n_edges), dtype=self.eta_t[-1].dtype)] + raw

    @property
    def raw_messages(self):
        if self.ratio_t:
            return self._ratio_messages()
        if self.r_t or not self.mu_t:
            return [m.T for m in self.r_t]
        return self._node_level_messages()


def _at(array, k):
    """Layer ``k`` of a parameter array (layer 0 if the parameter is tied)."""
    return k if array.shape[0] > 1 else 0


def _indices(graph):
    """``src, dst, reverse, E`` of a graph, computed once per graph."""
    return graph.cached("indices", lambda: (graph.src, graph.dst, graph.reverse, graph.n_edges))


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


def _layer_field_t(params, k, XT, dtype):
    """:func:`layer_field` transposed: ``(n_nodes, n_samples)``, from ``XT = X.T``."""
    bias = params["bias"][_at(params["bias"], k)]
    f = np.empty((bias.shape[0], XT.shape[1]), dtype=dtype)
    f[...] = bias[:, None]
    if "local" in params:
        local = params["local"][_at(params["local"], k)]
        f[: local.shape[0]] += local[:, None] * XT
    if "dense" in params:
        f += params["dense"][_at(params["dense"], k)] @ XT
    return f


def _field_grad(grads, params, k, XT, g_eta):
    """Accumulate the field's parameter gradients; ``XT``, ``g_eta`` node-major."""
    grads["bias"][_at(params["bias"], k)] += _row_sums(g_eta)
    if "local" in params:
        F = XT.shape[0]
        grads["local"][_at(params["local"], k)] += np.einsum("ij,ij->i", g_eta[:F], XT)
    if "dense" in params:
        grads["dense"][_at(params["dense"], k)] += g_eta @ XT.T


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


def _node_level(spec, params):
    """Mean field without a per-edge schedule: layers are ``A mu`` products."""
    return spec.kind == "mf" and "schedule" not in params


def _dense_coupling_grad(graph):
    """Whether the coupling gradient is cheaper read off ``g mu^T`` than per edge.

    A dense ``(N x n) (n x N)`` BLAS product does ``N^2 n`` multiply-adds at
    ~10-20x the rate of the per-edge gathers and sums (``2E n``); RBM-like
    latent units make the graph dense enough.  (``A mu`` itself stays a CSR
    product: as fast as the dense one there and never waking BLAS threads.)
    """
    return graph.n_nodes**2 <= 16 * 2 * graph.n_edges


def _fast_bp(spec, lam, coupling, n_samples):
    """Per-edge constants of the fused BP kernel, or None for the reference path.

    The constants are broadcast to full ``(2E, n_samples)`` arrays once:
    NumPy's SIMD loops run several times faster on two contiguous operands
    than on a broadcast ``(2E, 1)`` column.
    """
    kappa = spec.kappa
    if spec.kind != "bp" or not np.isfinite(kappa) or lam is None:
        return None
    s = lam * kappa
    if not s > 0:
        return None
    delta = s * coupling
    mag = np.abs(delta)
    if mag.size and np.max(mag) > _BIG:
        return None
    sign = np.where(delta < 0, -1, 1).astype(delta.dtype)
    zero = mag == 0
    ratio = np.where(zero, 1, -np.expm1(-delta) / np.where(zero, 1, delta))

    def full(column):
        return np.ascontiguousarray(
            np.broadcast_to(column.astype(coupling.dtype, copy=False)[:, None], (column.shape[0], n_samples))
        )

    return {
        "kappa": kappa,
        "s": s,
        "delta": full(delta),
        "neg_sign": full(-sign),
        "em": full(np.expm1(mag)),
        "c0": full(coupling * (1 - sign) / 2),
        # 1 for every nonzero edge when s = 1 (em = 0 on zero edges anyway)
        "c1": None if s == 1 else full(coupling * sign / np.where(zero, 1, mag)),
        "w": full(coupling * ratio),
    }


def _layer_key(params, k, *names):
    """Identify layer ``k``'s values of ``names`` by content.

    Fitted estimators store tied parameters repeated per layer, so equal
    layers are recognised by their bytes (a few KiB), not by index.
    """
    key = []
    for name in names:
        value = params.get(name)
        key.append(None if value is None else np.asarray(value[_at(value, k)]).tobytes())
    return tuple(key)


def _fast_constants(cache, spec, params, k, dtype, n_samples):
    """:func:`_fast_bp` for layer ``k``, computed once per distinct (coupling, lambda, n_samples)."""
    key = _layer_key(params, k, "coupling", "lambda") + (n_samples,)
    if key not in cache:
        coupling = _coupling(params, spec, k).astype(dtype, copy=False)
        cache[key] = _fast_bp(spec, _lam(params, k), coupling, n_samples)
    return cache[key]


def _row_sums(a):
    """``a.sum(axis=1)`` for a C-contiguous 2-D array.

    ``einsum`` runs as fast as a BLAS matrix-vector product here (2-4x
    ``ndarray.sum(axis=1)``) without waking BLAS threads for a small product.
    """
    return np.einsum("ij->i", a)


def _cavity(etaT, rtT, src, E, kappa, s):
    """Edge-major ``d = kappa eta[src] - s r~[reverse]`` (the reverse swaps the halves)."""
    d = np.take(etaT, src, axis=0)  # several times faster than etaT[src]
    if kappa != 1:
        d *= kappa
    if s == 1:
        d[:E] -= rtT[E:]
        d[E:] -= rtT[:E]
    else:
        d[:E] -= s * rtT[E:]
        d[E:] -= s * rtT[:E]
    return d


def _fast_bp_message(d, c):
    """``r = c0 + c1 log1p(em / (1 + exp(-sign d)))``: eq. (61) via :func:`.power_mean.scaled_power_mean_g`."""
    r = np.multiply(d, c["neg_sign"])
    with np.errstate(over="ignore"):
        np.exp(r, out=r)
    r += 1
    np.divide(c["em"], r, out=r)
    np.log1p(r, out=r)
    if c["c1"] is not None:
        r *= c["c1"]
    r += c["c0"]
    return r


def _fast_bp_grad(g_r, d, c):
    """Backward of :func:`_fast_bp_message`: ``(grad_coupling, grad_d)``.

    ``dr/da = sigmoid(d + s a)``; ``dr/dd = a sigmoid(d + s a) sigmoid(-d) ratio``
    (:func:`.power_mean.power_mean_g_dd`).
    """
    t = np.add(d, c["delta"])
    fast_expit(t, out=t)
    t *= g_r
    grad_coupling = _row_sums(t)
    q = np.negative(d)
    fast_expit(q, out=q)
    t *= q
    t *= c["w"]
    return grad_coupling, t


class _RatioLayout:
    """Edge layout of the ratio-domain BP network for one graph.

    Directed edges split into ``base`` ones, edge-major ``(2 Eb, n)`` as in
    the rest of the module (the reverse of edge ``e`` is ``e +- Eb``), and a
    latent block (:func:`.graphs.latent_block`) of ``L x V`` undirected edges,
    sample-major ``(2, n, L, V)``: ``[0]`` the messages latent ``l`` -> node
    ``i``, ``[1]`` node ``i`` -> latent ``l``, each other's reverse.
    """

    def __init__(self, graph):
        block, base = latent_block(graph)
        E = graph.n_edges
        self.E, self.Eb = E, base.shape[0]
        self.L, self.V = (0, graph.n_nodes) if block is None else block.shape
        # Directed-edge indices (of the 2E of graph) of each part.
        self.base_dir = np.concatenate([base, base + E])
        self.block_dir = None if block is None else np.stack([block + E, block])
        edges = graph.edges[base]
        self.base_src = np.concatenate([edges[:, 0], edges[:, 1]])
        self.base_dst = np.concatenate([edges[:, 1], edges[:, 0]])
        self.n_nodes = graph.n_nodes
        self._incidence = {}

    def incidence(self, which, dtype):
        """CSR ``(n_nodes, 2 Eb)`` summing base edges into their ``"dst"`` (or ``"src"``) nodes."""
        key = (which, np.dtype(dtype).str)
        if key not in self._incidence:
            rows = self.base_dst if which == "dst" else self.base_src
            n_dir = rows.shape[0]
            self._incidence[key] = sp.csr_array(
                (np.ones(n_dir, dtype=dtype), (rows, np.arange(n_dir))), shape=(self.n_nodes, n_dir)
            )
        return self._incidence[key]

    def split(self, per_edge):
        """``(base, block)`` parts of a per-directed-edge vector (block ``(2, 1, L, V)``)."""
        block = None if self.block_dir is None else per_edge[self.block_dir][:, None]
        return per_edge[self.base_dir], block

    def join(self, base, block, n_samples, dtype):
        """Public edge-major ``(2E, n)`` array from the two parts of a message array."""
        out = np.zeros((2 * self.E, n_samples), dtype=dtype)
        if base is not None:
            out[self.base_dir] = base
        if block is not None:
            out[self.block_dir.reshape(2, -1)] = block.reshape(2, n_samples, -1).transpose(0, 2, 1)
        return out


def _ratio_layout(graph):
    return graph.cached("ratio_layout", lambda: _RatioLayout(graph))


def _ratio_network(spec, params):
    """Whether every layer is plain sum-product BP that the ratio domain can run."""
    lam = params.get("lambda")
    return (
        spec.kind == "bp"
        and spec.kappa == 1
        and "schedule" not in params
        and lam is not None
        and bool(np.all(lam == 1))
        and not (params["coupling"].size and np.max(np.abs(params["coupling"])) > _RATIO_MAX)
    )


def _ratio_constants(buffers, spec, params, dtype, n_samples):
    """Per-layer constants of the ratio-domain network: per part ``e^a`` and ``w = 1 - e^(-a)``.

    A list over the ``K`` layers of ``{"base": (e^a, w), "block": (e^a, w,
    group)}`` (None for a part the graph lacks), the base arrays broadcast
    to full ``(2 Eb, n)`` arrays (see :func:`_fast_bp`), the block ones
    ``(2, 1, L, V)``; ``group`` is :func:`_product_group` of the
    latent -> node couplings.  Consecutive layers with equal couplings share
    one entry.  ``buffers`` keeps the list with a copy of the couplings it
    was computed from, so that the chunks of a prediction (same ``buffers``)
    compute it once: it is reused while the couplings (compared by value,
    as training updates them in place), dtype, sample count, symmetry and
    graph are the same.
    """
    layout = _ratio_layout(spec.graph)
    coupling = params["coupling"]
    cached = buffers.get("ratio_constants")
    if (
        cached is not None
        and cached[0] is layout
        and cached[1] == (np.dtype(dtype).str, n_samples, spec.symmetric)
        and np.array_equal(cached[2], coupling)
    ):
        return cached[3]
    per_layer, previous = [], None
    for k in range(spec.n_layers):
        row = coupling[_at(coupling, k)]
        if previous is not None and np.array_equal(row, previous[0]):
            per_layer.append(previous[1])
            continue
        base, block = layout.split(_coupling(params, spec, k).astype(dtype, copy=False))
        consts = {}
        for part, a in (("base", base), ("block", block)):
            if a is None or a.size == 0:
                consts[part] = None
                continue
            if part == "base":  # edge-major: full arrays (see _fast_bp)
                a = np.ascontiguousarray(np.broadcast_to(a[:, None], (a.shape[0], n_samples)))
                consts[part] = (np.exp(a), -np.expm1(-a))
            else:  # with the product group of the latent -> node sums (_block_log_sums)
                consts[part] = (np.exp(a), -np.expm1(-a), _product_group(np.max(np.abs(a[0])), dtype))
        per_layer.append(consts)
        previous = (row, consts)
    buffers["ratio_constants"] = (
        layout, (np.dtype(dtype).str, n_samples, spec.symmetric), np.array(coupling, copy=True), per_layer
    )
    return per_layer


def _buffer(buffers, name, shape, dtype):
    """A work array kept in ``buffers`` and handed out again for the same name and shape.

    Fresh arrays of a few MiB cost page faults every time (about as much as
    the arithmetic on them); the ratio kernels reuse these instead, across
    layers and, when the caller passes the same ``buffers``, across calls.
    """
    key = (name, shape, np.dtype(dtype).str)
    if key not in buffers:
        buffers[key] = np.empty(shape, dtype=dtype)
    return buffers[key]


def _ratio_message(x, ea, w, work, m, local=None):
    """Sum-product message ratio ``m = e^r = (e^a + x) / (1 + x)``, eq. (22), into ``m``.

    ``x = e^(-d)`` with ``d`` the cavity log-odds; with ``p = sigmoid(d) =
    1 / (1 + x)`` this is ``1 + p (e^a - 1)``, the ratio of
    :func:`.belief_propagation.bp_message` at ``lambda = kappa = 1``.
    Numerator and denominator are sums of positive terms, so ``m`` is exact
    to a few ulp for either sign of ``a``.  ``work`` is work space.

    With ``local``, a pair of arrays like ``x``, also writes there what the
    backward pass needs and returns it (else None):
    ``dr/da = e^a / (e^a + x) = sigmoid(d + a)`` and ``u = w x / (1 + x)``
    with ``w = 1 - e^(-a)``, so that ``dr/dd = x (e^a - 1) / ((e^a + x)(1 + x))
    = (dr/da) u`` (no cancellation).
    """
    den = np.add(x, 1, out=work)
    if local is None:
        np.add(x, ea, out=m)
        return np.divide(m, den, out=m), None
    dr_da, u = local
    np.add(x, ea, out=dr_da)
    np.divide(dr_da, den, out=m)
    np.divide(ea, dr_da, out=dr_da)
    np.divide(x, den, out=u)
    u *= w
    return m, local


def _ratio_grad(g_r, local, t):
    """``(grad_coupling, grad_d)`` of a ratio-domain layer from :func:`_ratio_message`'s ``local``.

    Coupling gradients are summed over the samples, axis 1 of edge-major
    ``(2E, n)`` and of block ``(2, n, L, V)`` arrays; ``grad_d`` is written
    into ``t``.
    """
    dr_da, u = local
    np.multiply(g_r, dr_da, out=t)
    grad_coupling = _row_sums(t) if t.ndim == 2 else np.add.reduce(t, axis=1)
    t *= u
    return grad_coupling, t


def _product_group(amax, dtype):
    """Most factors ``m`` with ``|log m| <= amax`` whose product is safely a normal float.

    A product of ``g`` message ratios lies in ``[e^(-g amax), e^(g amax)]``;
    ``g amax`` is kept within 3/4 of the exponent range (about 65 in float32,
    530 in float64), far from overflow and from subnormals.  0 or 1: no
    grouping is safe, sum the logs one by one.
    """
    info = np.finfo(dtype)
    limit = 0.75 * min(np.log(info.max), -np.log(info.tiny))
    return int(min(limit // amax, np.iinfo(np.intp).max)) if amax > 0 else np.iinfo(np.intp).max


def _block_log_sums(m, group, work, out):
    """Sums of ``log m`` over the edges arriving at each node, of block messages ``m`` ``(2, n, L, V)``.

    Returns ``(into_nodes, into_latent)``, ``(n, V)`` and ``(n, L)``: the sums
    over axis 1 of ``m[0]`` (latent -> node) and over axis 2 of ``m[1]``
    (node -> latent).  The first is ``sum_l log m_l = log prod_l m_l`` over
    groups of at most ``group`` latent units (:func:`_product_group` of the
    largest ``|a|`` of the latent -> node edges; below 2, one ``log`` per
    edge): products of whole ``(n, V)`` rows, one ``log`` per group and node
    instead of one per edge; equal to the per-edge sums up to rounding (an
    ulp or so per factor).  The second keeps one ``log`` per edge: along the
    contiguous axis the products (halving the axis) cost as much as the
    ``log`` they save, measured in float32 and float64.  ``work`` is work
    space like ``m``, ``out`` an ``(n, V)`` array.
    """
    L = m.shape[2]
    if group >= 2:
        np.multiply.reduce(m[0][:, :group], axis=1, out=out)
        into_nodes = np.log(out, out=out)
        for start in range(group, L, group):
            part = np.multiply.reduce(m[0][:, start : start + group], axis=1, out=work[0][:, 0])
            into_nodes += np.log(part, out=part)
    else:
        into_nodes = np.add.reduce(np.log(m[0], out=work[0]), axis=1, out=out)
    return into_nodes, np.add.reduce(np.log(m[1], out=work[1]), axis=2)


def _ratio_forward(params, spec, XT, etaT, trace, keep_trace):
    """The K layers of :func:`forward` in the ratio domain; returns ``eta^K`` node-major.

    Layer ``k`` needs ``x = e^(-d) = m_rev e^(-eta_src)`` per edge: one ``exp``
    per node (beliefs clipped to ``+-_RATIO_CLIP``), a gather or broadcast and
    a product per edge; then :func:`_ratio_message` and the belief sums of
    ``log m``.  Every per-edge array is a buffer of ``trace.buffers``: with
    ``keep_trace``, per layer what the backward pass reads; without it, two
    arrays per part used in turn (``x`` becomes the messages in place, the
    previous messages are the work space), so that the arrays of a
    prediction stay in the CPU caches, and the block's belief sums are
    logs of products (:func:`_block_log_sums`).
    """
    layout = _ratio_layout(spec.graph)
    Eb, L, V = layout.Eb, layout.L, layout.V
    dtype, n = etaT.dtype, XT.shape[1]
    S_dst = layout.incidence("dst", dtype)
    base_shape, block_shape = (2 * Eb, n), (2, n, L, V)

    def buffer(name, shape):
        return _buffer(trace.buffers, name, shape, dtype)

    def layer_arrays(part, shape, k):
        # (x, work, messages, local derivatives or None) of layer k
        if not keep_trace:
            x = buffer(f"m_{part}{k % 2}", shape)
            return x, buffer(f"m_{part}{(k + 1) % 2}", shape), x, None
        local = (buffer(f"dr_da_{part}{k}", shape), buffer(f"u_{part}{k}", shape))
        return buffer(f"x_{part}", shape), buffer(f"work_{part}", shape), buffer(f"m_{part}{k}", shape), local

    constants = _ratio_constants(trace.buffers, spec, params, dtype, n)
    m_base = m_block = None  # messages of the previous layer (r~^0 = 0: m = 1)
    for k in range(spec.n_layers):
        consts = constants[k]
        b = np.clip(etaT, -_RATIO_CLIP, _RATIO_CLIP)
        np.negative(b, out=b)
        np.exp(b, out=b)
        etaT = _layer_field_t(params, k, XT, dtype)
        local_base = local_block = None
        if Eb:
            x, work, m, local = layer_arrays("base", base_shape, k)
            np.take(b, layout.base_src, axis=0, out=x)
            if m_base is not None:
                x[:Eb] *= m_base[Eb:]
                x[Eb:] *= m_base[:Eb]
            ea, w = consts["base"]
            m_base, local_base = _ratio_message(x, ea, w, work, m, local)
            etaT += S_dst @ np.log(m_base, out=work)
        if L:
            bT = np.ascontiguousarray(b.T)
            b_latent, b_node = bT[:, V:, None], bT[:, None, :V]
            x, work, m, local = layer_arrays("block", block_shape, k)
            if m_block is None:
                x[0] = b_latent
                x[1] = b_node
            else:
                np.multiply(m_block[1], b_latent, out=x[0])
                np.multiply(m_block[0], b_node, out=x[1])
            ea, w, group = consts["block"]
            m_block, local_block = _ratio_message(x, ea, w, work, m, local)
            if keep_trace:  # training: the per-edge sums, as the backward pass differentiates them
                r_block = np.log(m_block, out=work)
                into_nodes = np.add.reduce(r_block[0], axis=1)
                into_latent = np.add.reduce(r_block[1], axis=2)
            else:
                into_nodes, into_latent = _block_log_sums(m_block, group, work, buffer("log_sums", (n, V)))
            etaT[:V] += into_nodes.T
            etaT[V:] += into_latent.T
        if not keep_trace:
            trace._reset()
        trace.eta_t.append(etaT)
        trace.ratio_t.append((m_base, local_base, m_block, local_block))
    return etaT


def _ratio_backward(params, spec, XT, trace, g_eta, grads):
    """:func:`backward` through :func:`_ratio_forward` (lambda fixed).

    ``d r / d log m_rev = -dr/dd``: the reverse message of the layer below
    gets ``-grad_d``, subtracted where that layer's ``g_r`` is formed.
    """
    layout = _ratio_layout(spec.graph)
    E, Eb, L, V = layout.E, layout.Eb, layout.L, layout.V
    dtype, n = g_eta.dtype, XT.shape[1]
    buffers = trace.buffers
    S_src = layout.incidence("src", dtype)
    base_shape, block_shape = (2 * Eb, n), (2, n, L, V)
    d_base = d_block = None  # grad_d of the layer above, None while zero
    for k in range(spec.n_layers - 1, -1, -1):
        _field_grad(grads, params, k, XT, g_eta)
        _, local_base, _, local_block = trace.ratio_t[k]
        g_a = np.empty(2 * E, dtype=dtype)
        g_prev = np.zeros_like(g_eta)
        if Eb:
            g_r = np.take(g_eta, layout.base_dst, axis=0, out=_buffer(buffers, "g_r_base", base_shape, dtype))
            if d_base is not None:
                g_r[:Eb] -= d_base[Eb:]
                g_r[Eb:] -= d_base[:Eb]
            t = _buffer(buffers, f"g_d_base{k % 2}", base_shape, dtype)
            g_a[layout.base_dir], d_base = _ratio_grad(g_r, local_base, t)
            g_prev += S_src @ d_base
        if L:
            gT = np.ascontiguousarray(g_eta.T)
            g_node, g_latent = gT[:, None, :V], gT[:, V:, None]
            g_r = _buffer(buffers, "g_r_block", block_shape, dtype)
            if d_block is None:
                g_r[0] = g_node
                g_r[1] = g_latent
            else:
                np.subtract(g_node, d_block[1], out=g_r[0])
                np.subtract(g_latent, d_block[0], out=g_r[1])
            t = _buffer(buffers, f"g_d_block{k % 2}", block_shape, dtype)
            g_a[layout.block_dir], d_block = _ratio_grad(g_r, local_block, t)
            g_prev[:V] += np.add.reduce(d_block[1], axis=1).T
            g_prev[V:] += np.add.reduce(d_block[0], axis=2).T
        grads["coupling"][_at(params["coupling"], k)] += (g_a[:E] + g_a[E:]) if spec.symmetric else g_a
        g_eta = g_prev
    _field_grad(grads, params, 0, XT, g_eta)
    return grads


def forward(params, spec, X, keep_trace=True, buffers=None):
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
    buffers : dict or None, default=None
        Work arrays of the ratio-domain BP kernels to reuse across calls (the
        chunks of a prediction, the mini-batches of a fit).  The trace then
        holds arrays that the next call with the same ``buffers`` overwrites.

    Returns
    -------
    eta : ndarray of shape (n_samples, n_nodes)
        Output beliefs ``eta^K`` as log-odds.
    trace : Trace
        With ``keep_trace=False``, only the last layer's beliefs and messages.
    """
    g = spec.graph
    src, _, rev, E = _indices(g)
    X = np.asarray(X)
    XT = np.ascontiguousarray(X.T)
    dtype = layer_field(params, 0, X[:0]).dtype
    etaT = _layer_field_t(params, 0, XT, dtype)
    trace = Trace(spec)
    if buffers is not None:
        trace.buffers = buffers
    trace.eta_t.append(etaT)
    node_level = _node_level(spec, params)
    if node_level:
        operators = {}
        for k in range(spec.n_layers):
            key = _layer_key(params, k, "coupling")
            if key not in operators:
                c = _coupling(params, spec, k).astype(dtype, copy=False)
                operators[key] = (g.coupling_operator(c, dense=False), c)
            A, c = operators[key]
            mu = fast_expit(etaT)
            etaT = _layer_field_t(params, k, XT, dtype)
            etaT += A @ mu
            if not keep_trace:
                trace._reset()
            trace.mu_t.append(mu)
            trace.mu_coupling.append(c)
            trace.eta_t.append(etaT)
        return etaT.T, trace
    if _ratio_network(spec, params):
        return _ratio_forward(params, spec, XT, etaT, trace, keep_trace).T, trace
    S_dst = g.node_edge_matrix("dst", dtype)
    rtT = np.zeros((2 * E, X.shape[0]), dtype=dtype)
    trace.rt_t.append(rtT)
    for k in range(spec.n_layers):
        coupling = _coupling(params, spec, k)
        lam = _lam(params, k)
        fast = _fast_constants(trace.fast, spec, params, k, dtype, X.shape[0])
        d = None
        if fast is not None:
            d = _cavity(etaT, rtT, src, E, fast["kappa"], fast["s"])
            r = _fast_bp_message(d, fast)
        else:
            rho_rev = rtT[rev].T if spec.kind == "bp" else None
            r = _message(spec, coupling, np.take(etaT, src, axis=0).T, rho_rev, lam).T
        alpha = _alpha(params, k)
        if alpha is not None:
            alpha = alpha[:, None]
            r_sched = alpha * r
            r_sched += (1 - alpha) * rtT
            rtT = r_sched
        else:
            rtT = r
        etaT = _layer_field_t(params, k, XT, dtype)
        etaT += S_dst @ rtT
        if not keep_trace:
            trace._reset()
        trace.eta_t.append(etaT)
        trace.rt_t.append(rtT)
        trace.r_t.append(r)
        trace.cavity_t.append(d)
    return etaT.T, trace


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
    src, dst, rev, E = _indices(g)
    XT = np.ascontiguousarray(np.asarray(X).T)
    grads = {key: np.zeros_like(value) for key, value in params.items()}
    g_eta = np.ascontiguousarray(np.asarray(grad_eta).T)
    dtype = trace.eta_t[-1].dtype
    if trace.mu_t and not trace.rt_t:
        dense = _dense_coupling_grad(g)
        operators = {}
        for k in range(spec.n_layers - 1, -1, -1):
            _field_grad(grads, params, k, XT, g_eta)
            mu = trace.mu_t[k]
            # d eta^k / d a_e = mu[src_e] at dst_e: per-edge sums over samples.
            if dense:
                g_a = (g_eta @ mu.T)[dst, src]
            else:
                g_a = np.einsum("ij,ij->i", g_eta[dst], mu[src])
            grads["coupling"][_at(params["coupling"], k)] += (
                (g_a[:E] + g_a[E:]) if spec.symmetric else g_a
            )
            key = _layer_key(params, k, "coupling")
            if key not in operators:
                c = _coupling(params, spec, k).astype(dtype, copy=False)
                A = g.coupling_operator(c, dense=False)
                operators[key] = A if spec.symmetric else A.T.tocsr()
            back = operators[key] @ g_eta
            back *= mu
            back *= 1 - mu
            g_eta = back
        _field_grad(grads, params, 0, XT, g_eta)
        return grads
    if trace.ratio_t:
        if not need_lambda:
            return _ratio_backward(params, spec, XT, trace, g_eta, grads)
        trace._per_edge_from_ratio()
    S_src = g.node_edge_matrix("src", dtype)
    g_rt = None  # d loss / d r~^k, None while it is zero
    for k in range(spec.n_layers - 1, -1, -1):
        eta_prev, rt_prev, r = trace.eta_t[k], trace.rt_t[k], trace.r_t[k]
        # eta^k = f^k + sum_incoming(r~^k)
        _field_grad(grads, params, k, XT, g_eta)
        g_rt = g_eta[dst] if g_rt is None else g_rt + g_eta[dst]
        # r~^k = alpha r^k + (1 - alpha) r~^(k-1)
        alpha = _alpha(params, k)
        if alpha is None:
            g_r, g_rt = g_rt, None
        else:
            g_alpha = _row_sums(g_rt * (r - rt_prev)) * alpha * (1 - alpha)
            z = grads["schedule"][_at(params["schedule"], k)]
            z += g_alpha if z.shape == g_alpha.shape else g_alpha.sum(keepdims=True)
            alpha = alpha[:, None]
            g_r, g_rt = alpha * g_rt, (1 - alpha) * g_rt
        # r^k = msg(a^k, eta^(k-1)[src], r~^(k-1)[rev])
        coupling = _coupling(params, spec, k)
        lam = _lam(params, k)
        d = trace.cavity_t[k]
        if d is not None and not need_lambda:
            fast = _fast_constants(trace.fast, spec, params, k, dtype, X.shape[0])
            g_a, grad_d = _fast_bp_grad(g_r, d, fast)
            # d r / d r~[reverse] = -s d r / d d: swap the halves back.
            s = fast["s"]
            g_rho = np.empty_like(grad_d)
            np.multiply(grad_d[E:], -s, out=g_rho[:E])
            np.multiply(grad_d[:E], -s, out=g_rho[E:])
            g_rt = g_rho if g_rt is None else g_rt + g_rho
            if fast["kappa"] != 1:
                grad_d *= fast["kappa"]
            g_src = grad_d
        elif spec.kind == "mf":
            g_a, g_src = mf_message_grad(g_r.T, coupling, eta_prev[src].T)
            g_src = g_src.T
        else:
            g_a, g_src, g_rho, g_lam = bp_message_grad(
                g_r.T,
                coupling,
                eta_prev[src].T,
                rt_prev[rev].T,
                lam,
                spec.kappa,
                need_lambda=need_lambda,
            )
            g_rt = g_rho.T[rev] if g_rt is None else g_rt + g_rho.T[rev]
            g_src = g_src.T
            grads["lambda"][_at(params["lambda"], k)] += g_lam
        grads["coupling"][_at(params["coupling"], k)] += (
            (g_a[:E] + g_a[E:]) if spec.symmetric else g_a
        )
        g_eta = S_src @ g_src
    # eta^0 = f^1; r~^0 = 0 is a constant.
    _field_grad(grads, params, 0, XT, g_eta)
    return grads
