"""The unfolded network: exact inference on trees, fixed points, limits, gradients.

References are independent of the code under test: brute-force enumeration
of all 2^N states, dense matrix recursions (eq. 20), per-edge loops over the
paper's probability-domain BP update (eq. 21-22), and finite differences.
"""

import itertools

import numpy as np
import pytest
from scipy.special import expit

from sklearn_unfold._mrf.conversions import coupling_matrix
from sklearn_unfold._mrf.graphs import (
    chain_graph,
    empty_graph,
    graph_from_adjacency,
    grid_graph,
)
from sklearn_unfold._mrf.network import NetworkSpec, backward, forward
from sklearn_unfold._mrf.training import init_params, loss_and_grad


def star_graph(n):
    A = np.zeros((n, n))
    A[0, 1:] = A[1:, 0] = 1
    return graph_from_adjacency(A, n)


def random_tree(n, rng):
    A = np.zeros((n, n))
    for i in range(1, n):
        j = rng.randint(i)
        A[i, j] = A[j, i] = 1
    return graph_from_adjacency(A, n)


def brute_force(graph, coupling, field):
    """Exact marginals and max-marginal log-odds of p(h) ~ exp(h'Ah/2 + h'f).

    Parameters: coupling per undirected edge; field of shape (n_samples, N).
    Returns (marginals, max_marginal_log_odds), each (n_samples, N).
    """
    N = graph.n_nodes
    H = np.array(list(itertools.product([0, 1], repeat=N)), dtype=float)
    A = coupling_matrix(coupling, graph)
    energy = 0.5 * np.einsum("si,ij,sj->s", H, A, H)[None, :] + field @ H.T
    p = np.exp(energy - energy.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    marginals = p @ H
    on = np.where(H.T[None] == 1, energy[:, None, :], -np.inf).max(axis=2)
    off = np.where(H.T[None] == 0, energy[:, None, :], -np.inf).max(axis=2)
    return marginals, on - off


def tied_params(graph, rng, n_features, scale=1.5, kind="bp"):
    params = {
        "coupling": scale * rng.randn(1, graph.n_edges),
        "bias": rng.randn(1, graph.n_nodes),
        "dense": rng.randn(1, graph.n_nodes, n_features),
    }
    if kind == "bp":
        params["lambda"] = np.ones(1)
    return params


@pytest.mark.parametrize("make", [chain_graph, star_graph, "tree"])
def test_sum_product_on_tree_gives_exact_marginals(make):
    rng = np.random.RandomState(0)
    graph = random_tree(11, rng) if make == "tree" else make(12 if make is chain_graph else 9)
    X = rng.randn(4, 3)
    params = tied_params(graph, rng, 3)
    # Synchronous BP is exact on a tree after (diameter) iterations.
    spec = NetworkSpec(graph, graph.n_nodes + 1, kind="bp", kappa=1.0)
    eta, _ = forward(params, spec, X)
    field = params["bias"][0] + X @ params["dense"][0].T
    marginals, _ = brute_force(graph, params["coupling"][0], field)
    np.testing.assert_allclose(expit(eta), marginals, atol=1e-8)


@pytest.mark.parametrize("kappa", [np.inf, 1e8])
@pytest.mark.parametrize("make", [chain_graph, star_graph])
def test_max_product_on_tree_gives_exact_max_marginals(make, kappa):
    rng = np.random.RandomState(1)
    graph = make(10)
    X = rng.randn(3, 2)
    params = tied_params(graph, rng, 2)
    spec = NetworkSpec(graph, graph.n_nodes + 1, kind="bp", kappa=kappa)
    eta, _ = forward(params, spec, X)
    field = params["bias"][0] + X @ params["dense"][0].T
    _, max_log_odds = brute_force(graph, params["coupling"][0], field)
    np.testing.assert_allclose(eta, max_log_odds, atol=1e-8 if np.isinf(kappa) else 1e-6)


def test_fewer_layers_than_diameter_is_not_exact():
    # Guards the exactness test against a vacuous pass.
    rng = np.random.RandomState(2)
    graph = chain_graph(12)
    params = tied_params(graph, rng, 1)
    X = rng.randn(2, 1)
    eta, _ = forward(params, NetworkSpec(graph, 3), X)
    marginals, _ = brute_force(graph, params["coupling"][0], params["bias"][0] + X @ params["dense"][0].T)
    assert np.max(np.abs(expit(eta) - marginals)) > 1e-4


def _bp_update_reference(graph, coupling, field, eta, messages):
    """One sum-product update (eq. 21-22) with explicit 2x2 potentials, per edge."""
    out = np.zeros_like(messages)
    E = graph.n_edges
    for e in range(2 * E):
        j, rev = graph.src[e], graph.reverse[e]  # message j -> dst[e]
        a = coupling[e % E]
        q_j = np.stack([1 - expit(eta[:, j]), expit(eta[:, j])], axis=1)
        m_ij = np.stack([1 - expit(messages[:, rev]), expit(messages[:, rev])], axis=1)
        cavity = q_j / m_ij
        m = [(cavity * np.exp(a * h_i * np.array([0.0, 1.0]))).sum(axis=1) for h_i in (0, 1)]
        out[:, e] = np.log(m[1]) - np.log(m[0])
    beliefs = field + graph.sum_incoming(out)  # eq. (21) as log-odds
    return out, beliefs


def test_loopy_bp_reaches_a_fixed_point():
    rng = np.random.RandomState(3)
    graph = grid_graph((3, 3))
    X = rng.randn(3, 2)
    params = tied_params(graph, rng, 2, scale=1.2)
    params["dense"] *= 0.3  # weak evidence: loops matter
    params["schedule"] = np.zeros((1, 1))  # alpha = 1/2 damping
    eta, trace = forward(params, NetworkSpec(graph, 300, kind="bp"), X)
    messages = trace.messages[-1]
    field = params["bias"][0] + X @ params["dense"][0].T
    ref_messages, ref_eta = _bp_update_reference(graph, params["coupling"][0], field, eta, messages)
    np.testing.assert_allclose(ref_messages, messages, atol=1e-9)
    np.testing.assert_allclose(ref_eta, eta, atol=1e-9)
    # A loopy graph: the fixed point is not the exact marginal distribution.
    marginals, _ = brute_force(graph, params["coupling"][0], field)
    assert np.max(np.abs(expit(eta) - marginals)) > 1e-5


def test_lambda_to_zero_reproduces_mean_field_network():
    rng = np.random.RandomState(4)
    graph = grid_graph((3, 3))
    spec_mf = NetworkSpec(graph, 4, kind="mf")
    params = init_params(spec_mf, 9, observation="local+dense", schedule="edge", random_state=rng)
    for key in params:
        params[key] += rng.randn(*params[key].shape)
    X = rng.randn(5, 9)
    eta_mf, _ = forward(params, spec_mf, X)
    spec_bp = NetworkSpec(graph, 4, kind="bp")
    eta_0, _ = forward({**params, "lambda": np.zeros(1)}, spec_bp, X)
    np.testing.assert_allclose(eta_0, eta_mf, rtol=1e-14, atol=1e-14)
    eta_small, _ = forward({**params, "lambda": np.full(4, 1e-9)}, spec_bp, X)
    np.testing.assert_allclose(eta_small, eta_mf, atol=1e-7)
    eta_one, _ = forward({**params, "lambda": np.ones(1)}, spec_bp, X)
    assert np.max(np.abs(eta_one - eta_mf)) > 1e-2


def test_mean_field_network_is_equation_20():
    # mu^k = logistic(A^k mu^(k-1) + b^k + C^k v), mu^0 = logistic(b^1 + C^1 v).
    rng = np.random.RandomState(5)
    graph = grid_graph((2, 3), 8)
    K, F = 4, 6
    spec = NetworkSpec(graph, K, kind="mf")
    params = init_params(spec, F, observation="local+dense", random_state=rng)
    for key in params:
        params[key] += rng.randn(*params[key].shape)
    X = rng.randn(7, F)
    eta, _ = forward(params, spec, X)

    def field(k):
        C = params["dense"][k] + np.diag(params["local"][k])  # local weight = diagonal C
        return params["bias"][k] + X @ C.T

    mu = expit(field(0))
    for k in range(K):
        A = coupling_matrix(params["coupling"][k], graph)
        mu = expit(mu @ A.T + field(k))
    np.testing.assert_allclose(expit(eta), mu, rtol=1e-12)


def test_one_layer_without_edges_is_logistic_regression():
    rng = np.random.RandomState(6)
    graph = empty_graph(3)
    spec = NetworkSpec(graph, 1, kind="bp")
    params = {"coupling": np.zeros((1, 0)), "bias": rng.randn(1, 3),
              "dense": rng.randn(1, 3, 4), "lambda": np.ones(1)}
    X = rng.randn(5, 4)
    eta, _ = forward(params, spec, X)
    np.testing.assert_allclose(expit(eta), expit(X @ params["dense"][0].T + params["bias"][0]))


def test_tied_parameters_equal_repeated_untied_ones():
    rng = np.random.RandomState(7)
    graph = grid_graph((2, 2))
    spec = NetworkSpec(graph, 3, kind="bp")
    tied = init_params(spec, 4, observation="local", schedule="layer", lambdas=np.array([0.7]),
                       tied=("coupling", "bias", "local", "schedule"), random_state=rng)
    assert all(v.shape[0] == 1 for v in tied.values())
    untied = {k: np.repeat(v, 3, axis=0) for k, v in tied.items()}
    X = rng.randn(4, 4)
    Y = (rng.rand(4, 4) > 0.5).astype(float)
    eta_t, _ = forward(tied, spec, X)
    eta_u, _ = forward(untied, spec, X)
    np.testing.assert_allclose(eta_t, eta_u, rtol=1e-14)
    _, g_t = loss_and_grad(tied, spec, X, Y)
    _, g_u = loss_and_grad(untied, spec, X, Y)
    for key in tied:
        np.testing.assert_allclose(g_t[key][0], g_u[key].sum(axis=0), rtol=1e-10, atol=1e-14)


def _check_gradients(params, spec, X, Y, l2=0.0, h=1e-6, rtol=1e-5):
    _, grads = loss_and_grad(params, spec, X, Y, l2=l2)
    for key, value in params.items():
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            old = value[idx]
            value[idx] = old + h
            lp, _ = loss_and_grad(params, spec, X, Y, l2=l2)
            value[idx] = old - h
            lm, _ = loss_and_grad(params, spec, X, Y, l2=l2)
            value[idx] = old
            numeric[idx] = (lp - lm) / (2 * h)
        scale = max(np.max(np.abs(numeric)), 1e-3)
        np.testing.assert_allclose(grads[key], numeric, atol=rtol * scale, err_msg=key)


CONFIGS = [
    # kind, kappa, schedule, symmetric, observation, tied, lambdas
    ("mf", 1.0, "none", True, "dense", (), None),
    ("mf", 1.0, "edge", False, "local+dense", ("bias",), None),
    ("mf", 1.0, "layer", True, "local", ("coupling", "schedule"), None),
    ("bp", 1.0, "none", True, "local+dense", (), [0.8]),
    ("bp", 1.0, "layer", False, "dense", ("dense",), [0.6, 1.3, 0.05]),
    ("bp", 1.0, "edge", True, "local", ("local",), [1.0]),
    ("bp", 2.5, "layer", True, "local+dense", (), [0.6, 1.3, 0.05]),
    ("bp", 0.6, "none", False, "dense", (), [1e-7]),
    ("bp", np.inf, "edge", True, "local", (), [0.6, 1.3, 0.4]),
]


@pytest.mark.parametrize("kind, kappa, schedule, symmetric, observation, tied, lambdas", CONFIGS)
def test_network_gradients_match_finite_differences(
    kind, kappa, schedule, symmetric, observation, tied, lambdas
):
    rng = np.random.RandomState(8)
    graph = grid_graph((2, 3), 8 if kind == "bp" else 4)
    spec = NetworkSpec(graph, 3, kind=kind, kappa=kappa, symmetric=symmetric)
    params = init_params(spec, 6, observation=observation, schedule=schedule,
                         lambdas=lambdas and np.array(lambdas), tied=tied, random_state=rng)
    for key in params:
        if key != "lambda":
            params[key] += 0.5 * rng.randn(*params[key].shape)
    X = rng.randn(4, 6)
    Y = (rng.rand(4, 6) > 0.5).astype(float)
    _check_gradients(params, spec, X, Y, l2=0.1)


def test_backward_matches_finite_differences_of_output():
    # The raw backward pass, for an arbitrary linear function of eta^K.
    rng = np.random.RandomState(9)
    graph = chain_graph(4)
    spec = NetworkSpec(graph, 5, kind="bp")
    params = init_params(spec, 2, schedule="edge", lambdas=np.array([1.0]), random_state=rng)
    X = rng.randn(3, 2)
    W = rng.randn(3, 4)
    eta, trace = forward(params, spec, X)
    grads = backward(params, spec, X, trace, W)
    h = 1e-6
    for key in ("coupling", "dense", "schedule", "lambda"):
        value = params[key]
        for idx in np.ndindex(value.shape):
            old = value[idx]
            value[idx] = old + h
            fp = np.sum(W * forward(params, spec, X)[0])
            value[idx] = old - h
            fm = np.sum(W * forward(params, spec, X)[0])
            value[idx] = old
            assert abs(grads[key][idx] - (fp - fm) / (2 * h)) < 1e-6


@pytest.mark.parametrize("kind", ["mf", "bp"])
def test_float32_forward_and_backward(kind):
    rng = np.random.RandomState(10)
    graph = grid_graph((3, 3))
    spec = NetworkSpec(graph, 3, kind=kind)
    p64 = init_params(spec, 9, observation="local+dense", schedule="layer",
                      lambdas=np.array([0.5]), random_state=rng)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    X = rng.randn(5, 9)
    Y = (rng.rand(5, 9) > 0.5).astype(float)
    eta32, _ = forward(p32, spec, X.astype(np.float32))
    assert eta32.dtype == np.float32
    np.testing.assert_allclose(eta32, forward(p64, spec, X)[0], atol=1e-5)
    l32, g32 = loss_and_grad(p32, spec, X.astype(np.float32), Y.astype(np.float32))
    l64, g64 = loss_and_grad(p64, spec, X, Y)
    assert abs(l32 - l64) < 1e-4
    for key in g64:
        assert g32[key].dtype == np.float32
        np.testing.assert_allclose(g32[key], g64[key], atol=1e-4)


# -- the fast paths (issue 13): fused BP kernels, node-level mean field --------
def _check_gradients_fixed_lambda(params, spec, X, Y, h=1e-6, rtol=1e-5):
    """Finite differences with ``need_lambda=False`` (what fit uses for a fixed lambda)."""
    _, grads = loss_and_grad(params, spec, X, Y, l2=0.1, need_lambda=False)
    for key, value in params.items():
        if key == "lambda":
            np.testing.assert_array_equal(grads[key], 0.0)
            continue
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            old = value[idx]
            value[idx] = old + h
            lp, _ = loss_and_grad(params, spec, X, Y, l2=0.1, need_lambda=False)
            value[idx] = old - h
            lm, _ = loss_and_grad(params, spec, X, Y, l2=0.1, need_lambda=False)
            value[idx] = old
            numeric[idx] = (lp - lm) / (2 * h)
        scale = max(np.max(np.abs(numeric)), 1e-3)
        np.testing.assert_allclose(grads[key], numeric, atol=rtol * scale, err_msg=key)


@pytest.mark.parametrize(
    "kappa, schedule, symmetric, lambdas",
    [(1.0, "none", True, [1.0]), (1.0, "edge", False, [0.7, 1.0, 1.3]),
     (2.5, "layer", True, [0.6]), (0.6, "none", False, [1e-7])],
)
def test_fixed_lambda_gradients_match_finite_differences(kappa, schedule, symmetric, lambdas):
    # need_lambda=False takes the fused BP backward kernel.
    rng = np.random.RandomState(11)
    graph = grid_graph((2, 3), 8)
    spec = NetworkSpec(graph, 3, kind="bp", kappa=kappa, symmetric=symmetric)
    params = init_params(spec, 6, observation="local+dense", schedule=schedule,
                         lambdas=np.array(lambdas), random_state=rng)
    for key in params:
        if key != "lambda":
            params[key] += 0.5 * rng.randn(*params[key].shape)
    X = rng.randn(4, 6)
    Y = (rng.rand(4, 6) > 0.5).astype(float)
    _check_gradients_fixed_lambda(params, spec, X, Y)


@pytest.mark.parametrize("kind", ["mf", "bp"])
def test_fixed_lambda_gradients_equal_full_backward(kind):
    # The fused kernels give the reference backward's gradients (all but lambda).
    rng = np.random.RandomState(12)
    graph = grid_graph((3, 4))
    spec = NetworkSpec(graph, 4, kind=kind)
    params = init_params(spec, 12, observation="local", lambdas=np.ones(1), random_state=rng)
    params["coupling"] += rng.randn(*params["coupling"].shape)
    X = rng.randn(6, 12)
    Y = (rng.rand(6, 12) > 0.5).astype(float)
    _, fast = loss_and_grad(params, spec, X, Y, need_lambda=False)
    _, full = loss_and_grad(params, spec, X, Y, need_lambda=True)
    for key in params:
        if key != "lambda":
            np.testing.assert_allclose(fast[key], full[key], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind", ["mf", "bp"])
def test_trace_messages_of_the_fast_paths(kind):
    # Trace.messages[k] is r~^k of shape (n_samples, 2E), also where the
    # network never forms per-edge arrays (mean field without a schedule).
    rng = np.random.RandomState(13)
    graph = grid_graph((3, 3))
    spec = NetworkSpec(graph, 3, kind=kind)
    params = tied_params(graph, rng, 2, kind=kind)
    X = rng.randn(4, 2)
    eta, trace = forward(params, spec, X)
    assert len(trace.messages) == 4 and len(trace.raw_messages) == 3 and len(trace.eta) == 4
    np.testing.assert_array_equal(trace.messages[0], 0.0)
    for k in range(3):
        m = trace.messages[k + 1]
        assert m.shape == (4, 2 * graph.n_edges)
        np.testing.assert_allclose(trace.eta[k + 1], trace.eta[0] + graph.sum_incoming(m), rtol=1e-12)
    np.testing.assert_array_equal(trace.eta[-1], eta)
    # keep_trace=False keeps the last layer only, as before.
    last, short = forward(params, spec, X, keep_trace=False)
    assert len(short.eta) == len(short.messages) == len(short.raw_messages) == 1
    np.testing.assert_allclose(short.messages[0], trace.messages[-1], rtol=1e-14)
    np.testing.assert_allclose(short.eta[0], eta, rtol=1e-14)


def test_fitted_style_repeated_layers_equal_tied_ones():
    # Constants are cached by layer content: repeated (tied-as-fitted) layers
    # and distinct layers both give the reference result.
    rng = np.random.RandomState(14)
    graph = grid_graph((3, 3))
    spec = NetworkSpec(graph, 3, kind="bp")
    tied = init_params(spec, 9, observation="local", tied=("coupling",), lambdas=np.ones(1),
                       random_state=rng)
    repeated = {**tied, "coupling": np.repeat(tied["coupling"], 3, axis=0), "lambda": np.ones(3)}
    X = rng.randn(5, 9)
    np.testing.assert_allclose(forward(repeated, spec, X)[0], forward(tied, spec, X)[0], rtol=1e-14)
    distinct = {**repeated, "coupling": repeated["coupling"] * np.array([[1.0], [0.5], [2.0]])}
    eta = forward(distinct, spec, X)[0]
    # Reference: the per-edge message function, layer by layer.
    from sklearn_unfold._mrf.belief_propagation import bp_message

    def field(k):
        return distinct["bias"][k] + distinct["local"][k] * X

    ref, rt = field(0), np.zeros((5, 2 * graph.n_edges))
    for k in range(3):
        c = np.concatenate([distinct["coupling"][k]] * 2)
        rt = bp_message(c, ref[:, graph.src], rt[:, graph.reverse], 1.0)
        ref = field(k) + graph.sum_incoming(rt)
    np.testing.assert_allclose(eta, ref, rtol=1e-12)
    assert np.max(np.abs(eta - forward(tied, spec, X)[0])) > 1e-3


# -- ratio-domain sum-product BP (issue 13, goal 5) ----------------------------
def _latent_spec(n_layers=3, symmetric=True, n_latent=2):
    from sklearn_unfold._mrf.graphs import with_latent_units

    return NetworkSpec(with_latent_units(grid_graph((2, 3)), n_latent), n_layers, kind="bp",
                       symmetric=symmetric)


def _reference_bp(params, spec, X):
    """Layer by layer with the per-edge message function, in the public edge order."""
    from sklearn_unfold._mrf.belief_propagation import bp_message
    from sklearn_unfold._mrf.network import layer_field

    graph, K = spec.graph, spec.n_layers
    eta = layer_field(params, 0, X)
    rt = np.zeros((X.shape[0], 2 * graph.n_edges))
    messages = []
    for k in range(K):
        c = params["coupling"][k if params["coupling"].shape[0] > 1 else 0]
        c = np.concatenate([c, c]) if spec.symmetric else c
        rt = bp_message(c, eta[:, graph.src], rt[:, graph.reverse], 1.0)
        eta = layer_field(params, k, X) + graph.sum_incoming(rt)
        messages.append(rt)
    return eta, messages


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("tied", [(), ("coupling",)])
def test_ratio_network_equals_per_edge_reference(symmetric, tied):
    # Latent block and base edges, both coupling signs, beliefs past the clip (+-60).
    rng = np.random.RandomState(15)
    spec = _latent_spec(symmetric=symmetric)
    params = init_params(spec, 6, observation="local+dense", tied=tied, lambdas=np.ones(1),
                         random_state=rng)
    params["coupling"] = 3 * rng.randn(*params["coupling"].shape)
    params["local"] *= 40
    X = rng.randn(5, 6)
    eta, trace = forward(params, spec, X)
    ref, messages = _reference_bp(params, spec, X)
    assert trace.ratio_t  # the ratio-domain network ran
    np.testing.assert_allclose(eta, ref, rtol=1e-10, atol=1e-10)
    for got, want in zip(trace.messages[1:], messages):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(trace.messages[0], 0.0)
    # float32 agrees with the float64 reference to float32 rounding.
    p32 = {key: value.astype(np.float32) for key, value in params.items()}
    eta32 = forward(p32, spec, X.astype(np.float32))[0]
    assert eta32.dtype == np.float32
    np.testing.assert_allclose(eta32, ref, rtol=1e-5, atol=1e-5 * np.max(np.abs(ref)))


def test_ratio_network_only_for_plain_sum_product():
    # Large couplings, another lambda or a schedule take the log-domain kernels.
    rng = np.random.RandomState(16)
    spec = _latent_spec()
    params = init_params(spec, 6, observation="local", lambdas=np.ones(1), random_state=rng)
    X = rng.randn(3, 6)
    assert forward(params, spec, X)[1].ratio_t
    big = {**params, "coupling": params["coupling"] + 25.0}
    eta, trace = forward(big, spec, X)
    assert not trace.ratio_t
    np.testing.assert_allclose(eta, _reference_bp(big, spec, X)[0], rtol=1e-10)
    for other in ({**params, "lambda": np.array([0.9])}, {**params, "schedule": np.zeros((1, 1))}):
        assert not forward(other, spec, X)[1].ratio_t


@pytest.mark.parametrize("symmetric, tied", [(True, ("coupling",)), (False, ())])
def test_ratio_network_gradients_match_finite_differences(symmetric, tied):
    rng = np.random.RandomState(17)
    spec = _latent_spec(symmetric=symmetric)
    params = init_params(spec, 6, observation="local+dense", tied=tied, lambdas=np.ones(1),
                         random_state=rng)
    for key in params:
        if key != "lambda":
            params[key] += 0.5 * rng.randn(*params[key].shape)
    X = rng.randn(4, 6)
    Y = (rng.rand(4, 6) > 0.5).astype(float)
    assert forward(params, spec, X)[1].ratio_t
    _check_gradients_fixed_lambda(params, spec, X, Y)
    # need_lambda=True: the reference backward on the same trace, lambda included.
    _, fast = loss_and_grad(params, spec, X, Y, need_lambda=False)
    _, full = loss_and_grad(params, spec, X, Y, need_lambda=True)
    for key in params:
        if key != "lambda":
            np.testing.assert_allclose(fast[key], full[key], rtol=1e-10, atol=1e-13)
    _check_gradients(params, spec, X, Y)


def test_ratio_network_chunks_share_buffers():
    # predict_log_odds reuses constants and work buffers across chunks: same result.
    from sklearn_unfold._mrf.training import predict_log_odds

    rng = np.random.RandomState(18)
    spec = _latent_spec(n_layers=4)
    params = init_params(spec, 6, observation="local", lambdas=np.ones(1), random_state=rng)
    params["coupling"] += rng.randn(*params["coupling"].shape)
    X = rng.randn(23, 6)
    whole = forward(params, spec, X)[0]
    for batch_size in (1, 4, 7, 23):
        np.testing.assert_allclose(predict_log_odds(params, spec, X, batch_size=batch_size), whole,
                                   rtol=1e-12, atol=1e-12)


# -- ratio-domain inference: latent -> node sums as logs of products -----------
def _strong_latent_params(spec, rng, magnitude, dtype):
    """Couplings of size ``magnitude`` (both signs), latent units strongly on.

    Latent beliefs near +60 make ``x = e^(-d)`` tiny on the latent -> node
    edges, so those messages are close to ``e^(+-magnitude)``: the products of
    many of them leave the float range unless they are grouped.
    """
    n_pixels = spec.graph.n_nodes - _latent_count(spec)
    params = init_params(spec, n_pixels, observation="local", lambdas=np.ones(1), random_state=rng)
    params["coupling"] = magnitude * np.where(rng.rand(*params["coupling"].shape) < 0.95, 1.0, -1.0)
    params["bias"][:, n_pixels:] = 60.0
    return {key: value.astype(dtype) for key, value in params.items()}


def _latent_count(spec):
    from sklearn_unfold._mrf.network import _ratio_layout

    return _ratio_layout(spec.graph).L


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("magnitude, n_latent", [(0.0, 5), (1.0, 5), (19.9, 40), (19.9, 3)])
def test_ratio_inference_sums_equal_per_edge_logs(dtype, rtol, magnitude, n_latent):
    # keep_trace=False sums the latent -> node messages as logs of products in
    # groups sized from max |a|; keep_trace=True (training) sums one log per
    # edge.  |a| = 19.9 with 40 latent units: the product of all 40 messages
    # into a pixel (up to e^796) overflows float32 and float64, so it must be
    # split (groups of 3 in float32, 26 in float64).
    from sklearn_unfold._mrf.network import _product_group, _ratio_constants

    rng = np.random.RandomState(19)
    spec = _latent_spec(n_layers=4, n_latent=n_latent)
    params = _strong_latent_params(spec, rng, magnitude, dtype)
    X = rng.randn(7, 6).astype(dtype)
    eta, trace = forward(params, spec, X, keep_trace=False)
    per_edge = forward(params, spec, X, keep_trace=True)[0]
    assert trace.ratio_t and eta.dtype == dtype
    assert np.all(np.isfinite(eta))
    scale = np.max(np.abs(per_edge))
    np.testing.assert_allclose(eta, per_edge, rtol=rtol, atol=rtol * scale)
    # The float64 reference (log-domain messages) itself differs by ~4e-11 of
    # the scale at |a| = 19.9, before this change as after.
    ref = _reference_bp({k: v.astype(np.float64) for k, v in params.items()}, spec, X.astype(np.float64))[0]
    ref_tol = 1e-4 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(eta, ref, rtol=ref_tol, atol=ref_tol * scale)
    group = _ratio_constants({}, spec, params, dtype, 7)[0]["block"][2]
    assert group == _product_group(dtype(magnitude), dtype)
    if magnitude == 0.0:
        # m = 1 exactly: no message changes a belief.
        field = params["bias"][-1] + np.pad(params["local"][-1] * X, ((0, 0), (0, n_latent)))
        np.testing.assert_array_equal(eta, field.astype(dtype))
        assert group > n_latent
    elif magnitude == 19.9 and n_latent == 40:
        assert 2 <= group < n_latent
        # the ungrouped product of the messages into a pixel overflows
        m_block = trace.ratio_t[-1][2]
        with np.errstate(over="ignore"):
            assert np.any(np.isinf(np.multiply.reduce(m_block[0], axis=1)))


def test_product_group_bounds():
    from sklearn_unfold._mrf.network import _product_group

    assert _product_group(np.float32(19.9), np.float32) == 3
    assert _product_group(np.float32(1.0), np.float32) == 65
    assert _product_group(19.9, np.float64) == 26
    assert _product_group(0.0, np.float32) > 10**9
    for dtype in (np.float32, np.float64):
        for amax in (0.3, 1.0, 7.5, 19.99, 20.0):
            g = _product_group(amax, dtype)
            # g factors of up to e^amax stay normal and finite, 1 + 4/3 g do not fit the 3/4 margin
            assert g >= 2
            info = np.finfo(dtype)
            assert np.exp(g * amax) < info.max and np.exp(-g * amax) > info.tiny
            assert (g + 1) * amax > 0.75 * min(np.log(info.max), -np.log(info.tiny))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("group", [1, 2, 3, 7, 40, pytest.param(2**62, id="unbounded")])
def test_block_log_sums_equal_sums_of_logs(dtype, group):
    # Direct check of every grouping, including one log per edge (group < 2)
    # and groups that do not divide L; messages near e^(+-19.9) so that an
    # ungrouped product of the 40 factors (e^796) would overflow.
    from sklearn_unfold._mrf.network import _block_log_sums

    rng = np.random.RandomState(20)
    n, L, V = 3, 40, 5
    logm = (19.9 * np.where(rng.rand(2, n, L, V) < 0.8, 1.0, -1.0) * rng.uniform(0.9, 1.0, (2, n, L, V)))
    m = np.exp(logm).astype(dtype)
    work, out = np.empty_like(m), np.empty((n, V), dtype=dtype)
    into_nodes, into_latent = _block_log_sums(m, min(group, _max_group(dtype)), work, out)
    want = np.log(m.astype(np.float64))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(into_nodes, want[0].sum(axis=1), rtol=rtol)
    np.testing.assert_allclose(into_latent, want[1].sum(axis=2), rtol=rtol)
    assert into_nodes.dtype == into_latent.dtype == dtype


def _max_group(dtype):
    from sklearn_unfold._mrf.network import _product_group

    return _product_group(19.9, dtype)


def test_ratio_constants_follow_in_place_coupling_updates():
    # The constants kept in ``buffers`` are compared with the couplings by
    # value: an in-place update (as the optimizer makes) is seen.
    rng = np.random.RandomState(21)
    spec = _latent_spec(n_layers=3)
    params = init_params(spec, 6, observation="local", lambdas=np.ones(1), random_state=rng)
    params["coupling"] += rng.randn(*params["coupling"].shape)
    X = rng.randn(4, 6)
    buffers = {}
    first = forward(params, spec, X, keep_trace=False, buffers=buffers)[0].copy()
    params["coupling"] *= 2.0
    second = forward(params, spec, X, keep_trace=False, buffers=buffers)[0]
    np.testing.assert_allclose(second, _reference_bp(params, spec, X)[0], rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(second - first)) > 1e-2


def test_ratio_inference_trace_keeps_last_messages():
    # Without keep_trace the message buffers are reused in place; the trace
    # still holds the last layer's messages.
    rng = np.random.RandomState(22)
    spec = _latent_spec(n_layers=3)
    params = init_params(spec, 6, observation="local", lambdas=np.ones(1), random_state=rng)
    params["coupling"] += rng.randn(*params["coupling"].shape)
    X = rng.randn(4, 6)
    last = forward(params, spec, X, keep_trace=False)[1].messages
    assert len(last) == 1
    np.testing.assert_allclose(last[0], _reference_bp(params, spec, X)[1][-1], rtol=1e-10, atol=1e-12)
