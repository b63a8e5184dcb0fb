"""NeuralNMF: forward pass, exact gradients, descent, and the scikit-learn API."""

import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import nnls as scipy_nnls
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_unfold.neural_nmf import NeuralNMF, cost, forward, gradient

# Most fits here stop at a small max_iter on purpose, to stay fast.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def scipy_q(X, A):
    """Reference q(X, A): one scipy.optimize.nnls call per column."""
    return np.stack([scipy_nnls(A, X[:, j])[0] for j in range(X.shape[1])], axis=1)


def scipy_cost(X, factors, B, Y, mask, weights):
    """Reference training cost, from scipy's NNLS and dense formulas."""
    S = X
    for A in factors:
        S = scipy_q(S, A)
    model = np.linalg.multi_dot([*factors, S]) if len(factors) > 1 else factors[0] @ S
    value = 0.5 * weights[0] * np.sum((X - model) ** 2)
    if B is not None:
        value += 0.5 * weights[1] * np.sum((mask * (Y - B @ S)) ** 2)
    return value


def hierarchical_data(n_per_topic=12, seed=0):
    """Small data with 9 -> 4 -> 2 nested topics; labels are the 2 top topics.

    Sample columns of topic j put weight 1 on topic j's features, 0.5 on its
    super-topic's and 0.25 on its top topic's, plus a little noise.
    """
    rng = np.random.default_rng(seed)
    sub_to_super = np.array([0, 0, 0, 1, 1, 2, 2, 3, 3])
    super_to_top = np.array([0, 0, 1, 1])
    feat = np.repeat(np.arange(9), 4)  # 4 features per subtopic
    topics = np.repeat(np.arange(9), n_per_topic)
    same_sub = feat[:, None] == topics[None, :]
    same_super = sub_to_super[feat][:, None] == sub_to_super[topics][None, :]
    same_top = super_to_top[sub_to_super[feat]][:, None] == super_to_top[sub_to_super[topics]][None, :]
    pattern = np.where(same_sub, 1.0, np.where(same_super, 0.5, np.where(same_top, 0.25, 0.0)))
    X = pattern * rng.uniform(0.5, 1.5, size=topics.size) + 0.02 * rng.random(pattern.shape)
    y = super_to_top[sub_to_super[topics]]
    return X.T, y  # scikit-learn orientation


# ---------------------------------------------------------------- sklearn API


@parametrize_with_checks(
    [
        NeuralNMF(ranks=(3, 2), max_iter=20, random_state=0),
        NeuralNMF(ranks=2, init="random", max_iter=10, random_state=0),
    ]
)
def test_sklearn_compatible(estimator, check):
    # Every common check passes; none is expected to fail.
    check(estimator)


# ------------------------------------------------------------ forward/gradient


def _problem(n_layers, mode, seed=0):
    """A small well-conditioned problem in the poster's orientation."""
    rng = np.random.default_rng(seed)
    ranks = [5, 3, 2][:n_layers]
    sizes = [7, *ranks]
    factors = [rng.uniform(0.2, 1.0, size=(r, c)) for r, c in itertools.pairwise(sizes)]
    X = rng.uniform(0.0, 1.0, size=(7, 8))
    if mode == "unsupervised":
        return X, factors, None, None, None
    labels = rng.integers(0, 2, size=8)
    Y = np.zeros((2, 8))
    Y[labels, np.arange(8)] = 1.0
    mask = np.ones(8, dtype=bool) if mode == "supervised" else rng.random(8) < 0.5
    B = rng.uniform(0.2, 1.0, size=(2, ranks[-1]))
    return X, factors, B, Y, mask


def test_forward_is_layerwise_scipy_nnls():
    X, factors, *_ = _problem(3, "unsupervised")
    S, P = forward(X, factors)
    ref = X
    for S_i, P_i, A in zip(S, P, factors, strict=True):
        ref = scipy_q(ref, A)
        assert_allclose(S_i, ref, rtol=1e-10, atol=1e-12)
        assert_array_equal(P_i, S_i > 0)


@pytest.mark.parametrize("n_layers", [1, 2, 3])
@pytest.mark.parametrize("mode", ["unsupervised", "semi-supervised", "supervised"])
def test_gradient_matches_finite_differences(n_layers, mode):
    X, factors, B, Y, mask = _problem(n_layers, mode)
    weights = (0.7, 1.3)
    S, P = forward(X, factors)
    grads, grad_B = gradient(X, factors, S, P, B, Y, mask, weights)
    assert_allclose(cost(X, factors, S[-1], B, Y, mask, weights), scipy_cost(X, factors, B, Y, mask, weights))

    h = 1e-6

    def supports(fs):
        return [s > 0 for s in forward(X, fs)[0]]

    base = supports(factors)
    blocks = factors + ([B] if B is not None else [])
    analytic = grads + ([grad_B] if B is not None else [])
    for b, (V, G) in enumerate(zip(blocks, analytic, strict=True)):
        fd = np.zeros_like(V)
        for idx in np.ndindex(V.shape):
            vals = []
            for sign in (1, -1):
                trial = [W.copy() for W in blocks]
                trial[b][idx] += sign * h
                fs, Bt = trial[: len(factors)], (trial[-1] if B is not None else None)
                # FD only measures the derivative where the supports are fixed.
                assert all(np.array_equal(s0, s1) for s0, s1 in zip(base, supports(fs), strict=True))
                vals.append(scipy_cost(X, fs, Bt, Y, mask, weights))
            fd[idx] = (vals[0] - vals[1]) / (2 * h)
        assert_allclose(G, fd, rtol=1e-5, atol=1e-8, err_msg=f"block {b}")


