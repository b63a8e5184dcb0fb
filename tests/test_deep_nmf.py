"""Tests for the DeepNMF and DiscriminativeNMF estimators.

References: sparse-NMF inference (``infer_activations``) plus a dense Wiener
filter for C = 0, a forward pass written out in this file from eq. 33-34 for
C >= 1, dense beta-divergences for the recorded objective, a dense SDR for
``score``, and scikit-learn's common checks for the API contract (with every
check that cannot run on a 1-column y replayed below on valid data).
"""

import pickle
import re
import warnings

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.validation import check_is_fitted

from sklearn_unfold import DeepNMF, DiscriminativeNMF, sdr_scorer
from sklearn_unfold._nmf.divergences import mm_exponent
from sklearn_unfold._nmf.updates import infer_activations, initial_activations
from conftest import ref_divergence, source_mixture

F, R = 6, 3  # frequencies per frame, components per source


def mixture(n=120, n_freqs=F, n_context=2, n_sources=2, seed=0):
    return source_mixture(n, n_freqs, n_context, n_sources, seed)


def params(**kwargs):
    """Small, fast settings; tol=0 so that max_iter fixes the work done."""
    base = dict(
        n_components=R,
        n_layers=4,
        n_trained_layers=2,
        n_context=2,
        sparsity=0.1,
        max_iter=8,
        tol=0.0,
        bases_max_iter=20,
        random_state=0,
    )
    base.update(kwargs)
    return base


def targets(Y, n_sources, n_freqs=F):
    """Target (last) frame of each source block of Y: (n, L*F)."""
    block = Y.shape[1] // n_sources
    return np.hstack([Y[:, (l + 1) * block - n_freqs : (l + 1) * block] for l in range(n_sources)])


def wiener(M, W, H, n_sources):
    """Eq. 34 per source, side by side: (n, L*F) from M (F, n), W (F, L*R), H (L*R, n)."""
    Lam = W @ H
    k = W.shape[1] // n_sources
    return np.hstack([(M * (W[:, l * k : (l + 1) * k] @ H[l * k : (l + 1) * k]) / Lam).T for l in range(n_sources)])


def ref_forward(est, X):
    """The network of eq. 62-63 written out from the fitted matrices (KL-type eq. 33).

    H^0 = sum(frame) / sum(W) everywhere; K - C + 1 iterations (K when C = 0)
    with the fixed context bases on the context-stacked mixture; C - 1 with
    the trained single-frame bases on the target frame; eq. 34 with the last.
    """
    beta = {"kullback-leibler": 1.0, "frobenius": 2.0, "itakura-saito": 0.0}.get(est.beta_loss, est.beta_loss)
    # sparsity is relative to the mean of the training X (data_level_).
    e, mu = mm_exponent(beta), est.sparsity * est.data_level_ ** (beta - 1)
    K = est.n_layers
    C = est.n_trained_layers if isinstance(est, DeepNMF) else 1
    M_ctx = X.T
    M = M_ctx[-est.n_frequencies_ :]

    def update(M_, W, H):
        Lam = W @ H
        return H * ((W.T @ (M_ * Lam ** (beta - 2))) / (W.T @ Lam ** (beta - 1) + mu)) ** e

    W0 = est.bases_.T
    H = np.tile(M_ctx.sum(axis=0) / W0.sum(), (W0.shape[1], 1))
    for _ in range(K - C + 1 if C else K):
        H = update(M_ctx, W0, H)
    layers = [W.T for W in est.trained_components_] if C else [W0[-est.n_frequencies_ :]]
    for W in layers[:-1]:
        H = update(M, W, H)
    return wiener(M, layers[-1], H, est.n_sources_), H.T


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n_sources, kwargs",
    [
        (2, {}),
        (3, dict(source_weights=[0.5, 1.0, 0.2], n_trained_layers=3)),
        (2, dict(beta_loss=0.5, target_loss="kullback-leibler")),
        (2, dict(beta_loss=3.0, n_context=3, source_weights=(1.0, 1.0))),
        (2, dict(beta_loss="frobenius", n_trained_layers=4, sparsity=0.0)),
    ],
)
def test_non_negative_and_wiener_sum(n_sources, kwargs):
    p = params(**kwargs)
    X, Y = mixture(n_sources=n_sources, n_context=p["n_context"], seed=1)
    est = DeepNMF(**p).fit(X, Y)
    for arr in (est.bases_, est.trained_components_):
        assert np.all(arr >= 0) and np.all(np.isfinite(arr))
    Y_hat = est.predict(X)
    assert Y_hat.shape == (X.shape[0], n_sources * F)
    assert np.all(Y_hat >= 0)
    # Eq. 34 splits the mixture's target frame among the sources.
    assert_allclose(Y_hat.reshape(-1, n_sources, F).sum(axis=1), X[:, -F:], rtol=1e-12)
    H = est.transform(X)
    assert H.shape == (X.shape[0], n_sources * R) and np.all(H >= 0)


