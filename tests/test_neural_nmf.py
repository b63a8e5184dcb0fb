"""NeuralNMF: forward pass, exact gradients, descent, and the scikit-learn API."""

import itertools
import os
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import nnls as scipy_nnls
from sklearn.base import clone
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning

from sklearn_unfold import _neural_nmf
from sklearn_unfold._neural_nmf import _bb_steps, cost, forward, gradient, init_factors
from sklearn_unfold.exceptions import FitInterruptedWarning
from sklearn_unfold.neural_nmf import NeuralNMF

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

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


# scikit-learn's common checks run on NeuralNMF from the one table in
# tests/test_common.py.


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
    with pytest.warns(ConvergenceWarning, match="maximum number of iterations 1 reached"):
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


# ------------------------------------------------------------ units of X


def docstring_data():
    """The class docstring's data: uniform entries, the label thresholds feature 0."""
    rng = np.random.default_rng(0)
    X = rng.random((60, 12))
    return X, (X[:, 0] > 0.5).astype(int)


def relative_error(model, X, c):
    """The fitted model's ||cX - model|| / ||cX||, without squaring c X (1e-30**2 underflows)."""
    return model.reconstruction_err_ / c / np.linalg.norm(X)


@pytest.mark.parametrize(
    "init, ranks, supervised", [("hierarchical", (4, 2), False), ("hierarchical", (4, 2), True), ("random", (6, 3, 2), True)]
)
def test_units_of_X_do_not_change_the_model(init, ranks, supervised):
    # Issue 11, defect 2. Before: with init='hierarchical' the relative error
    # was 0.419 at c = 1, 0.530 at 1e6 and 1.0 at 1e30 (transform all zeros),
    # accuracy 1.00 -> 0.77 -> 0.40; with init='random' the accuracy was 1.00
    # at c = 1 and 0.60 at c = 10 (a classifier frozen, or not, by a step
    # length computed from rounding noise).
    X, y = docstring_data()
    y = y if supervised else None
    kwargs = {"ranks": ranks, "init": init, "random_state": 0}
    ref = NeuralNMF(**kwargs).fit(X, y)
    for c in (1e-30, 10.0, 1e6, 1e30):
        model = NeuralNMF(**kwargs).fit(X * c, y)
        # Equal up to the descent's sensitivity to the last bit of X, which
        # is the same at any fixed scale (measured: 1e-9 on the error, 1e-7
        # on the model for the random start; 1e-11 and 1e-9 otherwise).
        assert_allclose(relative_error(model, X, c), relative_error(ref, X, 1.0), rtol=1e-7)
        # The model of the data (its split into layers, transform, is only
        # defined up to the rescalings A_i D, D^-1 A_(i+1) the cost cannot see).
        assert_allclose(model.inverse_transform(model.transform(X * c)) / c, ref.inverse_transform(ref.transform(X)),
                        rtol=1e-6, atol=1e-6)
        if supervised:
            assert_array_equal(model.predict(X * c), ref.predict(X))
            assert_allclose(model.decision_function(X * c), ref.decision_function(X), rtol=1e-6, atol=1e-6)
    if supervised:
        assert np.mean(ref.predict(X) == y) >= 0.95
    # A fitted model is linear in the sample.
    assert_allclose(ref.transform(X * 1e7) / 1e7, ref.transform(X), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "dtype, exponent", [(np.float64, -1000), (np.float64, -3), (np.float64, 100), (np.float64, 1000),
                        (np.float32, -100), (np.float32, 100)]
)
def test_power_of_two_units_give_the_same_model_bit_for_bit(dtype, exponent):
    # A power-of-two change of units changes no digit, so nothing may change
    # but the scale of the outputs (float64 data near 1e-301 and 1e301, float32 near 1e-30 and 1e30).
    X, y = docstring_data()
    X = X.astype(dtype)
    c = 2.0**exponent
    Xc = X * dtype(c)
    assert np.array_equal(Xc / dtype(c), X)  # neither overflow nor subnormals
    kwargs = {"ranks": (4, 2), "max_iter": 30, "random_state": 0}
    ref, model = NeuralNMF(**kwargs).fit(X, y), NeuralNMF(**kwargs).fit(Xc, y)
    for A, A_ref in zip(model.factors_, ref.factors_, strict=True):
        assert_array_equal(A, A_ref)
    assert_array_equal(model.components_, ref.components_)
    assert model.loss_curve_ == ref.loss_curve_ and model.n_iter_ == ref.n_iter_
    assert_array_equal(model.label_factor_ * dtype(c), ref.label_factor_)
    assert model.reconstruction_err_ == ref.reconstruction_err_ * c
    for S, S_ref in zip(model.transform_all(Xc), ref.transform_all(X), strict=True):
        assert S.dtype == dtype
        assert_array_equal(S, S_ref * dtype(c))
    S = ref.transform(X)
    assert_array_equal(model.inverse_transform(S * dtype(c)), ref.inverse_transform(S) * dtype(c))
    assert_array_equal(model.decision_function(Xc), ref.decision_function(X))
    assert_array_equal(model.predict(Xc), ref.predict(X))