def test_one_layer_gradient_is_the_envelope_formula():
    # For one layer, S is optimal for A, so dC/dA = -w R S^T (variable projection).
    X, factors, *_ = _problem(1, "unsupervised")
    S, P = forward(X, factors)
    grads, _ = gradient(X, factors, S, P, None, None, None, (2.0, 0.0))
    assert_allclose(grads[0], -2.0 * (X - factors[0] @ S[-1]) @ S[-1].T, rtol=1e-10, atol=1e-12)


def test_unlabeled_columns_do_not_enter_the_cost():
    X, factors, B, Y, mask = _problem(2, "semi-supervised")
    S, P = forward(X, factors)
    Y2 = Y.copy()
    Y2[:, ~mask] = 7.0
    g1, gB1 = gradient(X, factors, S, P, B, Y, mask, (1.0, 1.0))
    g2, gB2 = gradient(X, factors, S, P, B, Y2, mask, (1.0, 1.0))
    assert cost(X, factors, S[-1], B, Y, mask, (1.0, 1.0)) == cost(X, factors, S[-1], B, Y2, mask, (1.0, 1.0))
    for a, b in zip([*g1, gB1], [*g2, gB2], strict=True):
        assert_array_equal(a, b)


# ------------------------------------------------------------------- training


@pytest.mark.parametrize("mode", ["unsupervised", "semi-supervised", "supervised"])
def test_objective_decreases(mode):
    X, y = hierarchical_data()
    if mode == "unsupervised":
        y = None
    elif mode == "semi-supervised":
        y = np.where(np.random.default_rng(0).random(y.size) < 0.4, y, -1)
    model = NeuralNMF(ranks=[9, 4, 2], max_iter=40, tol=0, random_state=0).fit(X, y)
    curve = np.array(model.loss_curve_)
    assert curve.size == model.n_iter_ + 1 == 41
    assert np.all(np.diff(curve) <= 1e-12 * curve[0])
    assert curve[-1] < 0.9 * curve[0]


def test_loss_curve_is_the_training_cost():
    # The last reported cost is the cost of the fitted factors, recomputed independently.
    X, y = hierarchical_data()
    model = NeuralNMF(ranks=[4, 2], max_iter=15, random_state=0).fit(X, y)
    Xp = X.T
    Y = np.stack([y == c for c in model.classes_]).astype(float)
    weights = (1 / np.sum(Xp**2), model.label_weight / y.size)
    ref = scipy_cost(Xp, model.factors_, model.label_factor_, Y, np.ones(y.size, bool), weights)
    assert_allclose(model.loss_curve_[-1], ref, rtol=1e-9)


def test_one_layer_improves_on_sklearn_nmf():
    # The default start is scikit-learn's NMF; descent can only lower the error.
    X, _ = hierarchical_data()
    nmf = NMF(n_components=4, init="nndsvda", max_iter=400, random_state=0).fit(X)
    model = NeuralNMF(ranks=[4], max_iter=50, random_state=0).fit(X)
    assert model.reconstruction_err_ <= nmf.reconstruction_err_ * (1 + 1e-9)


def test_deeper_layers_improve_on_hierarchical_nmf():
    X, _ = hierarchical_data()
    model = NeuralNMF(ranks=[9, 4, 2], max_iter=60, tol=0, random_state=0).fit(X)
    start, end = np.sqrt(2 * model.loss_curve_[0]), np.sqrt(2 * model.loss_curve_[-1])
    assert end < 0.95 * start  # relative reconstruction errors


def test_transform_is_the_exact_layered_nnls():
    X, y = hierarchical_data()
    model = NeuralNMF(ranks=[9, 4, 2], max_iter=10, random_state=0).fit(X, y)
    all_S = model.transform_all(X[:20])
    assert [S.shape for S in all_S] == [(20, 9), (20, 4), (20, 2)]
    ref = X[:20].T
    for S, A in zip(all_S, model.factors_, strict=True):
        ref = scipy_q(ref, A)
        assert_allclose(S, ref.T, rtol=1e-9, atol=1e-12)
    assert_array_equal(model.transform(X[:20]), all_S[-1])
    assert_allclose(model.components_, np.linalg.multi_dot(model.factors_).T)
    assert_allclose(model.inverse_transform(all_S[-1]), all_S[-1] @ model.components_)
    R = X - model.inverse_transform(model.transform(X))
    assert_allclose(model.reconstruction_err_, np.linalg.norm(R), rtol=1e-9)