@pytest.mark.parametrize("beta_loss", ["kullback-leibler", 0.5])
@pytest.mark.parametrize("n_layers", [1, 3])
def test_zero_trained_layers_is_sparse_nmf_separation(beta_loss, n_layers):
    X, Y = mixture(seed=2)
    est = DeepNMF(**params(n_trained_layers=0, n_layers=n_layers, beta_loss=beta_loss)).fit(X, Y)
    assert est.trained_components_.shape == (0, 2 * R, F)
    assert est.n_iter_ == 0 and est.loss_curve_ == [] and est.loss_ is None
    # Sparse-NMF inference: K updates with tol=0 from the same start, context-stacked.
    W = est.bases_.T
    beta = 1.0 if beta_loss == "kullback-leibler" else beta_loss
    # sparsity=0.1 is relative to the data level: mu = 0.1 * mean(X) ** (beta - 1).
    mu = 0.1 * np.mean(X) ** (beta - 1)
    assert est.data_level_ == pytest.approx(np.mean(X))
    H, n_iter, _ = infer_activations(X.T, W, initial_activations(X.T, W), beta=beta, mu=mu, max_iter=n_layers, tol=0)
    assert n_iter == n_layers
    assert_allclose(est.transform(X), H.T, rtol=1e-12)
    assert_allclose(est.predict(X), wiener(X.T[-F:], W[-F:], H, 2), rtol=1e-12)


def test_one_trained_layer_is_discriminative_nmf():
    X, Y = mixture(seed=3)
    snmf = DeepNMF(**params(n_trained_layers=0)).fit(X, Y)
    dnmf = DeepNMF(**params(n_trained_layers=1)).fit(X, Y)
    assert_array_equal(dnmf.bases_, snmf.bases_)
    # All K updates still use the fixed analysis bases: activations unchanged.
    assert_array_equal(dnmf.transform(X), snmf.transform(X))
    assert dnmf.trained_components_.shape == (1, 2 * R, F)
    assert not np.allclose(dnmf.trained_components_[0], snmf.bases_[:, -F:])
    # Only the reconstruction layer changed; it starts where sparse NMF is.
    H = dnmf.transform(X).T
    assert_allclose(dnmf.predict(X), wiener(X.T[-F:], dnmf.trained_components_[0].T, H, 2), rtol=1e-12)
    S_hat = snmf.predict(X)[:, :F]
    assert_allclose(dnmf.loss_curve_[0], ref_divergence(Y[:, F : 2 * F], S_hat, 2) / X.shape[0], rtol=1e-12)
    # DiscriminativeNMF is the same estimator with C = 1.
    kwargs = params()
    del kwargs["n_trained_layers"]
    disc = DiscriminativeNMF(**kwargs).fit(X, Y)
    assert "n_trained_layers" not in disc.get_params()
    for attr in ("bases_", "trained_components_"):
        assert_array_equal(getattr(disc, attr), getattr(dnmf, attr))
    assert disc.loss_curve_ == dnmf.loss_curve_
    assert_array_equal(disc.predict(X), dnmf.predict(X))
    assert_array_equal(disc.transform(X), dnmf.transform(X))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_trained_layers=2),
        dict(n_trained_layers=3, beta_loss=0.5),
        dict(n_trained_layers=4, n_context=3),
        dict(n_trained_layers=1, beta_loss=3.0),
    ],
)
def test_predict_is_the_written_out_network(kwargs):
    p = params(**kwargs)
    X, Y = mixture(n_context=p["n_context"], seed=4)
    est = DeepNMF(**p).fit(X, Y)
    expected_sources, expected_H = ref_forward(est, X)
    assert_allclose(est.transform(X), expected_H, rtol=1e-10)
    assert_allclose(est.predict(X), expected_sources, rtol=1e-10)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(target_loss="kullback-leibler"),
        dict(source_weights=[0.3, 1.0], beta_loss=0.5),
        dict(n_trained_layers=3, target_loss=1.5, source_weights=[1, 1]),
    ],
)
def test_loss_curve(kwargs):
    p = params(max_iter=12, **kwargs)
    X, Y = mixture(seed=5)
    est = DeepNMF(**p).fit(X, Y)
    curve = est.loss_curve_
    assert est.n_iter_ >= 1 and len(curve) == est.n_iter_ + 1
    assert np.all(np.diff(curve) <= 0)
    assert curve[1] < curve[0] and curve[-1] < curve[0]
    assert est.loss_ == curve[-1]
    # The recorded objective is eq. 37 of predict's output, per frame.
    target_loss = p.get("target_loss", "frobenius")
    beta2 = {"frobenius": 2.0, "kullback-leibler": 1.0}.get(target_loss, target_loss)
    weights = p.get("source_weights", [1.0, 0.0])
    Y_hat, S = est.predict(X), targets(Y, 2)
    expected = sum(
        w * ref_divergence(S[:, l * F : (l + 1) * F], Y_hat[:, l * F : (l + 1) * F], beta2)
        for l, w in enumerate(weights)
        if w
    )
    assert_allclose(curve[-1], expected / X.shape[0], rtol=1e-10)


