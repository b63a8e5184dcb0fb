"""UnfoldedMeanField and UnfoldedBP: scikit-learn API, references, errors."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import hamming_loss
from sklearn.model_selection import GridSearchCV

from sklearn_unfold.unfolded_mrf import UnfoldedBP, UnfoldedMeanField

# scikit-learn's common checks run in test_common.py.


def multilabel_data(n=120, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 4)
    Y = np.column_stack([X[:, 0] > 0, X[:, 0] + X[:, 1] > 0, X[:, 2] > 0.5]).astype(np.int64)
    return X, Y


def chain_denoising_data(n, length=12, flip=0.2, seed=0):
    """Piecewise-constant binary sequences observed through independent flips."""
    rng = np.random.RandomState(seed)
    switches = rng.rand(n, length) < 0.15
    clean = (np.cumsum(switches, axis=1) + rng.randint(2, size=(n, 1))) % 2
    noisy = np.where(rng.rand(n, length) < flip, 1 - clean, clean)
    return noisy.astype(float), clean


# The bare network of the paper: no latent unit, every parameter untied, all
# samples trained on.  Tests of its structure and its equivalences ask for it
# explicitly, since the defaults (issue 15) add latent units, tie the couplings
# and hold out a validation split.
BARE = dict(n_latent=0, tied_params=(), early_stopping=False)


def fit_quietly(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


@pytest.mark.parametrize("cls", [UnfoldedMeanField, UnfoldedBP])
def test_multilabel_outputs(cls):
    X, Y = multilabel_data()
    est = fit_quietly(cls(n_layers=2, graph="chain", max_iter=60, random_state=0, **BARE), X, Y)
    assert est.observation_ == "dense"  # "auto": 4 features for 3 labels
    proba = est.predict_proba(X)
    assert proba.shape == Y.shape and np.all((proba > 0) & (proba < 1))
    np.testing.assert_array_equal(est.transform(X), proba)
    pred = est.predict(X)
    assert pred.dtype == Y.dtype
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))
    # score is the mean per-label accuracy = 1 - Hamming loss, not subset accuracy.
    assert est.score(X, Y) == pytest.approx(1 - hamming_loss(Y, pred))
    assert est.score(X, Y) > 0.9
    assert est.n_outputs_ == 3 and est.coupling_.shape == (2, 2)
    assert est.dense_coef_.shape == (2, 3, 4) and est.bias_.shape == (2, 3)
    np.testing.assert_array_equal(est.edges_, [[0, 1], [1, 2]])
    assert est.get_feature_names_out().tolist() == [f"{cls.__name__.lower()}{i}" for i in range(3)]
    w = np.linspace(0.1, 1, X.shape[0])
    per_sample = (pred == Y).mean(axis=1)
    assert est.score(X, Y, sample_weight=w) == pytest.approx(np.average(per_sample, weights=w))


def test_binary_1d_target_with_string_labels():
    X, Y = multilabel_data()
    y = np.where(Y[:, 0] == 1, "yes", "no")
    est = fit_quietly(UnfoldedBP(n_layers=2, graph="full", max_iter=80, random_state=0), X, y)
    np.testing.assert_array_equal(est.classes_, ["no", "yes"])
    proba = est.predict_proba(X)
    assert proba.shape == (X.shape[0], 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    np.testing.assert_allclose(proba[:, 1], est.transform(X)[:, 0])
    assert set(est.predict(X)) <= {"no", "yes"}
    assert est.score(X, y) > 0.9


def test_one_layer_without_edges_is_logistic_regression():
    # K = 1, no hidden-hidden edges: mu = logistic(C v + b) per label.
    X, Y = multilabel_data(n=200)
    n, C = X.shape[0], 2.0
    est = UnfoldedMeanField(
        n_layers=1, graph="empty", l2_regularization=1 / (C * n), batch_size=n,
        learning_rate_init=0.02, max_iter=3000, tol=1e-9, n_iter_no_change=50,
        shuffle=False, random_state=0, n_latent=0, early_stopping=False,
    )
    fit_quietly(est, X, Y)
    coef = est.dense_coef_[0]
    np.testing.assert_allclose(est.predict_proba(X), expit(X @ coef.T + est.bias_[0]), rtol=1e-12)
    for j in range(Y.shape[1]):
        lr = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(X, Y[:, j])
        np.testing.assert_allclose(coef[j], lr.coef_[0], rtol=2e-3, atol=2e-3)
        assert est.bias_[0, j] == pytest.approx(lr.intercept_[0], abs=2e-3)
        np.testing.assert_allclose(est.predict_proba(X)[:, j], lr.predict_proba(X)[:, 1], atol=1e-3)


def test_lambda_zero_bp_trains_like_mean_field():
    X, Y = multilabel_data()
    kw = dict(n_layers=3, graph="full", schedule="layer", max_iter=20, random_state=0)
    mf = fit_quietly(UnfoldedMeanField(**kw), X, Y)
    bp = fit_quietly(UnfoldedBP(lambda_=0.0, **kw), X, Y)
    np.testing.assert_allclose(bp.predict_proba(X), mf.predict_proba(X), rtol=1e-9)
    np.testing.assert_allclose(bp.coupling_, mf.coupling_, rtol=1e-9, atol=1e-12)
    bp1 = fit_quietly(UnfoldedBP(lambda_=1.0, **kw), X, Y)
    assert np.max(np.abs(bp1.predict_proba(X) - mf.predict_proba(X))) > 1e-4


def bayes_error_chain_denoising(X, Y, switch=0.15, flip=0.2):
    """Error of the exact posterior marginals of the generating chain model.

    The prior p(h_i != h_(i+1)) = switch is a Potts chain with coupling
    2 J, J = log((1 - switch) / switch), and -J per edge on each end (eq. 46);
    the flips add 2 llr x_i - llr to the field.  Sum-product BP with enough
    layers is exact on the chain (tested against brute force elsewhere).
    """
    from sklearn_unfold._mrf.graphs import chain_graph
    from sklearn_unfold._mrf.network import NetworkSpec, forward

    graph = chain_graph(X.shape[1])
    J, llr = np.log((1 - switch) / switch), np.log((1 - flip) / flip)
    params = {
        "coupling": np.full((1, graph.n_edges), 2 * J),
        "bias": (-J * graph.degree - llr)[None].astype(float),
        "local": np.full((1, graph.n_nodes), 2 * llr),
        "lambda": np.ones(1),
    }
    eta, _ = forward(params, NetworkSpec(graph, graph.n_nodes + 1), X)
    return np.mean((eta > 0) != Y)


@pytest.mark.parametrize("cls", [UnfoldedMeanField, UnfoldedBP])
def test_unfolded_network_learns_to_denoise_a_chain(cls):
    X, Y = chain_denoising_data(600)
    X_test, Y_test = chain_denoising_data(400, seed=1)
    est = fit_quietly(
        cls(n_layers=4, graph="chain", observation="local", learning_rate_init=0.1,
            max_iter=60, random_state=0, **BARE),
        X, Y,
    )
    noisy_error = np.mean(X_test != Y_test)
    bayes = bayes_error_chain_denoising(X_test, Y_test)
    assert bayes < noisy_error - 0.02
    # Four untied layers trained on 600 sequences get close to the optimum.
    assert 1 - est.score(X_test, Y_test) < bayes + 0.01


def test_grid_search_over_layers_and_lambda():
    X, Y = multilabel_data(n=90)
    search = GridSearchCV(
        UnfoldedBP(graph="chain", max_iter=15, random_state=0),
        {"n_layers": [1, 3], "lambda_": [0.0, 1.0]},
        cv=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, Y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_["n_layers"] in (1, 3)
    assert 0.5 < search.best_score_ <= 1
    assert search.predict(X).shape == Y.shape


def test_float32_is_preserved():
    X, Y = multilabel_data()
    est = fit_quietly(
        UnfoldedBP(n_layers=2, graph="full", max_iter=10, random_state=0), X.astype(np.float32), Y
    )
    assert est.coupling_.dtype == np.float32
    assert est.predict_proba(X.astype(np.float32)).dtype == np.float32
    assert est.transform(X).dtype == np.float64


def test_random_state_reproducible():
    X, Y = multilabel_data()
    kw = dict(n_layers=2, graph="full", max_iter=5, schedule="edge")
    a = fit_quietly(UnfoldedBP(random_state=3, **kw), X, Y)
    b = fit_quietly(UnfoldedBP(random_state=3, **kw), X, Y)
    c = fit_quietly(UnfoldedBP(random_state=4, **kw), X, Y)
    np.testing.assert_array_equal(a.coupling_, b.coupling_)
    np.testing.assert_array_equal(a.schedule_, b.schedule_)
    assert not np.array_equal(a.coupling_, c.coupling_)


def test_training_options():
    X, Y = multilabel_data()
    est = fit_quietly(
        UnfoldedBP(n_layers=3, graph="full", n_latent=0, lambda_=[0.5, 1.0, 1.5], train_lambda=True, schedule="edge",
                   coupling="directed", tied_params=("coupling", "bias"), early_stopping=True,
                   validation_fraction=0.2, max_iter=15, random_state=0),
        X, Y,
    )
    n_dir = 2 * 3  # complete graph on 3 labels, both directions
    assert est.coupling_.shape == (3, n_dir)
    np.testing.assert_array_equal(est.coupling_[0], est.coupling_[2])  # tied
    assert est.schedule_.shape == (3, n_dir) and np.all((est.schedule_ > 0) & (est.schedule_ < 1))
    assert not np.allclose(est.lambdas_, [0.5, 1.0, 1.5])  # trained per layer
    assert est.n_trainable_params_ == n_dir + 3 + 3 * 3 * 4 + 3 * n_dir + 3
    # Early stopping watches the validation loss and keeps its best epoch.
    assert len(est.validation_scores_) == len(est.validation_loss_curve_) == est.n_iter_
    best = int(np.argmin(est.validation_loss_curve_))
    assert est.best_validation_loss_ == est.validation_loss_curve_[best]
    assert est.best_validation_score_ == est.validation_scores_[best]
    fixed = fit_quietly(
        UnfoldedBP(n_layers=3, graph="full", lambda_=0.7, max_iter=2, random_state=0), X, Y
    )
    np.testing.assert_array_equal(fixed.lambdas_, [0.7, 0.7, 0.7])


def test_max_product_and_latent_units():
    X, Y = chain_denoising_data(200)
    est = fit_quietly(
        UnfoldedBP(n_layers=3, kappa=np.inf, graph="chain", observation="local", n_latent=2,
                   max_iter=5, random_state=0),
        X, Y,
    )
    proba = est.predict_proba(X)
    assert proba.shape == Y.shape and np.all(np.isfinite(proba))
    assert est.bias_.shape == (3, 14) and est.local_coef_.shape == (3, 12)
    assert est.edges_.shape == (11 + 2 * 12, 2)


def test_convergence_warning_and_verbose(capsys):
    X, Y = multilabel_data()
    with pytest.warns(ConvergenceWarning, match="maximum number of iterations 2"):
        UnfoldedMeanField(n_layers=1, graph="full", max_iter=2, verbose=1).fit(X, Y)
    out = capsys.readouterr().out
    assert "Epoch 2, loss" in out and "validation loss" in out


@pytest.mark.parametrize(
    "params, y_kind, X_kind, match",
    [
        ({"graph": np.ones((2, 2)) - np.eye(2)}, "multi", "ok", "shape"),
        ({"graph": np.ones((3, 3))}, "multi", "ok", "self-loops"),
        ({"graph": sp.csr_matrix(np.triu(np.ones((3, 3)), 1))}, "multi", "ok", "symmetric"),
        ({}, "two", "ok", "binary"),
        ({}, "multiclass", "ok", "Only binary"),
        ({}, "one class", "ok", "one class"),
        ({}, "nan", "ok", "NaN"),
        ({}, "multi", "nan", "NaN"),
        ({"observation": "local"}, "multi", "ok", "one column per label"),
        ({"lambda_": [1.0, 1.0]}, "multi", "ok", "length n_layers"),
        ({"lambda_": [1.0, -1.0, 1.0]}, "multi", "ok", ">= 0"),
        ({"lambda_": -0.5}, "multi", "ok", "lambda_"),
        ({"kappa": 0.0}, "multi", "ok", "kappa"),
        ({"tied_params": ("couplings",)}, "multi", "ok", "tied_params"),
        ({"graph": "4-grid"}, "multi", "ok", "image_shape"),
        ({"graph": "ring"}, "multi", "ok", "graph"),
        ({"graph": None}, "multi", "ok", "needs graph"),
    ],
)
def test_invalid_inputs_raise_value_error(params, y_kind, X_kind, match):
    X, Y = multilabel_data(n=30)
    y = {
        "multi": Y,
        "two": np.where(Y == 1, 2, 0),
        "multiclass": Y.sum(axis=1),
        "one class": np.ones(30, dtype=int),
        "nan": np.where(Y == 1, np.nan, 0.0),
    }[y_kind]
    if X_kind == "nan":
        X = X.copy()
        X[3, 1] = np.nan
    with pytest.raises(ValueError, match=match):
        UnfoldedBP(**{"n_layers": 3, "max_iter": 1, "graph": "full", **params}).fit(X, y)


# --------------------------------------------------------------------------
# Issue 15: defaults, validation-loss early stopping, the README example
# --------------------------------------------------------------------------
def test_defaults_are_the_validated_ones():
    for cls in (UnfoldedMeanField, UnfoldedBP):
        params = cls().get_params()
        assert params["graph"] is None  # required: no graph is safe for every problem
        assert params["observation"] == "auto" and params["n_latent"] == 16
        assert params["tied_params"] == ("coupling",) and params["early_stopping"] is True
        assert params["learning_rate_init"] == 0.03 and params["batch_size"] == "auto"


@pytest.mark.parametrize("cls", [UnfoldedMeanField, UnfoldedBP])
def test_defaults_on_an_image_like_problem(cls):
    # One feature per label: "auto" observes locally; 16 latent units; tied couplings.
    X, Y = chain_denoising_data(150)
    est = fit_quietly(cls(n_layers=2, graph="chain", max_iter=5, random_state=0), X, Y)
    assert est.observation_ == "local" and not hasattr(est, "dense_coef_")
    assert est.local_coef_.shape == (2, 12) and est.bias_.shape == (2, 12 + 16)
    np.testing.assert_array_equal(est.coupling_[0], est.coupling_[1])  # tied
    assert est.edges_.shape == (11 + 16 * 12, 2)
    # Early stopping is on: 15 of the 150 samples are held out and scored each epoch.
    assert len(est.validation_loss_curve_) == len(est.validation_scores_) == est.n_iter_


def test_early_stopping_watches_the_validation_loss():
    X, Y = chain_denoising_data(300)
    patience = 4
    est = UnfoldedMeanField(
        n_layers=2, graph="chain", n_latent=0, learning_rate_init=0.2, tol=0,
        n_iter_no_change=patience, max_iter=500, random_state=0,
    ).fit(X, Y)
    curve = np.asarray(est.validation_loss_curve_)
    best = int(np.argmin(curve))
    # Stopped exactly `patience` epochs after the lowest validation loss, whatever
    # the validation accuracy did, and kept that epoch's parameters.
    assert est.n_iter_ == best + 1 + patience
    assert est.best_validation_loss_ == curve[best]
    assert est.best_validation_score_ == est.validation_scores_[best]


def test_too_few_samples_to_hold_out_trains_on_all():
    X, Y = chain_denoising_data(1)
    est = fit_quietly(UnfoldedBP(n_layers=2, graph="chain", n_latent=0, max_iter=3), X, Y)
    assert est.n_iter_ == 3 and not hasattr(est, "validation_loss_curve_")


@pytest.mark.parametrize("cls", [UnfoldedMeanField, UnfoldedBP])
def test_pickle_after_predict(cls):
    # Prediction caches per-graph operators (ratio-domain BP layout, sparse
    # incidences) on the fitted graph; a used estimator still pickles and
    # predicts the same (joblib, GridSearchCV with n_jobs).
    import pickle

    X, Y = multilabel_data(40)
    est = cls(2, graph="chain", n_latent=2, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, Y)
    before = est.predict_proba(X)
    clone = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(clone.predict_proba(X), before)