def test_hierarchical_start_does_not_depend_on_units():
    # The root of defect 2: scikit-learn's NMF (the default start) is not
    # scale-equivariant, so the start is computed on data in [0, 1].
    X, _ = docstring_data()
    ref = init_factors(X.T, [4, 2], "hierarchical", 0)
    for c in (1e-6, 3.0, 1e6):
        for A, A_ref in zip(init_factors(X.T * c, [4, 2], "hierarchical", 0), ref, strict=True):
            assert_allclose(A, A_ref, rtol=1e-9, atol=1e-12 * np.abs(A_ref).max())


def test_barzilai_borwein_ignores_a_block_moved_by_rounding_only():
    # A block that moved by rounding noise has no curvature to measure: it
    # keeps its fallback step instead of <s, s> / <s, y> ~ 1e-14.
    rng = np.random.default_rng(0)
    B0 = rng.random((2, 3))
    B1 = B0 + 1e-16 * rng.standard_normal(B0.shape)
    A0 = rng.random((4, 3))
    A1 = A0 - 0.1 * rng.random(A0.shape)
    g0 = [rng.standard_normal(A0.shape), rng.standard_normal(B0.shape)]
    # The gradients moved along s, so <s, y> > 0 for both blocks.
    g1 = [g0[0] + 0.3 * (A1 - A0), g0[1] + 1e-2 * np.sign(B1 - B0)]
    steps = _bb_steps([A0, B0], [A1, B1], g0, g1, [5.0, 7.0])
    assert_allclose(steps[0], 1 / 0.3)  # a real move: the BB length
    assert steps[1] == 7.0