@pytest.mark.parametrize("n_context", [1, 2])
def test_more_trained_layers_are_not_worse(n_context):
    X, Y = mixture(n_context=n_context, seed=6)
    finals, starts = [], []
    for C in range(1, 5):
        est = DeepNMF(**params(n_context=n_context, n_trained_layers=C, max_iter=30)).fit(X, Y)
        starts.append(est.loss_curve_[0])
        finals.append(est.loss_)
    if n_context == 1:
        # Single-frame bases: every C starts from the same (sparse NMF) network.
        assert_allclose(starts, starts[0], rtol=1e-12)
    assert np.all(np.diff(finals) <= 0), finals


def test_given_bases():
    X, Y = mixture(seed=30)
    trained = DeepNMF(**params()).fit(X, Y)
    bases = trained.bases_.copy()
    # Fixed bases shared across a grid over K and C: no sparse NMF is run, same network.
    est = DeepNMF(**params(bases=bases, random_state=123, bases_max_iter=1)).fit(X, Y)
    assert_array_equal(est.bases_, trained.bases_)
    assert_array_equal(bases, trained.bases_)  # the parameter is not modified
    assert est.bases_ is not bases
    assert_allclose(est.predict(X), trained.predict(X), rtol=1e-12)
    snmf = DeepNMF(**params(bases=bases, n_trained_layers=0, n_layers=3)).fit(X, Y)
    assert_allclose(snmf.predict(X), wiener(X.T[-F:], bases.T[-F:], snmf.transform(X).T, 2), rtol=1e-12)
    with pytest.raises(ValueError, match=r"bases has shape \(6, 12\); expected \(6, 6\)"):
        DeepNMF(**params(bases=bases, n_context=1)).fit(X[:, -F:], targets(Y, 2))
    with pytest.raises(ValueError, match="Negative values .*bases"):
        DeepNMF(**params(bases=-bases)).fit(X, Y)


# --------------------------------------------------------------------------
# API
# --------------------------------------------------------------------------
def test_api_shapes():
    X, Y = mixture(n_sources=3, n_context=3, seed=7)
    p = params(n_context=3)
    est = DeepNMF(**p)
    H = est.fit(X, Y).transform(X)
    assert est.n_features_in_ == 3 * F and est.n_sources_ == 3 and est.n_frequencies_ == F
    assert est.bases_.shape == (3 * R, 3 * F)
    assert_allclose(np.linalg.norm(est.bases_, axis=1), 1.0, rtol=1e-10)
    assert est.trained_components_.shape == (2, 3 * R, F)
    assert est.predict(X).shape == (X.shape[0], 3 * F)
    assert H.shape == (X.shape[0], 3 * R)
    assert isinstance(est.score(X, Y), float)
    assert_allclose(DeepNMF(**p).fit_transform(X, Y), H, rtol=1e-12)
    # P = (T + C) F R per source summed; P_D = C F R per source summed.
    assert est.n_params_ == {"total": 3 * (3 + 2) * F * R, "trained": 3 * 2 * F * R}
    snmf = DeepNMF(**params(n_context=3, n_trained_layers=0)).fit(X, Y)
    assert snmf.n_params_ == {"total": 3 * 3 * F * R, "trained": 0}


def test_score_is_magnitude_sdr():
    X, Y = mixture(seed=8)
    est = DeepNMF(**params()).fit(X, Y)
    S = targets(Y, 2)[:, :F]
    S_hat = est.predict(X)[:, :F]
    expected = 10 * np.log10(np.sum(S**2) / np.sum((S - S_hat) ** 2))
    assert_allclose(est.score(X, Y), expected, rtol=1e-10)
    assert_allclose(sdr_scorer(est, X, Y), expected, rtol=1e-10)
    # With gamma = (1, 0) and beta2 = 2 the objective is half the error energy.
    assert_allclose(expected, 10 * np.log10(np.sum(S**2) / (2 * X.shape[0] * est.loss_)), rtol=1e-10)
    # Training helps the target source.
    assert expected > DeepNMF(**params(n_trained_layers=0)).fit(X, Y).score(X, Y)


