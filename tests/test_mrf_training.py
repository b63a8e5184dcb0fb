"""Loss, Adam and the training loop of the unfolded networks."""

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import log_loss

from sklearn_unfold._mrf.graphs import chain_graph, grid_graph, with_latent_units
from sklearn_unfold._mrf.network import NetworkSpec, forward
from sklearn_unfold._mrf.optimizer import Adam
from sklearn_unfold._mrf.training import (
    cross_entropy,
    fit_network,
    init_params,
    loss_and_grad,
    predict_log_odds,
)


def test_cross_entropy_matches_sklearn_log_loss():
    rng = np.random.RandomState(0)
    eta = rng.randn(20, 3) * 4
    Y = (rng.rand(20, 3) > 0.5).astype(float)
    loss, grad = cross_entropy(eta, Y)
    # sum over labels of the per-label mean log-loss
    expected = sum(log_loss(Y[:, j], expit(eta[:, j]), labels=[0, 1]) for j in range(3))
    assert loss == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(grad, (expit(eta) - Y) / 20)
    # Stable for huge log-odds, where probabilities round to 0 or 1.
    loss_big, _ = cross_entropy(np.array([[800.0, -800.0]]), np.array([[0.0, 1.0]]))
    assert loss_big == pytest.approx(1600.0)


def test_adam_first_step_and_convergence():
    params = {"w": np.array([3.0, -2.0, 0.5]), "frozen": np.ones(2)}
    opt = Adam(params, ["w"], learning_rate=0.1)
    opt.step(params, {"w": np.array([10.0, -0.5, 0.0]), "frozen": np.ones(2)})
    # Adam's first step is lr * sign(g) (for |g| >> eps), 0 for g = 0.
    np.testing.assert_allclose(params["w"], [2.9, -1.9, 0.5], atol=1e-6)
    np.testing.assert_array_equal(params["frozen"], 1.0)
    target = np.array([1.0, 2.0, -3.0])
    for _ in range(2000):
        opt.step(params, {"w": 2 * (params["w"] - target), "frozen": np.zeros(2)})
    np.testing.assert_allclose(params["w"], target, atol=1e-3)


def _problem(kind="bp", seed=0, n=120):
    rng = np.random.RandomState(seed)
    graph = chain_graph(4)
    spec = NetworkSpec(graph, 3, kind=kind)
    teacher = init_params(spec, 5, lambdas=np.ones(1), random_state=rng)
    teacher["dense"] *= 20
    teacher["coupling"] += 1.0
    X = rng.randn(n, 5)
    Y = (rng.rand(n, 4) < expit(forward(teacher, spec, X)[0])).astype(float)
    return spec, X, Y


@pytest.mark.parametrize("kind", ["mf", "bp"])
def test_fit_network_decreases_loss_and_is_deterministic(kind):
    spec, X, Y = _problem(kind)
    runs = []
    for _ in range(2):
        params = init_params(spec, 5, schedule="layer", lambdas=np.ones(1),
                             random_state=np.random.RandomState(1))
        start, _ = loss_and_grad(params, spec, X, Y)
        info = fit_network(params, spec, X, Y, trainable=list(params), learning_rate=0.05,
                           max_iter=30, batch_size=40, random_state=np.random.RandomState(2))
        end, _ = loss_and_grad(params, spec, X, Y)
        assert end < 0.8 * start
        assert info["loss_curve"][-1] < info["loss_curve"][0]
        assert info["n_iter"] == len(info["loss_curve"])
        runs.append(params)
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key])


def test_fixed_parameters_are_not_trained():
    spec, X, Y = _problem("bp")
    params = init_params(spec, 5, lambdas=np.array([0.7]), random_state=np.random.RandomState(1))
    before = {k: v.copy() for k, v in params.items()}
    fit_network(params, spec, X, Y, trainable=["coupling"], max_iter=3,
                random_state=np.random.RandomState(0))
    assert not np.array_equal(params["coupling"], before["coupling"])
    for key in ("bias", "dense", "lambda"):
        np.testing.assert_array_equal(params[key], before[key])


def test_early_stopping_keeps_best_validation_parameters():
    spec, X, Y = _problem("mf", n=200)
    params = init_params(spec, 5, random_state=np.random.RandomState(1))
    info = fit_network(params, spec, X, Y, trainable=list(params), learning_rate=0.5,
                       max_iter=40, n_iter_no_change=5, early_stopping=True,
                       validation_fraction=0.25, random_state=np.random.RandomState(3))
    # The kept epoch is the one with the lowest validation cross-entropy (issue 15).
    losses, scores = info["validation_loss_curve"], info["validation_scores"]
    assert len(losses) == len(scores) == info["n_iter"]
    best = int(np.argmin(losses))
    assert info["best_validation_loss"] == losses[best] and info["best_validation_score"] == scores[best]
    # Recompute the validation split the loop drew and score the kept parameters.
    perm = np.random.RandomState(3).permutation(200)[:50]
    kept = np.mean((predict_log_odds(params, spec, X[perm]) > 0) == Y[perm])
    assert kept == pytest.approx(scores[best])


def test_latent_units_are_not_in_the_loss():
    rng = np.random.RandomState(4)
    graph = with_latent_units(grid_graph((2, 2)), 2)
    assert graph.n_nodes == 6 and graph.n_edges == 4 + 8
    spec = NetworkSpec(graph, 2, kind="bp")
    params = init_params(spec, 4, observation="local", lambdas=np.ones(1), random_state=rng)
    assert params["local"].shape == (2, 4)
    X = rng.randn(3, 4)
    Y = (rng.rand(3, 4) > 0.5).astype(float)
    loss, grads = loss_and_grad(params, spec, X, Y)
    eta, _ = forward(params, spec, X)
    assert loss == pytest.approx(cross_entropy(eta[:, :4], Y)[0])
    # Finite differences through the latent units' parameters.
    h = 1e-6
    for key in ("bias", "coupling", "local"):
        for idx in np.ndindex(params[key].shape):
            old = params[key][idx]
            params[key][idx] = old + h
            lp, _ = loss_and_grad(params, spec, X, Y)
            params[key][idx] = old - h
            lm, _ = loss_and_grad(params, spec, X, Y)
            params[key][idx] = old
            assert grads[key][idx] == pytest.approx((lp - lm) / (2 * h), abs=1e-7)


@pytest.mark.parametrize("kind", ["mf", "bp"])
def test_predict_log_odds_chunks_change_nothing_but_rounding(kind):
    # batch_size=None picks the chunk from the graph; any chunk gives the same rows.
    rng = np.random.RandomState(3)
    graph = with_latent_units(grid_graph((4, 4)), 2)
    spec = NetworkSpec(graph, 4, kind=kind)
    params = init_params(spec, 16, observation="local", lambdas=np.ones(1), random_state=rng)
    X = rng.randn(700, 16)
    whole = forward(params, spec, X)[0]
    for batch_size in (None, 1, 33, 1024):
        np.testing.assert_allclose(predict_log_odds(params, spec, X, batch_size), whole, rtol=1e-12, atol=1e-12)