if given is not None:
    # Deterministic and file-free by default, like test_reliability's property
    # tests; SKLEARN_UNFOLD_FUZZ=500 explores 500 fresh examples.
    _FUZZ = int(os.environ.get("SKLEARN_UNFOLD_FUZZ", "0"))

    @settings(
        max_examples=_FUZZ or 25,
        deadline=None,
        derandomize=not _FUZZ,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        log10_c=st.floats(-30, 30),
        seed=st.integers(0, 3),
        init=st.sampled_from(["hierarchical", "random"]),
        supervised=st.booleans(),
    )
    def test_fit_is_scale_equivariant(log10_c, seed, init, supervised):
        rng = np.random.default_rng(seed)
        X = rng.random((30, 8))
        y = (X[:, 0] > 0.5).astype(int) if supervised else None
        c = 10.0**log10_c
        kwargs = {"ranks": (4, 2), "init": init, "max_iter": 10, "random_state": seed}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ref, model = NeuralNMF(**kwargs).fit(X, y), NeuralNMF(**kwargs).fit(X * c, y)
        assert_allclose(model.reconstruction_err_ / c, ref.reconstruction_err_, rtol=1e-7)
        assert_allclose(model.components_, ref.components_, rtol=1e-6, atol=1e-9 * np.abs(ref.components_).max())
        S_ref = ref.transform(X)
        assert_allclose(model.transform(X * c) / c, S_ref, rtol=1e-6, atol=1e-9 * S_ref.max())
        # A fitted model is linear in the sample, at any scale.
        assert_allclose(ref.transform(X * c) / c, S_ref, rtol=1e-12, atol=1e-15 * S_ref.max())
        if supervised:
            D_ref = ref.decision_function(X)
            assert_allclose(model.decision_function(X * c), D_ref, rtol=1e-6, atol=1e-9 * np.abs(D_ref).max())
            assert_array_equal(model.predict(X * c), ref.predict(X))

    @settings(max_examples=_FUZZ or 15, deadline=None, derandomize=not _FUZZ, database=None)
    @given(log10_c=st.floats(-30, 30), seed=st.integers(0, 3))
    def test_float32_fit_is_scale_equivariant(log10_c, seed):
        # float32 rounds c * X to 24 bits, so the fits agree to about that.
        rng = np.random.default_rng(seed)
        X = rng.random((30, 8)).astype(np.float32)
        y = (X[:, 0] > 0.5).astype(int)
        c = np.float32(10.0**log10_c)
        kwargs = {"ranks": (4, 2), "init": "random", "max_iter": 10, "random_state": seed}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ref, model = NeuralNMF(**kwargs).fit(X, y), NeuralNMF(**kwargs).fit(X * c, y)
        S, S_ref = model.transform(X * c), ref.transform(X)
        assert S.dtype == np.float32 and np.all(np.isfinite(S))
        assert_allclose(S / c, S_ref, rtol=1e-3, atol=1e-4 * S_ref.max())
        assert_allclose(model.decision_function(X * c), ref.decision_function(X), rtol=1e-3, atol=1e-3)
        assert_allclose(model.reconstruction_err_ / c, ref.reconstruction_err_, rtol=1e-3)


# ------------------------------------------------------------ transactions


def assert_same_state(state, expected):
    """``vars`` of an estimator equal to a saved copy, attribute by attribute."""
    assert state.keys() == expected.keys()
    for name, value in expected.items():
        got = state[name]
        if isinstance(value, list | tuple):
            assert type(got) is type(value) and len(got) == len(value), name
            for a, b in zip(got, value, strict=True):
                assert_array_equal(a, b, err_msg=name)
        elif isinstance(value, np.ndarray):
            assert got.dtype == value.dtype, name
            assert_array_equal(got, value, err_msg=name)
        else:
            assert got == value, name


def _fail(exc):
    def raise_(*args, **kwargs):
        raise exc("injected fault")

    return raise_


STAGES = {
    # Validation found late: X already validated (n_features_in_ reset) when the labels are rejected.
    "validation": lambda mp, exc: mp.setattr(NeuralNMF, "_check_labels", _fail(exc)),
    "init": lambda mp, exc: mp.setattr(_neural_nmf, "init_factors", _fail(exc)),
    # Before the first completed iteration: nothing of the new fit to keep.
    "solver": lambda mp, exc: mp.setattr(_neural_nmf, "gradient", _fail(exc)),
    "attributes": lambda mp, exc: mp.setattr(
        NeuralNMF,
        "__setattr__",
        lambda self, name, value: (_fail(exc)() if name == "loss_curve_" else object.__setattr__(self, name, value)),
    ),
}