def test_float32():
    X, Y = mixture(seed=9)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    est32 = DeepNMF(**params()).fit(X32, Y32)
    est64 = DeepNMF(**params()).fit(X, Y)
    assert est32.bases_.dtype == est32.trained_components_.dtype == np.float32
    for out32, out64 in [(est32.predict(X32), est64.predict(X)), (est32.transform(X32), est64.transform(X))]:
        assert out32.dtype == np.float32
        assert_allclose(out32, out64, rtol=1e-3, atol=1e-4 * np.abs(out64).max())
    # A float64 model keeps float32 data in float32.
    assert est64.predict(X32).dtype == np.float32 and est64.transform(X32).dtype == np.float32
    assert_allclose(est64.predict(X32), est64.predict(X), rtol=1e-4, atol=1e-5 * X.max())


def test_random_state_and_threads():
    X, Y = mixture(seed=10)
    a = DeepNMF(**params(batch_size=17)).fit(X, Y)
    b = DeepNMF(**params(batch_size=17)).fit(X, Y)
    c = DeepNMF(**params(batch_size=17, n_jobs=2)).fit(X, Y)
    for other in (b, c):
        assert_array_equal(other.bases_, a.bases_)
        assert_array_equal(other.trained_components_, a.trained_components_)
        assert other.loss_curve_ == a.loss_curve_
        assert_array_equal(other.predict(X), a.predict(X))
        assert_array_equal(other.transform(X), a.transform(X))
    assert not np.allclose(DeepNMF(**params(random_state=1)).fit(X, Y).bases_, a.bases_)


def test_batch_size_does_not_change_the_result():
    X, Y = mixture(seed=11)
    one = DeepNMF(**params(batch_size=4096)).fit(X, Y)
    for batch_size in (1, 17):
        chunked = DeepNMF(**params(batch_size=batch_size)).fit(X, Y)
        assert chunked.n_iter_ == one.n_iter_
        assert_allclose(chunked.trained_components_, one.trained_components_, rtol=1e-6)
        assert_allclose(chunked.predict(X), one.predict(X), rtol=1e-6)
        assert_allclose(chunked.loss_curve_, one.loss_curve_, rtol=1e-6)


def test_verbose(capsys):
    X, Y = mixture(seed=12)
    DeepNMF(**params(verbose=0)).fit(X, Y)
    assert capsys.readouterr().out == ""
    est = DeepNMF(**params(verbose=1)).fit(X, Y)
    out = capsys.readouterr().out
    assert "sparse NMF bases" in out
    assert len(re.findall(r"iteration\s+\d+: objective", out)) == est.n_iter_ > 0