def test_supervised_and_semi_supervised_classify_hierarchical_data():
    X, y = hierarchical_data()
    sup = NeuralNMF(ranks=[9, 4, 2], max_iter=60, random_state=0).fit(X, y)
    assert np.mean(sup.predict(X) == y) >= 0.95
    labeled = np.random.default_rng(1).random(y.size) < 0.4
    semi = NeuralNMF(ranks=[9, 4, 2], max_iter=60, random_state=0).fit(X, np.where(labeled, y, -1))
    assert_array_equal(semi.classes_, [0, 1])
    assert np.mean(semi.predict(X[~labeled]) == y[~labeled]) >= 0.9
    assert semi.decision_function(X).shape == (y.size, 2)


def test_string_labels():
    X, y = hierarchical_data()
    names = np.array(["left", "right"])[y]
    model = NeuralNMF(ranks=[4, 2], max_iter=30, random_state=0).fit(X, names)
    assert_array_equal(model.classes_, ["left", "right"])
    assert np.mean(model.predict(X) == names) >= 0.9


@pytest.mark.parametrize("kwargs, y", [({}, None), ({"label_weight": 0.0}, "labels")])
def test_predict_needs_labels(kwargs, y):
    X, labels = hierarchical_data()
    model = NeuralNMF(ranks=[3], max_iter=5, **kwargs).fit(X, labels if y == "labels" else None)
    assert model.label_factor_ is None and model.classes_ is None
    with pytest.raises(ValueError, match="fitted without labels"):
        model.predict(X)


def test_random_state_gives_bit_identical_results():
    X, y = hierarchical_data()
    fits = [NeuralNMF(ranks=[5, 2], init="random", max_iter=15, random_state=3).fit(X, y) for _ in range(2)]
    for A, B in zip(fits[0].factors_, fits[1].factors_, strict=True):
        assert_array_equal(A, B)
    assert_array_equal(fits[0].label_factor_, fits[1].label_factor_)
    assert fits[0].loss_curve_ == fits[1].loss_curve_
    other = NeuralNMF(ranks=[5, 2], init="random", max_iter=15, random_state=4).fit(X, y)
    assert not np.array_equal(other.factors_[0], fits[0].factors_[0])


def test_float32_in_float32_out():
    X, y = hierarchical_data()
    model = NeuralNMF(ranks=[4, 2], max_iter=10, random_state=0).fit(X.astype(np.float32), y)
    assert model.transform(X.astype(np.float32)).dtype == np.float32
    assert all(S.dtype == np.float32 for S in model.transform_all(X.astype(np.float32)))
    assert model.factors_[0].dtype == np.float32
    assert model.transform(X).dtype == np.float64


def test_verbose(capsys):
    X, _ = hierarchical_data()
    NeuralNMF(ranks=[3], max_iter=3, tol=0, verbose=2, random_state=0).fit(X)
    out = capsys.readouterr().out
    assert "iteration 1, cost" in out and "iteration 3, cost" in out and "stopped after 3" in out


def test_convergence_warning():
    X, _ = hierarchical_data()
    with pytest.warns(ConvergenceWarning, match="Maximum number of iterations"):
        NeuralNMF(ranks=[3], max_iter=1).fit(X)


def test_input_is_not_modified():
    X, y = hierarchical_data()
    X0, y0 = X.copy(), y.copy()
    NeuralNMF(ranks=[3, 2], max_iter=5, random_state=0).fit(X, y)
    assert_array_equal(X, X0)
    assert_array_equal(y, y0)


@pytest.mark.parametrize(
    "kwargs, X_change, y_change, match",
    [
        ({"ranks": []}, None, None, "ranks"),
        ({"ranks": [3, 0]}, None, None, "ranks"),
        ({"ranks": [2.5]}, None, None, "ranks"),
        ({}, "nan", None, "NaN"),
        ({}, "negative", None, "Negative values"),
        ({}, None, "all_unlabeled", "no labeled sample"),
        ({}, None, "short", "inconsistent numbers of samples"),
        ({}, None, "continuous", "Unknown label type"),
    ],
)
def test_bad_input(kwargs, X_change, y_change, match):
    X, y = hierarchical_data()
    X, y = X.copy(), y.astype(float)
    if X_change == "nan":
        X[0, 0] = np.nan
    elif X_change == "negative":
        X[0, 0] = -1.0
    if y_change == "all_unlabeled":
        y[:] = -1
    elif y_change == "short":
        y = y[:-1]
    elif y_change == "continuous":
        y = y + 0.5
    with pytest.raises(ValueError, match=match):
        NeuralNMF(max_iter=2, **kwargs).fit(X, y)


def test_inverse_transform_checks_width():
    X, _ = hierarchical_data()
    model = NeuralNMF(ranks=[3, 2], max_iter=2).fit(X)
    with pytest.raises(ValueError, match="last layer has rank 2"):
        model.inverse_transform(np.ones((4, 3)))
