"""Tests for the SparseNMF estimator.

References: scikit-learn's NMF (solver='mu') for the reconstruction error,
scipy's L-BFGS-B for inference, dense formulas for the objective, and
scikit-learn's common estimator checks for the API contract.
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.optimize import minimize
from sklearn.decomposition import NMF
from sklearn.decomposition._nmf import _beta_divergence as sk_beta_divergence
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from sklearn_unfold import SparseNMF
from sklearn_unfold._nmf.updates import init_bases
from conftest import ref_divergence

BETAS = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]


def spectra(n_samples=60, n_features=40, seed=0):
    """Noisy rank-4 non-negative data, frames in rows, strictly positive."""
    rng = np.random.default_rng(seed)
    W0 = rng.gamma(1.0, size=(n_features, 4))
    H0 = rng.gamma(1.0, size=(4, n_samples))
    return ((W0 @ H0) * (0.7 + 0.6 * rng.random((n_features, n_samples)))).T.copy()


def small_data(seed=0):
    return np.random.default_rng(seed).uniform(0.05, 1.0, size=(30, 8))


def fit_quietly(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X)


# --- scikit-learn API contract -----------------------------------------------


def test_fit_transform_shapes_and_attributes():
    X = small_data()
    est = SparseNMF(n_components=3, sparsity=0.1, random_state=0, max_iter=50)
    assert fit_quietly(est, X) is est
    assert est.components_.shape == (3, 8)
    assert est.n_components_ == 3
    assert est.n_features_in_ == 8
    assert (est.components_ >= 0).all()
    assert_allclose(np.linalg.norm(est.components_, axis=1), 1.0, rtol=1e-12)
    assert 1 <= est.n_iter_ <= 50
    assert len(est.loss_curve_) == est.n_iter_ + 1
    assert est.reconstruction_err_ == est.loss_curve_[-1]
    assert np.all(np.diff(est.loss_curve_) <= 0)
    H = est.transform(X)
    assert H.shape == (30, 3) and (H >= 0).all()
    X_back = est.inverse_transform(H)
    assert X_back.shape == X.shape
    assert_allclose(X_back, H @ est.components_, rtol=1e-14)
    assert list(est.get_feature_names_out()) == ["sparsenmf0", "sparsenmf1", "sparsenmf2"]


def test_n_components_none_uses_n_features():
    X = small_data()
    est = fit_quietly(SparseNMF(random_state=0, max_iter=5), X)
    assert est.n_components_ == X.shape[1]
    assert est.components_.shape == (X.shape[1], X.shape[1])


def test_fit_transform_equals_fit_then_transform():
    X = small_data(1)
    params = dict(n_components=3, sparsity=0.2, random_state=3, max_iter=80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        H_fit_transform = SparseNMF(**params).fit_transform(X)
        H_fit_then_transform = SparseNMF(**params).fit(X).transform(X)
    assert np.array_equal(H_fit_transform, H_fit_then_transform)


def test_transform_before_fit_raises():
    with pytest.raises(NotFittedError):
        SparseNMF(2).transform(small_data())
    with pytest.raises(NotFittedError):
        SparseNMF(2).inverse_transform(np.ones((3, 2)))


# --- the objective -----------------------------------------------------------


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("sparsity", [0.0, 0.3])
def test_training_objective_non_increasing(beta, sparsity):
    X = spectra(30, 20)
    est = SparseNMF(4, beta_loss=beta, sparsity=sparsity, max_iter=150, tol=0, random_state=0).fit(X)
    curve = np.asarray(est.loss_curve_)
    assert len(curve) == 151
    assert np.all(np.diff(curve) <= 0)
    assert curve[-1] < 0.9 * curve[0]
    assert_allclose(np.linalg.norm(est.components_, axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("sparsity", [0.0, 0.3])
def test_transform_objective_non_increasing(beta, sparsity):
    # Inference with frozen bases: the dense objective of transform's output
    # must not go up as transform is given more iterations (tol=0, so
    # max_iter=k runs exactly k iterations from the same starting point).
    X = spectra(20, 15)
    est = SparseNMF(3, beta_loss=beta, sparsity=sparsity, max_iter=30, tol=0, random_state=0).fit(X)
    W = est.components_
    values = []
    for k in range(1, 16):
        H = est.set_params(max_iter=k).transform(X)
        values.append(ref_divergence(X, H @ W, beta) + sparsity * H.sum())
    assert np.all(np.diff(values) <= 0)
    assert values[-1] < values[0]


@pytest.mark.parametrize("beta_loss, beta", [("kullback-leibler", 1.0), ("frobenius", 2.0)])
def test_transform_reaches_the_convex_optimum(beta_loss, beta):
    X = spectra(5, 12, seed=3)
    mu = 0.3
    est = SparseNMF(4, beta_loss=beta_loss, sparsity=mu, max_iter=40, tol=0, random_state=0).fit(X)
    # The learned bases are coherent (cosines up to ~0.94), where
    # multiplicative updates converge slowly: give inference many iterations.
    est.set_params(max_iter=10000)
    H = est.transform(X)
    W = est.components_
    for x, h in zip(X, H):

        def f(h):
            return ref_divergence(x, h @ W, beta) + mu * h.sum()

        def grad(h):
            lam = h @ W
            return W @ (lam ** (beta - 1.0) - x * lam ** (beta - 2.0)) + mu

        best = minimize(
            f,
            np.full(4, 0.5),
            jac=grad,
            method="L-BFGS-B",
            bounds=[(1e-12, None)] * 4,
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10000},
        )
        assert f(h) == pytest.approx(best.fun, rel=1e-6)


# --- comparison with scikit-learn's NMF --------------------------------------


@pytest.mark.parametrize("beta_loss, beta", [("kullback-leibler", 1.0), ("frobenius", 2.0)])
@pytest.mark.parametrize("sk_init", ["nndsvda", "random"])
@pytest.mark.parametrize("init", ["exemplar", "random"])
def test_reconstruction_error_close_to_sklearn_nmf(beta_loss, beta, sk_init, init):
    # With sparsity 0 unit-norm bases lose nothing (the scale moves into H):
    # the divergence reached must be within a few percent of sklearn's.
    X = spectra()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = NMF(4, solver="mu", beta_loss=beta_loss, init=sk_init, max_iter=1000, tol=1e-6, random_state=0)
        W_sk = sk.fit_transform(X)
        est = SparseNMF(
            4, beta_loss=beta_loss, sparsity=0.0, init=init, max_iter=1000, tol=1e-6, random_state=0
        )
        est.fit(X)
    sk_err = sk_beta_divergence(X, W_sk, sk.components_, beta)
    # reconstruction_err_ includes the L1 penalty, which is 0 here.
    assert abs(est.reconstruction_err_ - sk_err) <= 0.03 * sk_err
    # The activations transform gives reach the same level.
    H = est.transform(X)
    assert ref_divergence(X, H @ est.components_, beta) <= 1.03 * sk_err


# --- sparsity ----------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_larger_sparsity_gives_sparser_activations(beta):
    X = spectra()
    l1, near_zero = [], []
    for mu in [0.0, 0.3, 1.0]:
        est = fit_quietly(SparseNMF(8, beta_loss=beta, sparsity=mu, max_iter=300, random_state=0), X)
        H = est.transform(X)
        l1.append(H.sum())
        # Fraction of activations below 1% of their frame's total.
        near_zero.append(np.mean(H < 1e-2 * H.sum(axis=1, keepdims=True)))
    assert np.all(np.diff(l1) < 0)
    assert np.all(np.diff(near_zero) > 0)


# --- convergence, verbosity --------------------------------------------------


def test_convergence_warning_when_max_iter_reached():
    X = small_data()
    with pytest.warns(ConvergenceWarning, match="maximum number of iterations 1 reached"):
        est = SparseNMF(2, max_iter=1, random_state=0).fit(X)
    assert est.n_iter_ == 1
    assert len(est.loss_curve_) == 2


def test_no_convergence_warning_with_tol_zero_or_convergence():
    X = small_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        SparseNMF(2, max_iter=3, tol=0, random_state=0).fit(X)
        est = SparseNMF(2, max_iter=5000, tol=1e-3, random_state=0).fit(X)
    assert est.n_iter_ < 5000


def test_verbose_prints_progress(capsys):
    X = small_data()
    SparseNMF(2, max_iter=20, tol=0, random_state=0, verbose=1).fit(X)
    out = capsys.readouterr().out
    assert "SparseNMF iteration" in out and "objective" in out
    assert len(out.strip().splitlines()) == 3  # iterations 1, 10, 20
    SparseNMF(2, max_iter=20, tol=0, random_state=0, verbose=0).fit(X)
    assert capsys.readouterr().out == ""


# --- dtypes, determinism, init -------------------------------------------------


def test_float32_in_float32_out():
    X32 = small_data().astype(np.float32)
    est = fit_quietly(SparseNMF(3, sparsity=0.1, random_state=0, max_iter=50), X32)
    assert est.components_.dtype == np.float32
    H = est.transform(X32)
    assert H.dtype == np.float32
    assert est.inverse_transform(H).dtype == np.float32
    # A float32 model keeps float64 data in float64, and the other way round.
    assert est.transform(X32.astype(np.float64)).dtype == np.float64
    assert est.inverse_transform(H.astype(np.float64)).dtype == np.float64
    assert np.all(np.diff(est.loss_curve_) <= 0)


def test_float64_stays_float64_and_float32_close_to_it():
    X = small_data()
    params = dict(n_components=3, sparsity=0.1, random_state=0, max_iter=30, tol=0)
    est64 = SparseNMF(**params).fit(X)
    est32 = SparseNMF(**params).fit(X.astype(np.float32))
    assert est64.components_.dtype == np.float64
    H64 = est64.transform(X)
    assert H64.dtype == np.float64
    assert est64.inverse_transform(H64.astype(np.float32)).dtype == np.float32
    assert_allclose(est32.components_, est64.components_, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("init", ["exemplar", "random"])
def test_random_state_gives_identical_results(init):
    X = small_data(2)
    params = dict(n_components=3, sparsity=0.1, init=init, max_iter=40)
    a = fit_quietly(SparseNMF(**params, random_state=7), X)
    b = fit_quietly(SparseNMF(**params, random_state=np.random.RandomState(7)), X)
    c = fit_quietly(SparseNMF(**params, random_state=8), X)
    assert np.array_equal(a.components_, b.components_)
    assert a.loss_curve_ == b.loss_curve_
    assert np.array_equal(a.transform(X), b.transform(X))
    assert not np.allclose(a.components_, c.components_)
    # Refitting the same estimator is idempotent.
    components = a.components_.copy()
    assert np.array_equal(fit_quietly(a, X).components_, components)


def test_init_exemplar_and_random_both_work_and_differ():
    X = spectra(40, 20)
    fitted = {}
    for init in ["exemplar", "random"]:
        est = fit_quietly(SparseNMF(4, init=init, sparsity=0.1, max_iter=100, random_state=0), X)
        assert_allclose(np.linalg.norm(est.components_, axis=1), 1.0, rtol=1e-12)
        assert np.all(np.diff(est.loss_curve_) <= 0)
        assert est.loss_curve_[-1] < 0.5 * est.loss_curve_[0]
        fitted[init] = est.components_
    assert not np.allclose(fitted["exemplar"], fitted["random"])


def test_exemplar_init_picks_training_frames():
    X = spectra(40, 20)
    M = X.T
    W = init_bases(M, 5, "exemplar", 0)
    assert_allclose(np.linalg.norm(W, axis=0), 1.0)
    frames = M / np.linalg.norm(M, axis=0)
    # Every basis is a normalized frame up to the small floor added to it.
    distance = np.linalg.norm(W[:, :, None] - frames[:, None, :], axis=0).min(axis=1)
    assert np.all(distance < 1e-2)
    W_random = init_bases(M, 5, "random", 0)
    assert np.linalg.norm(W_random[:, :, None] - frames[:, None, :], axis=0).min() > 1e-2


# --- frame independence --------------------------------------------------------

SUBSETS = [slice(0, 2), slice(5, 17), [9, 2, 30, 11], slice(None, None, 3)]


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_transform_frames_independent_with_fixed_iterations(beta):
    X = spectra(40, 20, seed=4)
    est = SparseNMF(4, beta_loss=beta, sparsity=0.2, max_iter=60, tol=0, random_state=0).fit(X)
    H = est.transform(X)
    # Equal to rounding: BLAS may block a product differently for another
    # number of frames (bit-equality held on one machine and not on another).
    for idx in SUBSETS:
        assert_allclose(est.transform(X[idx]), H[idx], rtol=1e-12)
    # A single frame goes through matrix-vector BLAS kernels: same to rounding.
    assert_allclose(est.transform(X[7:8]), H[7:8], rtol=1e-12)


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_transform_frames_independent_with_default_tol(beta):
    # The stopping rule must not couple frames either: a frame's activations
    # may not depend on which other frames are transformed with it.
    X = spectra(40, 20, seed=4)
    est = fit_quietly(SparseNMF(4, beta_loss=beta, sparsity=0.2, random_state=0), X)
    assert est.tol > 0
    H = est.transform(X)
    for idx in SUBSETS:
        # Frames stop independently; the running subset is a different BLAS
        # width in each call, hence rounding-level (not 1e-2) differences.
        assert_allclose(est.transform(X[idx]), H[idx], rtol=1e-12, atol=1e-12 * np.abs(H).max())


def test_transform_frames_independent_float32():
    # float32 BLAS kernels round differently for different batch widths.
    X = spectra(40, 20, seed=4).astype(np.float32)
    est = SparseNMF(4, sparsity=0.2, max_iter=60, tol=0, random_state=0).fit(X)
    H = est.transform(X)
    for idx in SUBSETS:
        assert_allclose(est.transform(X[idx]), H[idx], rtol=1e-4, atol=1e-6 * H.max())


# --- bad input ------------------------------------------------------------------


def _with(value, where=(0, 0)):
    X = small_data()
    X[where] = value
    return X


@pytest.mark.parametrize(
    "params, X, match",
    [
        ({}, _with(-1.0), "Negative values in data passed to SparseNMF"),
        ({}, _with(np.nan), "Input X contains NaN"),
        ({}, _with(np.inf), "Input X contains infinity"),
        ({}, np.empty((0, 8)), "0 sample"),
        ({}, np.empty((5, 0)), "0 feature"),
        ({}, np.ones(8), "Expected 2D array"),
        ({"n_components": 0}, small_data(), "'n_components' parameter of SparseNMF must be an int in"),
        ({"n_components": 1.5}, small_data(), "'n_components' parameter"),
        ({"beta_loss": "euclidean"}, small_data(), "'beta_loss' parameter of SparseNMF"),
        ({"beta_loss": -1.0}, small_data(), "'beta_loss' parameter of SparseNMF"),
        ({"sparsity": -0.1}, small_data(), "'sparsity' parameter of SparseNMF must be a float in the range"),
        ({"max_iter": 0}, small_data(), "'max_iter' parameter"),
        ({"tol": -1.0}, small_data(), "'tol' parameter"),
        ({"init": "nndsvd"}, small_data(), "'init' parameter"),
        ({"beta_loss": "itakura-saito"}, _with(0.0), "must be strictly positive, but it contains zeros"),
        ({"beta_loss": 0}, _with(0.0), "must be strictly positive, but it contains zeros"),
    ],
)
def test_fit_rejects_bad_input(params, X, match):
    with pytest.raises(ValueError, match=match):
        SparseNMF(**{"n_components": 2, **params}).fit(X)


def test_zeros_are_fine_for_positive_beta():
    X = _with(0.0)
    for beta in [0.5, "kullback-leibler", "frobenius"]:
        est = fit_quietly(SparseNMF(2, beta_loss=beta, max_iter=20, random_state=0), X)
        assert np.isfinite(est.transform(X)).all()


@pytest.mark.parametrize(
    "X, match",
    [
        (_with(-1.0), "Negative values in data passed to SparseNMF"),
        (_with(np.nan), "Input X contains NaN"),
        (_with(np.inf), "Input X contains infinity"),
        (_with(0.0), "must be strictly positive"),
        (small_data()[:, :5], "X has 5 features, but SparseNMF is expecting 8 features"),
        (np.empty((0, 8)), "0 sample"),
    ],
)
def test_transform_rejects_bad_input(X, match):
    est = fit_quietly(SparseNMF(2, beta_loss="itakura-saito", max_iter=5, random_state=0), small_data())
    with pytest.raises(ValueError, match=match):
        est.transform(X)


def test_inverse_transform_rejects_wrong_width():
    est = fit_quietly(SparseNMF(2, max_iter=5, random_state=0), small_data())
    with pytest.raises(ValueError, match="X has 3 columns but this SparseNMF has 2 components"):
        est.inverse_transform(np.ones((4, 3)))
    with pytest.raises(ValueError, match="Input contains NaN"):
        est.inverse_transform(np.full((4, 2), np.nan))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_user_data_is_never_modified(dtype):
    X = small_data().astype(dtype)
    X[0, 0] = 0.0
    X_copy = X.copy()
    X.setflags(write=False)  # any in-place write would raise
    est = fit_quietly(SparseNMF(3, sparsity=0.1, max_iter=20, random_state=0), X)
    components = est.components_.copy()
    H = est.transform(X)
    H.setflags(write=False)
    H_copy = H.copy()
    est.inverse_transform(H)
    est.fit_transform(X)
    assert np.array_equal(X, X_copy)
    assert np.array_equal(H, H_copy)
    # transform does not touch the fitted bases either.
    est = fit_quietly(SparseNMF(3, sparsity=0.1, max_iter=20, random_state=0), X)
    est.transform(X)
    assert np.array_equal(est.components_, components)

    # Writable Fortran-ordered data, passed straight through validation.
    XF = np.asfortranarray(small_data().astype(dtype))
    XF_copy = XF.copy()
    est = fit_quietly(SparseNMF(3, max_iter=20, random_state=0), XF)
    est.transform(XF)
    assert np.array_equal(XF, XF_copy)