def test_convergence_warning():
    X, Y = mixture(seed=13)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        DeepNMF(**params(max_iter=1, tol=1e-4)).fit(X, Y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        DeepNMF(**params(max_iter=1, tol=0.0)).fit(X, Y)  # tol=0: max_iter is the plan
        DeepNMF(**params(max_iter=1, n_trained_layers=0, tol=1e-4)).fit(X, Y)  # nothing trained


def test_inputs_not_modified():
    X, Y = mixture(seed=14)
    X0, Y0 = X.copy(), Y.copy()
    weights = [1.0, 0.5]
    est = DeepNMF(**params(source_weights=weights)).fit(X, Y)
    est.predict(X), est.transform(X), est.score(X, Y), sdr_scorer(est, X, Y)
    assert_array_equal(X, X0)
    assert_array_equal(Y, Y0)
    assert weights == [1.0, 0.5]


def test_pipeline():
    X, Y = mixture(seed=15)
    est = DeepNMF(**params())
    pipe = make_pipeline(FunctionTransformer(), clone(est)).fit(X, Y)
    est.fit(X, Y)
    assert_allclose(pipe.predict(X), est.predict(X), rtol=1e-12)
    assert_allclose(pipe.transform(X), est.transform(X), rtol=1e-12)
    assert_allclose(pipe.score(X, Y), est.score(X, Y), rtol=1e-12)
    assert_allclose(sdr_scorer(pipe, X, Y), est.score(X, Y), rtol=1e-12)


def test_grid_search_over_layers():
    X, Y = mixture(n=160, seed=16)
    groups = np.repeat(np.arange(4), 40)  # e.g. utterances
    grid = {"n_layers": [2, 3], "n_trained_layers": [0, 1, 2]}
    search = GridSearchCV(
        DeepNMF(**params(max_iter=4)), grid, scoring=sdr_scorer, cv=GroupKFold(2), error_score="raise"
    )
    search.fit(X, Y, groups=groups)
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 6 and np.all(np.isfinite(scores))
    best = search.best_estimator_
    assert_allclose(search.score(X, Y), best.score(X, Y), rtol=1e-12)
    # One split, recomputed by hand: the scorer reads Y with its context.
    train, test = next(GroupKFold(2).split(X, Y, groups))
    idx = list(search.cv_results_["params"]).index({"n_layers": 3, "n_trained_layers": 2})
    est = DeepNMF(**params(max_iter=4, n_layers=3, n_trained_layers=2)).fit(X[train], Y[train])
    assert_allclose(search.cv_results_["split0_test_score"][idx], est.score(X[test], Y[test]), rtol=1e-10)
    # With scoring=None GridSearchCV uses score(): the same numbers.
    default = GridSearchCV(DeepNMF(**params(max_iter=4)), grid, cv=GroupKFold(2), error_score="raise")
    default.fit(X, Y, groups=groups)
    assert_allclose(default.cv_results_["mean_test_score"], scores, rtol=1e-10)


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------
def _bad_input_cases():
    X, Y = mixture(n=60, seed=17)
    neg_X, neg_Y, nan_X, inf_X, nan_Y, inf_Y = X.copy(), Y.copy(), X.copy(), X.copy(), Y.copy(), Y.copy()
    neg_X[3, 2] = -1.0
    neg_Y[4, 5] = -1.0
    nan_X[0, 1] = np.nan
    inf_X[2, 2] = np.inf
    nan_Y[1, 1] = np.nan
    inf_Y[1, 3] = np.inf
    zero_X, zero_Y = X.copy(), Y.copy()
    zero_X[5, 4] = 0.0
    zero_Y[6, 2] = 0.0
    return [
        ("C > K", params(n_trained_layers=5), X, Y, r"n_trained_layers=5 cannot exceed n_layers=4"),
        ("context", params(), X[:, :-1], Y, r"not a multiple of n_context=2"),
        ("Y columns", params(), X, Y[:, :-1], r"y must have shape .*n_sources \* 12"),
        ("one source", params(), X, Y[:, :12], r"n_sources >= 2"),
        ("1-D Y", params(), X, Y[:, 0], r"y must have shape"),
        ("Y rows", params(), X, Y[:-1], r"inconsistent numbers of samples"),
        ("negative X", params(), neg_X, Y, r"Negative values .*input X"),
        ("negative Y", params(), X, neg_Y, r"Negative values .*input y"),
        ("NaN X", params(), nan_X, Y, r"Input X contains NaN"),
        ("inf X", params(), inf_X, Y, r"Input X contains infinity"),
        ("NaN Y", params(), X, nan_Y, r"Input y contains NaN"),
        ("inf Y", params(), X, inf_Y, r"Input y contains infinity"),
        ("weights length", params(source_weights=[1, 0, 0]), X, Y, r"source_weights must be a 1-D array with one weight per source; got shape \(3,\) while y holds 2 sources"),
        ("weights 2-D", params(source_weights=[[1, 0]]), X, Y, r"one weight per source; got shape \(1, 2\)"),
        ("weights negative", params(source_weights=[1, -0.5]), X, Y, r"source_weights must be .*non-negative"),
        ("weights zero", params(source_weights=[0, 0]), X, Y, r"source_weights must be .*not all zero"),
        ("weights NaN", params(source_weights=[np.nan, 1]), X, Y, r"source_weights must be finite"),
        ("beta_loss", params(beta_loss="euclid"), X, Y, r"'beta_loss' parameter of DeepNMF"),
        ("target_loss", params(target_loss="l2"), X, Y, r"'target_loss' parameter of DeepNMF"),
        ("IS zeros in X", params(beta_loss="itakura-saito"), zero_X, Y, r"DeepNMF \(input X\).*strictly positive"),
        ("IS zeros in Y", params(beta_loss="itakura-saito"), X, zero_Y, r"DeepNMF \(input y\).*strictly positive"),
        # D_IS(0 | s_hat) is infinite: a zero target makes the IS objective meaningless.
        ("IS target zeros", params(target_loss="itakura-saito"), X, zero_Y, r"DeepNMF \(input y\).*strictly positive"),
    ]


@pytest.mark.parametrize("case", _bad_input_cases(), ids=lambda c: c[0])
def test_bad_fit_input(case):
    _, kwargs, X, Y, message = case
    with pytest.raises(ValueError, match=message):
        DeepNMF(**kwargs).fit(X, Y)


def test_bad_input():
    X, Y = mixture(n=60, seed=18)
    est = DeepNMF(**params()).fit(X, Y)
    with pytest.raises(ValueError, match="X has 10 features, but DeepNMF is expecting 12 features"):
        est.predict(X[:, :-2])
    for method in (est.predict, est.transform):
        bad = X.copy()
        bad[0, 0] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            method(bad)
        bad[0, 0] = np.inf
        with pytest.raises(ValueError, match="infinity"):
            method(bad)
        bad[0, 0] = -1.0
        with pytest.raises(ValueError, match="Negative values"):
            method(bad)
    with pytest.raises(ValueError, match=r"y must have shape \(60, 24\)"):
        est.score(X, Y[:, :-1])


# --------------------------------------------------------------------------
# Contracts of the common checks that cannot run (see EXPECTED_FAILED_CHECKS)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("Est", [DeepNMF, DiscriminativeNMF])
def test_fit_returns_self_and_keeps_params(Est):
    X, Y = mixture(seed=19)
    kwargs = params(source_weights=np.array([1.0, 0.2]))
    if Est is DiscriminativeNMF:
        del kwargs["n_trained_layers"]
    est = Est(**kwargs)
    before = joblib.hash(est.get_params())
    public_before = {k for k in vars(est) if not k.startswith("_")}
    assert est.fit(X, Y) is est
    assert joblib.hash(est.get_params()) == before
    added = {k for k in vars(est) if not k.startswith("_")} - public_before
    assert added and all(k.endswith("_") for k in added)


def test_fit_idempotent():
    X, Y = mixture(seed=20)
    X2, Y2 = mixture(n=80, seed=21)
    est = DeepNMF(**params())
    first = est.fit(X, Y).predict(X), est.transform(X), est.score(X, Y)
    est.fit(X2, Y2)
    second = est.fit(X, Y).predict(X), est.transform(X), est.score(X, Y)
    assert_array_equal(first[0], second[0])
    assert_array_equal(first[1], second[1])
    assert first[2] == second[2]


def test_n_features_in():
    X, Y = mixture(seed=22)
    est = DeepNMF(**params())
    assert not hasattr(est, "n_features_in_")
    est.fit(X, Y)
    assert est.n_features_in_ == X.shape[1]
    X_wide = np.hstack([X, X[:, -F:]])  # a valid-looking 3-frame input
    for method in (est.predict, est.transform, lambda Z: est.score(Z, Y)):
        with pytest.raises(ValueError, match=f"X has {3 * F} features, but DeepNMF is expecting {2 * F}"):
            method(X_wide)


def test_subset_and_order_invariance():
    X, Y = mixture(seed=23)
    est = DeepNMF(**params(batch_size=16)).fit(X, Y)
    full_pred, full_H = est.predict(X), est.transform(X)
    idx = np.random.default_rng(0).permutation(X.shape[0])[:37]
    assert_allclose(est.predict(X[idx]), full_pred[idx], rtol=1e-12)
    assert_allclose(est.transform(X[idx]), full_H[idx], rtol=1e-12)
    perm = np.random.default_rng(1).permutation(X.shape[0])
    assert_allclose(est.predict(X[perm]), full_pred[perm], rtol=1e-12)
    # One frame at a time too (1-sample predict).
    assert_allclose(est.predict(X[5:6]), full_pred[5:6], rtol=1e-12)
    assert_allclose(est.transform(X[:1]), full_H[:1], rtol=1e-12)


def test_tiny_shapes():
    X, Y = mixture(seed=24)
    est = DeepNMF(**params()).fit(X, Y)
    with pytest.raises(ValueError, match="Expected 2D array"):
        est.predict(X[0])
    # One frame or one frequency: fit works (or would have to say why).
    one = DeepNMF(**params()).fit(X[:1], Y[:1])
    assert one.predict(X[:1]).shape == (1, 2 * F)
    X1, Y1 = mixture(n_freqs=1, n_context=1, seed=25)
    tiny = DeepNMF(**params(n_context=1)).fit(X1, Y1)
    assert_allclose(tiny.predict(X1).sum(axis=1), X1[:, 0], rtol=1e-12)


def test_not_fitted():
    X, Y = mixture(n=20, seed=26)
    est = DeepNMF(**params())
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    for call in (lambda: est.predict(X), lambda: est.transform(X), lambda: est.score(X, Y), lambda: est.n_params_):
        with pytest.raises(NotFittedError):
            call()
    check_is_fitted(est.fit(X, Y))


def test_methods_do_not_change_state():
    X, Y = mixture(seed=27)
    est = DeepNMF(**params()).fit(X, Y)
    state = joblib.hash(vars(est))
    est.predict(X), est.transform(X), est.score(X, Y), est.n_params_
    assert joblib.hash(vars(est)) == state


def test_input_types():
    X, Y = mixture(seed=28)
    ref = DeepNMF(**params()).fit(X, Y)
    expected = ref.predict(X)
    X_int, Y_int = np.round(10 * X).astype(np.int64) + 1, np.round(10 * Y).astype(np.int64) + 1
    cases = [
        ("lists", X.tolist(), Y.tolist(), X, expected),
        ("fortran", np.asfortranarray(X), np.asfortranarray(Y), X, expected),
        ("object", X.astype(object), Y.astype(object), X, expected),
    ]
    for _, Xc, Yc, X_pred, want in cases:
        assert_allclose(DeepNMF(**params()).fit(Xc, Yc).predict(X_pred), want, rtol=1e-10)
    int_pred = DeepNMF(**params()).fit(X_int.astype(float), Y_int.astype(float)).predict(X_int.astype(float))
    for dtype in (np.int64, np.int32):
        est = DeepNMF(**params()).fit(X_int.astype(dtype), Y_int.astype(dtype))
        out = est.predict(X_int.astype(dtype))
        assert out.dtype == np.float64
        assert_allclose(out, int_pred, rtol=1e-10)
    bad = X.astype(object)
    bad[0, 0] = {"foo": "bar"}
    with pytest.raises(TypeError):
        DeepNMF(**params()).fit(bad, Y)


def test_pickle_and_readonly_memmap(tmp_path):
    X, Y = mixture(seed=29)
    est = DeepNMF(**params()).fit(X, Y)
    restored = pickle.loads(pickle.dumps(est))
    assert_array_equal(restored.predict(X), est.predict(X))
    assert_array_equal(restored.transform(X), est.transform(X))
    assert restored.score(X, Y) == est.score(X, Y)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", Y)
    X_map, Y_map = np.load(tmp_path / "X.npy", mmap_mode="r"), np.load(tmp_path / "Y.npy", mmap_mode="r")
    assert not X_map.flags.writeable
    mapped = DeepNMF(**params()).fit(X_map, Y_map)
    assert_allclose(mapped.predict(X_map), est.predict(X), rtol=1e-10)
    assert_allclose(mapped.transform(X_map), est.transform(X), rtol=1e-10)


def test_score_refuses_a_single_source_when_its_width_is_ambiguous():
    # Issue 11, defect 13: with n_context == n_sources (2 here) a y holding
    # only source 0 (T F columns) has the width of all sources' target frames
    # (L F columns) and was scored as such, giving a wrong number.
    X, Y = mixture(n=90, seed=31)
    est = DeepNMF(**params()).fit(X, Y)
    with pytest.raises(ValueError, match="ambiguous"):
        est.score(X, Y[:, : 2 * F])
    with pytest.raises(ValueError, match="ambiguous"):
        sdr_scorer(est, X, Y[:, : 2 * F])
    assert_allclose(sdr_scorer(est, X, Y), est.score(X, Y), rtol=1e-12)
    # Where the widths differ, the target frames alone score like the fit layout.
    X3, Y3 = mixture(n=90, n_context=3, seed=31)
    est3 = DeepNMF(**params(n_context=3)).fit(X3, Y3)
    assert_allclose(est3.score(X3, Y3), est3.score(X3, targets(Y3, 2)), rtol=1e-12)
    with pytest.raises(ValueError, match="y must have shape"):
        est3.score(X3, Y3[:, : 3 * F])


# --------------------------------------------------------------------------
# Sparsity relative to the data level (issue 12)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("beta_loss", ["frobenius", 0.5, "kullback-leibler"])
def test_sparsity_is_relative_to_the_data_level(beta_loss):
    # Data s times louder is the same problem scaled by s: predictions scale by s.
    X, Y = mixture(seed=40)
    p = params(beta_loss=beta_loss, sparsity=0.5, max_iter=5)
    reference = DeepNMF(**p).fit(X, Y)
    for s in (1e-3, 37.0):
        scaled = DeepNMF(**p).fit(s * X, s * Y)
        assert scaled.data_level_ == pytest.approx(s * reference.data_level_, rel=1e-12)
        assert_allclose(scaled.predict(s * X), s * reference.predict(X), rtol=1e-7)
        assert_allclose(scaled.transform(s * X), s * reference.transform(X), rtol=1e-7)


def test_grid_search_chooses_the_same_sparsity_at_any_scale():
    X, Y = mixture(n=160, seed=41)
    groups = np.repeat(np.arange(4), 40)
    grid = {"sparsity": [0.01, 0.3, 3.0]}
    results = []
    for s in (1.0, 1000.0):
        search = GridSearchCV(DeepNMF(**params(beta_loss="frobenius", max_iter=4)), grid, cv=GroupKFold(2))
        search.fit(s * X, s * Y, groups=groups)
        results.append(search)
    assert results[0].best_params_ == results[1].best_params_
    assert_allclose(results[0].cv_results_["mean_test_score"], results[1].cv_results_["mean_test_score"], rtol=1e-6)
    # The scores differ between sparsities: the search has something to choose.
    assert np.ptp(results[0].cv_results_["mean_test_score"]) > 1e-3


# --------------------------------------------------------------------------
# Early stopping (issue 12)
# --------------------------------------------------------------------------
def early(**kwargs):
    return params(**{"max_iter": 40, "tol": 1e-3, "early_stopping": True, "validation_fraction": 0.25,
                     "n_iter_no_change": 3, **kwargs})


def test_early_stopping_keeps_the_layers_with_the_best_held_out_objective():
    # Few frames, half of the groups held out: the held-out objective turns up and stalls.
    X, Y = mixture(n=80, seed=43)
    groups = np.repeat(np.arange(8), 10)
    p = early(n_components=4, max_iter=150, tol=0.0, validation_fraction=0.5, n_iter_no_change=5)
    est = DeepNMF(**p).fit(X, Y, groups=groups)
    curve = est.validation_loss_curve_
    assert len(curve) == est.n_iter_ + 1 == len(est.loss_curve_)
    assert np.all(np.diff(est.loss_curve_) <= 0)  # the training objective still only decreases
    best = int(np.argmin(curve))
    assert est.best_validation_loss_ == curve[best]
    # tol=0: stopped n_iter_no_change updates after the best one, which is not the last.
    assert 0 < best < est.n_iter_ == best + 5 < 150
    # The training sequence does not depend on the held-out frames: stopping after `best`
    # updates (and never earlier) gives the same layers.
    stopped = DeepNMF(**{**p, "max_iter": best, "n_iter_no_change": 1000})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        stopped.fit(X, Y, groups=groups)
    assert stopped.n_iter_ == best
    assert_array_equal(est.trained_components_, stopped.trained_components_)
    assert_array_equal(est.predict(X), stopped.predict(X))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_early_stopping_holds_out_whole_groups_and_learns_bases_on_the_rest(monkeypatch):
    import sklearn_unfold.deep_nmf as deep_nmf_module

    X, Y = mixture(n=200, seed=43)
    groups = np.repeat(np.arange(8), 25)
    seen = {}
    original_train, original_bases = deep_nmf_module.train_layers, DeepNMF._learn_bases

    def spy_train(problem, layers, **kwargs):
        seen["train"], seen["validation"] = problem, kwargs["validation"]
        return original_train(problem, layers, **kwargs)

    def spy_bases(self, y, *args):
        seen["bases_rows"] = y.copy()
        return original_bases(self, y, *args)

    monkeypatch.setattr(deep_nmf_module, "train_layers", spy_train)
    monkeypatch.setattr(DeepNMF, "_learn_bases", spy_bases)
    DeepNMF(**early()).fit(X, Y, groups=groups)
    target = X[:, -F:]
    held_out = {tuple(row) for row in seen["validation"].M.T}
    is_held_out = np.array([tuple(row) in held_out for row in target])
    assert 0 < is_held_out.sum() < len(X)
    for g in range(8):  # every group entirely on one side
        assert len(set(is_held_out[groups == g])) == 1
    assert is_held_out.sum() == 50  # 25 % of 8 groups: 2 whole groups
    assert_array_equal(seen["train"].M.T, target[~is_held_out])
    assert_array_equal(seen["bases_rows"], Y[~is_held_out])
    # Without groups, single frames are held out.
    DeepNMF(**early()).fit(X, Y)
    assert seen["validation"].n_frames == 50 and seen["train"].n_frames == 150


def test_early_stopping_with_metadata_routing_in_a_group_search():
    import sklearn

    X, Y = mixture(n=160, seed=44)
    groups = np.repeat(np.arange(8), 20)
    with sklearn.config_context(enable_metadata_routing=True):
        est = DeepNMF(**early(max_iter=10)).set_fit_request(groups=True)
        search = GridSearchCV(est, {"n_trained_layers": [1, 2]}, cv=GroupKFold(2), error_score="raise")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(X, Y, groups=groups)
    assert search.best_estimator_.validation_loss_curve_ is not None


def test_early_stopping_warnings_and_errors():
    X, Y = mixture(n=60, seed=45)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        DeepNMF(**early(max_iter=2, n_iter_no_change=10)).fit(X, Y)
    plain = DeepNMF(**params()).fit(X, Y)
    assert plain.validation_loss_curve_ is None and plain.best_validation_loss_ is None
    with pytest.raises(ValueError, match="at least 2 of them; groups has 1"):
        DeepNMF(**early()).fit(X, Y, groups=np.zeros(60))
    with pytest.raises(ValueError, match=r"one entry per frame, shape \(60,\)"):
        DeepNMF(**early()).fit(X, Y, groups=np.arange(59))
    with pytest.raises(ValueError, match="validation_fraction"):
        DeepNMF(**early(validation_fraction=1.0)).fit(X, Y)