@pytest.mark.parametrize("previous", ["fitted", "unfitted"])
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("stage", list(STAGES))
def test_failed_fit_leaves_the_previous_model(monkeypatch, stage, exc, previous):
    X, y = docstring_data()
    model = NeuralNMF(ranks=(4, 2), max_iter=5, random_state=0)
    if previous == "fitted":
        model.fit(X, y)
    expected = {name: (list(v) if isinstance(v, list) else v) for name, v in vars(model).items()}
    # A different problem: other features, other ranks, other labels.
    model.set_params(ranks=(3,), init="random")
    expected.update(ranks=(3,), init="random")
    STAGES[stage](monkeypatch, exc)
    with pytest.raises(exc, match="injected fault"):
        model.fit(X[:, :9] * 1e3, (y + 5) % 7)
    monkeypatch.undo()
    assert_same_state(vars(model), expected)
    if previous == "fitted":
        assert_array_equal(model.predict(X), NeuralNMF(ranks=(4, 2), max_iter=5, random_state=0).fit(X, y).predict(X))


def _interrupt_on_call(monkeypatch, n):
    """Make the n-th call (from 0) of the solver's gradient raise KeyboardInterrupt."""
    calls = itertools.count()
    real = _neural_nmf.gradient

    def gradient(*args):
        if next(calls) == n:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(_neural_nmf, "gradient", gradient)


def test_interrupt_keeps_the_last_completed_iteration(monkeypatch):
    # Gradient calls: one at the start, one after each iteration; the 4th is
    # inside iteration 3, so 2 iterations are complete.
    X, y = docstring_data()
    kwargs = {"ranks": (4, 2), "tol": 0, "random_state": 0}
    _interrupt_on_call(monkeypatch, 3)
    try:
        with pytest.warns(FitInterruptedWarning, match="after 2 completed iteration"):
            model = NeuralNMF(max_iter=50, **kwargs).fit(X, y)
    except KeyboardInterrupt:  # would end the pytest session
        pytest.fail("the interrupt escaped fit")
    monkeypatch.undo()
    ref = NeuralNMF(max_iter=2, **kwargs).fit(X, y)
    assert model.n_iter_ == 2 and model.loss_curve_ == ref.loss_curve_
    for A, A_ref in zip(model.factors_, ref.factors_, strict=True):
        assert_array_equal(A, A_ref)
    assert_array_equal(model.label_factor_, ref.label_factor_)
    assert model.reconstruction_err_ == ref.reconstruction_err_


def test_interrupt_turned_into_an_error_leaves_the_previous_model(monkeypatch):
    X, y = docstring_data()
    model = NeuralNMF(ranks=(4, 2), max_iter=5, random_state=0).fit(X, y)
    expected = dict(vars(model))
    _interrupt_on_call(monkeypatch, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitInterruptedWarning)
        try:
            with pytest.raises(FitInterruptedWarning):
                model.fit(X[:, :9], None)
        except KeyboardInterrupt:  # would end the pytest session
            pytest.fail("the interrupt escaped fit")
    assert_same_state(vars(model), expected)


def test_refit_after_set_params_keeps_nothing_of_the_old_fit():
    X, y = docstring_data()
    model = NeuralNMF(ranks=(4, 2), max_iter=5, random_state=0).fit(X, y)
    model.set_params(ranks=(3,), label_weight=0.0, init="random")
    model.fit(X[:, :9], y)
    fresh = clone(model).fit(X[:, :9], y)
    assert_same_state(vars(model), vars(fresh))
    assert model.label_factor_ is None and model.classes_ is None


def test_predict_time_reads_fitted_state_only(capsys):
    X, y = docstring_data()
    model = NeuralNMF(ranks=(4, 2), max_iter=10, random_state=0).fit(X, y)

    def outputs():
        S = model.transform(X)
        return [S, *model.transform_all(X), model.inverse_transform(S), model.decision_function(X),
                model.predict(X), model.get_feature_names_out()]

    before = outputs()
    capsys.readouterr()
    other = {"ranks": (3,), "label_weight": 0.0, "max_iter": 1, "tol": 0.5, "step_size": 0.1,
             "init": "random", "random_state": 7, "verbose": 2}
    assert other.keys() == model.get_params().keys()  # every parameter changes
    model.set_params(**other)
    for a, b in zip(outputs(), before, strict=True):
        assert_array_equal(a, b)
    assert capsys.readouterr().out == ""
