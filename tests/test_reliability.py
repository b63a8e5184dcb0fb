"""Reliability: persistence, determinism, interrupted fits, property-based tests, degenerate SDRs.

References: the estimator before a pickle / joblib round trip, the same fit
with n_jobs=1, the same fit stopped after k iterations by ``max_iter=k``,
invariants of the models (non-negativity, finiteness, the Wiener outputs
summing to the mixture, exact scale equivariance under powers of two), and
the documented values of the SDR metrics.
"""

import os
import pickle
import warnings

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.validation import check_is_fitted

import sklearn_unfold
from sklearn_unfold import DeepNMF, DiscriminativeNMF, NeuralNMF, SparseNMF, SpeechEnhancer, magnitude_sdr, sdr
from sklearn_unfold._nmf import network as _nmf_network
from sklearn_unfold._nmf import trainer as _nmf_trainer
from sklearn_unfold._nmf import updates as _nmf_updates
from sklearn_unfold._nmf.scaling import safe_scale, scaled_sparsity
from sklearn_unfold.exceptions import FitInterruptedWarning
from conftest import source_mixture

try:
    from sklearn_unfold.unfolded_mrf import UnfoldedBP, UnfoldedMeanField
except ImportError:  # pragma: no cover - another engineer's module
    UnfoldedBP = UnfoldedMeanField = None
try:
    from sklearn_unfold.pad_nmf import PhysicsAwareDeepNMF
except ImportError:  # pragma: no cover - another engineer's module
    PhysicsAwareDeepNMF = None

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError:  # pragma: no cover
    given = None

needs_hypothesis = pytest.mark.skipif(given is None, reason="hypothesis is not installed")

F, R = 6, 3


def mixture(n=80, n_context=2, seed=0, dtype=np.float64):
    return source_mixture(n, F, n_context, 2, seed, dtype)


def deep_params(**kwargs):
    base = dict(n_components=R, n_layers=4, n_trained_layers=2, n_context=2, sparsity=0.1, max_iter=6,
                tol=0.0, bases_max_iter=15, random_state=0)
    base.update(kwargs)
    return base


def spectra(n=60, n_features=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.gamma(1.0, size=(n, 3)) @ rng.gamma(1.0, size=(3, n_features)) + 0.01


def labels_data(seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(60, 3)
    return X, np.column_stack([X[:, 0] > 0, X[:, 0] + X[:, 1] > 0]).astype(int)


# --------------------------------------------------------------------------
# Every estimator, fitted small: (estimator, fit args, data for the methods)
# --------------------------------------------------------------------------
def fitted_estimators():
    X, Y = mixture()
    S = spectra()
    cases = {
        "SparseNMF": (SparseNMF(3, sparsity=0.1, max_iter=30, random_state=0), (S,), S),
        "SparseNMF-batched": (SparseNMF(3, max_iter=30, random_state=0, batch_size=16), (S,), S),
        "DeepNMF": (DeepNMF(**deep_params()), (X, Y), X),
        "DeepNMF-partial": (DeepNMF(**deep_params()), (X, Y), X),
        "DiscriminativeNMF": (
            DiscriminativeNMF(**{k: v for k, v in deep_params().items() if k != "n_trained_layers"}), (X, Y), X
        ),
        "NeuralNMF": (NeuralNMF(ranks=[4, 2], max_iter=20, random_state=0), (S, (S[:, 0] > S[:, 0].mean()).astype(int)), S),
    }
    if UnfoldedMeanField is not None:
        Xl, Yl = labels_data()
        cases["UnfoldedMeanField"] = (UnfoldedMeanField(n_layers=2, graph="chain", random_state=0), (Xl, Yl), Xl)
        cases["UnfoldedBP"] = (UnfoldedBP(n_layers=2, graph="chain", lambda_=0.5, random_state=0), (Xl, Yl), Xl)
    rng = np.random.default_rng(0)
    clean = np.sin(np.arange(2000) / 5.0)[None, :] * rng.uniform(0.5, 1.0, (4, 1))
    noisy = clean + 0.3 * rng.standard_normal(clean.shape)
    cases["SpeechEnhancer"] = (
        SpeechEnhancer(DeepNMF(**deep_params(n_context=2)), sample_rate=8000, n_context=2, max_frames=0.5,
                       random_state=0),
        (noisy, clean),
        noisy,
    )
    if PhysicsAwareDeepNMF is not None:
        cases["PhysicsAwareDeepNMF"] = (
            PhysicsAwareDeepNMF(**deep_params(n_trained_layers=3), hankel_size=1), (X, Y), X
        )
    return cases


CASES = fitted_estimators()


def test_every_public_estimator_is_covered():
    public = {name for name in sklearn_unfold.__all__ if isinstance(getattr(sklearn_unfold, name), type)}
    assert public <= {key.split("-")[0] for key in CASES}


def fit_case(name):
    """A fitted clone of ``CASES[name]`` (by three partial_fit calls for '-partial')."""
    est, args, data = CASES[name]
    est = clone(est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if name.endswith("-partial"):
            for _ in range(3):
                est.partial_fit(*args)
        else:
            est.fit(*args)
    return est, args, data


def outputs(est, args, data):
    """Everything a fitted estimator computes from data, by method name."""
    out = {}
    for method in ("predict", "transform", "predict_proba", "decision_function"):
        if hasattr(est, method):
            try:
                out[method] = getattr(est, method)(data)
            except ValueError:  # e.g. NeuralNMF.decision_function without labels
                continue
    if hasattr(est, "score") and len(args) == 2:
        out["score"] = est.score(*args)
    return out


# --------------------------------------------------------------------------
# Persistence
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_pickle_and_joblib_round_trip(name, tmp_path):
    est, args, data = fit_case(name)
    before = outputs(est, args, data)
    assert before
    path = tmp_path / "model.joblib"
    joblib.dump(est, path)
    for restored in (pickle.loads(pickle.dumps(est)), joblib.load(path)):
        assert type(restored) is type(est)
        assert joblib.hash(restored.get_params()) == joblib.hash(est.get_params())
        after = outputs(restored, args, data)
        assert after.keys() == before.keys()
        for method, value in before.items():
            assert_array_equal(after[method], value, err_msg=f"{name}.{method}")


@pytest.mark.parametrize("name", ["SparseNMF", "DeepNMF-partial"])
def test_partial_fit_continues_identically_after_a_round_trip(name):
    est, args, _ = fit_case(name)
    if name == "SparseNMF":
        est = clone(est).partial_fit(*args)
    restored = pickle.loads(pickle.dumps(est))
    est.partial_fit(*args)
    restored.partial_fit(*args)
    for attr in ("components_", "trained_components_", "bases_"):
        if hasattr(est, attr):
            assert_array_equal(getattr(restored, attr), getattr(est, attr))


# --------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_same_random_state_is_bit_identical(name):
    a, args, data = fit_case(name)
    b, _, _ = fit_case(name)
    for method, value in outputs(a, args, data).items():
        assert_array_equal(outputs(b, args, data)[method], value, err_msg=f"{name}.{method}")


THREADED = [name for name in CASES if {"n_jobs", "batch_size"} <= set(CASES[name][0].get_params(deep=False))]


@pytest.mark.parametrize("name", THREADED)
@pytest.mark.parametrize("batch_size", [7, 4096])
def test_n_jobs_gives_bit_identical_results(name, batch_size):
    est, args, data = CASES[name]
    results = []
    for n_jobs in (1, 2):
        model = clone(est).set_params(n_jobs=n_jobs, batch_size=batch_size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for _ in range(2 if name.endswith("-partial") else 1):
                model = model.partial_fit(*args) if name.endswith("-partial") else model.fit(*args)
        results.append((model, outputs(model, args, data)))
    (one, out1), (two, out2) = results
    for attr in ("bases_", "trained_components_", "update_components_", "reconstruction_components_"):
        if hasattr(one, attr):
            assert_array_equal(getattr(two, attr), getattr(one, attr))
    assert two.loss_curve_ == one.loss_curve_
    for method, value in out1.items():
        assert_array_equal(out2[method], value, err_msg=f"{name}.{method}")


# --------------------------------------------------------------------------
# KeyboardInterrupt: stop cleanly with a warning, or leave the estimator as it was
# --------------------------------------------------------------------------
def interrupt_on_call(monkeypatch, module, name, k):
    """Make ``module.name`` raise KeyboardInterrupt on its k-th call (counting from 1)."""
    original = getattr(module, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == k:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


@pytest.mark.parametrize("batch_size, calls_per_iteration", [(None, 1), (16, 4)])
def test_sparse_nmf_interrupt_keeps_the_last_completed_iteration(monkeypatch, batch_size, calls_per_iteration):
    X = spectra(60)
    params = dict(n_components=3, sparsity=0.1, max_iter=50, tol=0, random_state=0, batch_size=batch_size)
    # Interrupted in iteration 4: the activation update of its second chunk (or of it).
    interrupt_on_call(monkeypatch, _nmf_updates, "update_activations", 3 * calls_per_iteration + min(2, calls_per_iteration))
    with pytest.warns(FitInterruptedWarning, match="interrupted by the user"):
        est = SparseNMF(**params).fit(X)
    monkeypatch.undo()
    assert est.n_iter_ == 3 and len(est.loss_curve_) == 4
    reference = SparseNMF(**{**params, "max_iter": 3}).fit(X)
    assert_array_equal(est.components_, reference.components_)
    assert est.loss_curve_ == reference.loss_curve_
    # transform runs max_iter iterations too: compare with the same setting.
    assert_array_equal(est.transform(X), reference.set_params(max_iter=50).transform(X))


def test_sparse_nmf_interrupt_before_any_iteration_leaves_it_unfitted(monkeypatch):
    X = spectra(60)
    interrupt_on_call(monkeypatch, _nmf_updates, "update_activations", 1)
    est = SparseNMF(3, random_state=0)
    with pytest.raises(KeyboardInterrupt):
        est.fit(X)
    assert vars(est) == vars(SparseNMF(3, random_state=0))
    with pytest.raises(NotFittedError):
        check_is_fitted(est)


@pytest.mark.parametrize("batch_size", [4096, 20])
def test_deep_nmf_interrupt_keeps_the_last_accepted_update(monkeypatch, batch_size):
    X, Y = mixture()
    n_chunks = -(-len(X) // batch_size)
    params = deep_params(max_iter=20, batch_size=batch_size)
    # Calls: one evaluation at the start, then one per tried update (a chunk each).
    interrupt_on_call(monkeypatch, _nmf_trainer, "chunk_loss_and_gradients", 5 * n_chunks + 2)
    with pytest.warns(FitInterruptedWarning, match="interrupted by the user"):
        est = DeepNMF(**params).fit(X, Y)
    monkeypatch.undo()
    assert 1 <= est.n_iter_ < 20 and len(est.loss_curve_) == est.n_iter_ + 1
    reference = DeepNMF(**{**params, "max_iter": est.n_iter_}).fit(X, Y)
    assert reference.n_iter_ == est.n_iter_
    assert_array_equal(est.trained_components_, reference.trained_components_)
    assert est.loss_curve_ == reference.loss_curve_
    assert_array_equal(est.predict(X), reference.predict(X))


@pytest.mark.parametrize(
    "module, name, k",
    [
        (_nmf_updates, "update_activations", 2),  # while the sparse NMF bases are learned
        (_nmf_network, "fixed_activations", 1),  # while the fixed layers are computed
    ],
)
def test_deep_nmf_interrupt_before_training_changes_nothing(monkeypatch, module, name, k):
    X, Y = mixture()
    fresh = DeepNMF(**deep_params())
    interrupt_on_call(monkeypatch, module, name, k)
    with pytest.raises(KeyboardInterrupt):
        fresh.fit(X, Y)
    with pytest.raises(NotFittedError):
        check_is_fitted(fresh)
    assert vars(fresh) == vars(DeepNMF(**deep_params()))
    # A fitted model keeps its previous fit, whole.
    monkeypatch.undo()
    fitted = DeepNMF(**deep_params()).fit(X, Y)
    state = {key: (value.copy() if isinstance(value, np.ndarray) else value) for key, value in vars(fitted).items()}
    prediction = fitted.predict(X)
    interrupt_on_call(monkeypatch, module, name, k)
    with pytest.raises(KeyboardInterrupt):
        fitted.set_params(n_layers=3).fit(X[:50], Y[:50])
    monkeypatch.undo()
    assert vars(fitted).keys() == state.keys()
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            assert_array_equal(vars(fitted)[key], value)
    assert_array_equal(fitted.set_params(n_layers=4).predict(X), prediction)


def test_partial_fit_interrupt_changes_nothing(monkeypatch):
    X, Y = mixture()
    est = DeepNMF(**deep_params()).partial_fit(X, Y)
    layers = est.trained_components_.copy()
    interrupt_on_call(monkeypatch, _nmf_trainer, "chunk_loss_and_gradients", 1)
    with pytest.raises(KeyboardInterrupt):
        est.partial_fit(X, Y)
    assert est.n_steps_ == 1
    assert_array_equal(est.trained_components_, layers)


# --------------------------------------------------------------------------
# Extreme scales: exact equivariance under powers of two (regression tests of safe_scale)
# --------------------------------------------------------------------------
def test_safe_scale():
    assert safe_scale(np.array([3.0])) == 1.0
    assert safe_scale(np.zeros(3)) == 1.0
    assert safe_scale(np.array([1e30], dtype=np.float32)) == 2.0**99
    assert safe_scale(np.array([1e30])) == 1.0  # float64 handles 1e30 as it is
    assert safe_scale(np.array([3e-30], dtype=np.float32)) == 2.0**-99
    assert scaled_sparsity(2.0, 0.5, 2.0**100, np.float32) == 2.0 * 2.0**50
    assert scaled_sparsity(2.0, 1.0, 2.0**100, np.float32) == 2.0
    assert scaled_sparsity(1.0, 3.0, 2.0**-100, np.float32) == float(np.sqrt(np.finfo(np.float32).max))
    # Largest value subnormal: the objective must stay finite (it was NaN).
    est = SparseNMF(1, beta_loss=2.0, sparsity=0.1, max_iter=15, random_state=0).fit(np.array([[5e-324]]))
    assert np.all(np.isfinite(est.loss_curve_)) and np.all(np.isfinite(est.components_))


@pytest.mark.parametrize("beta, mu", [(1.0, 0.3), (2.0, 0.0), (0.5, 0.0), (3.0, 0.0)])
@pytest.mark.parametrize("k", [-100, 100])
def test_sparse_nmf_float32_at_extreme_scales(beta, mu, k):
    # Before the fix: 1e30 float32 data overflowed (NaN bases), 1e-30 data sank under eps.
    X = spectra(50).astype(np.float32)
    X /= np.float32(2.0 ** np.floor(np.log2(X.max())))  # largest value in [1, 2)
    params = dict(n_components=3, beta_loss=beta, sparsity=mu, max_iter=60, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = SparseNMF(**params).fit(X)
        big = SparseNMF(**params).fit(X * np.float32(2.0**k))
    assert_array_equal(big.components_, ref.components_)
    assert_allclose(big.loss_curve_, np.array(ref.loss_curve_) * 2.0 ** (k * beta), rtol=1e-6)
    H = big.transform(X * np.float32(2.0**k))
    assert H.dtype == np.float32 and np.all(np.isfinite(H))
    assert_allclose(H / np.float32(2.0**k), ref.transform(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [-100, 100])
def test_deep_nmf_float32_at_extreme_scales(k):
    X, Y = mixture(seed=3, dtype=np.float32)
    c = np.float32(2.0 ** np.floor(np.log2(X.max())))
    X, Y = X / c, Y / c
    ref = DeepNMF(**deep_params()).fit(X, Y)
    f = np.float32(2.0**k)
    big = DeepNMF(**deep_params(bases=ref.bases_)).fit(X * f, Y * f)
    assert_array_equal(big.trained_components_, ref.trained_components_)
    assert_allclose(big.loss_, ref.loss_ * 2.0 ** (2 * k), rtol=1e-6)
    assert_allclose(big.predict(X * f) / f, ref.predict(X), rtol=1e-6, atol=1e-7)
    assert_allclose(ref.predict(X * f) / f, ref.predict(X), rtol=1e-6, atol=1e-7)
    assert big.score(X * f, Y * f) == pytest.approx(ref.score(X, Y), rel=1e-5)


# --------------------------------------------------------------------------
# Degenerate separation problems: documented, finite SDRs
# --------------------------------------------------------------------------
def test_zero_energy_source_and_noise_free_mixture_give_documented_sdrs():
    X, Y = mixture(seed=4)
    n_features = X.shape[1]
    # Noise-free mixture: the noise source is silent, the mixture is the speech.
    Y_clean = np.hstack([X, np.zeros_like(X)])
    clean = DeepNMF(**deep_params()).fit(X, Y_clean)
    score = clean.score(X, Y_clean)
    assert np.isfinite(score) and score > 10  # nothing to remove: a near-perfect estimate
    assert np.all(np.isfinite(clean.predict(X)))
    # Silent speech: the estimate cannot have any target part; about -156.5 dB as documented.
    Y_silent = np.hstack([np.zeros_like(X), X])
    silent = DeepNMF(**deep_params()).fit(X, Y_silent)
    prediction = silent.predict(X)
    assert np.all(np.isfinite(prediction)) and np.all(prediction >= 0)
    s = silent.score(X, Y_silent)
    assert np.isfinite(s)
    if prediction[:, :F].any():
        assert s == pytest.approx(-10 * np.log10(1 / np.finfo(np.float64).eps), abs=0.1)
    else:
        assert s == 0.0
    # The metrics' own conventions: both silent is 0 dB, a perfect estimate about +156.5 dB.
    assert magnitude_sdr(np.zeros((3, 4)), np.zeros((3, 4))) == 0.0
    assert magnitude_sdr(Y[:, :n_features], Y[:, :n_features]) == pytest.approx(156.5, abs=0.1)
    # A waveform SDR against a silent reference is undefined and says so.
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="all zero"):
        sdr(np.vstack([rng.standard_normal(600), np.zeros(600)]), rng.standard_normal((2, 600)))
    wave = rng.standard_normal(600)
    assert sdr(wave, wave) == pytest.approx(156.5, abs=0.1)


# --------------------------------------------------------------------------
# Property-based tests (hypothesis)
# --------------------------------------------------------------------------
if given is not None:
    SCALES = [1e-30, 1e-8, 1.0, 1e8, 1e30]
    # Deterministic and file-free by default (a fixed set of 30 examples per
    # test, fast and reproducible in CI); SKLEARN_UNFOLD_FUZZ=500 explores
    # 500 fresh random examples per test instead.
    _FUZZ = int(os.environ.get("SKLEARN_UNFOLD_FUZZ", "0"))
    PROPERTY = settings(
        max_examples=_FUZZ or 30,
        deadline=None,
        derandomize=not _FUZZ,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )

    @st.composite
    def nonneg_arrays(draw, max_samples=7, max_features=5, scales=SCALES, n_features=None, n_samples=None):
        """Non-negative data: zeros, all-zero rows, any scale, float32 or float64."""
        n = n_samples if n_samples is not None else draw(st.integers(1, max_samples))
        f = n_features if n_features is not None else draw(st.integers(1, max_features))
        unit = draw(hnp.arrays(np.float64, (n, f), elements=st.one_of(st.just(0.0), st.floats(0.0, 1.0))))
        zero_rows = draw(st.lists(st.integers(0, n - 1), max_size=n))
        unit[zero_rows] = 0.0
        dtype = draw(st.sampled_from([np.float32, np.float64]))
        return (unit * draw(st.sampled_from(scales))).astype(dtype)

    def assert_sound(array, dtype=None, name=""):
        array = np.asarray(array)
        assert np.all(np.isfinite(array)), f"{name}: non-finite values"
        assert np.all(array >= 0), f"{name}: negative values"
        if dtype is not None:
            assert array.dtype == dtype, f"{name}: {array.dtype} != {dtype}"

    def clear_value_error(exc, beta, *arrays):
        """The only ValueError an NMF may raise on non-negative finite data: zeros with beta <= 0."""
        return beta <= 0 and any((A == 0).any() for A in arrays) and "strictly positive" in str(exc)

    @needs_hypothesis
    @PROPERTY
    @given(
        X=nonneg_arrays(),
        beta=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0]),
        mu=st.sampled_from([0.0, 0.1, 5.0]),
        n_components=st.integers(1, 3),
        batch_size=st.sampled_from([None, 2]),
    )
    def test_sparse_nmf_outputs_are_sound(X, beta, mu, n_components, batch_size):
        est = SparseNMF(n_components, beta_loss=beta, sparsity=mu, max_iter=15, random_state=0,
                        batch_size=batch_size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            try:
                H = est.fit_transform(X)
            except ValueError as exc:
                assert clear_value_error(exc, beta, X), exc
                return
            online = clone(est).partial_fit(X).partial_fit(X)
        assert_sound(H, X.dtype, "transform")
        assert_sound(est.components_, X.dtype, "components_")
        assert np.all(np.linalg.norm(est.components_, axis=1) <= 1 + 1e-5)
        assert np.all(np.isfinite(est.loss_curve_))
        assert_sound(est.inverse_transform(H), X.dtype, "inverse_transform")
        assert_sound(online.components_, X.dtype, "partial_fit components_")

    def separation_data(draw, scales):
        n_context = draw(st.sampled_from([1, 2]))
        n_freqs = draw(st.integers(1, 3))
        n = draw(st.integers(1, 6))
        sources = [draw(nonneg_arrays(n_samples=n, n_features=n_context * n_freqs, scales=scales)) for _ in range(2)]
        dtype = sources[0].dtype
        sources = [S.astype(dtype) for S in sources]
        return n_context, n_freqs, sources[0] + sources[1], np.hstack(sources)

    def check_separator(est, X, Y, n_freqs, beta1, beta2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            try:
                est.fit(X, Y)
            except ValueError as exc:
                assert clear_value_error(exc, min(beta1, beta2), X, Y), exc
                return
        estimates = est.predict(X)
        assert_sound(estimates, X.dtype, "predict")
        assert_sound(est.transform(X), X.dtype, "transform")
        assert np.isfinite(est.score(X, Y))
        # The Wiener-like outputs share out (at most) the mixture's target frame.
        # Not always all of it: where every activation vanished (strong sparsity,
        # or a frame below the dtype's floor relative to the loudest one) the
        # filter's 0 / floor gives all-zero estimates.
        target = X[:, -n_freqs:].astype(np.float64)
        total = estimates.astype(np.float64).reshape(len(X), -1, n_freqs).sum(axis=1)
        tight = 1e-4 if X.dtype == np.float32 else 1e-10
        assert np.all(total <= target * (1 + tight) + 2 * np.finfo(X.dtype).smallest_subnormal), (total, target)

    @needs_hypothesis
    @PROPERTY
    @given(
        data=st.data(),
        beta1=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
        beta2=st.sampled_from([0.0, 1.0, 2.0]),
        mu=st.sampled_from([0.0, 1.0]),
        n_trained=st.integers(0, 3),
        batch_size=st.sampled_from([1, 4096]),
        discriminative=st.booleans(),
    )
    def test_deep_nmf_outputs_are_sound(data, beta1, beta2, mu, n_trained, batch_size, discriminative):
        n_context, n_freqs, X, Y = separation_data(data.draw, SCALES)
        kwargs = dict(n_components=2, n_layers=3, n_context=n_context, sparsity=mu, beta_loss=beta1,
                      target_loss=beta2, max_iter=4, bases_max_iter=8, batch_size=batch_size, random_state=0)
        est = DiscriminativeNMF(**kwargs) if discriminative else DeepNMF(n_trained_layers=n_trained, **kwargs)
        check_separator(est, X, Y, n_freqs, beta1, beta2)
        if hasattr(est, "trained_components_"):
            assert_sound(est.trained_components_, X.dtype, "trained_components_")
            est.partial_fit(X, Y)
            assert_sound(est.predict(X), X.dtype, "predict after partial_fit")

    @needs_hypothesis
    @pytest.mark.skipif(PhysicsAwareDeepNMF is None, reason="pad_nmf is not available")
    @PROPERTY
    @given(data=st.data(), n_trained=st.integers(0, 3), hankel=st.sampled_from([None, 1]))
    def test_physics_aware_deep_nmf_outputs_are_sound(data, n_trained, hankel):
        # Scales within float32's comfortable range; the extremes are the strict xfail below.
        n_context, n_freqs, X, Y = separation_data(data.draw, [1e-3, 1.0, 1e3])
        est = PhysicsAwareDeepNMF(n_components=2, n_layers=3, n_trained_layers=n_trained, n_context=n_context,
                                  hankel_size=hankel if n_context > 1 else None, max_iter=3, bases_max_iter=5,
                                  random_state=0)
        check_separator(est, X, Y, n_freqs, 1.0, 2.0)

    @needs_hypothesis
    @PROPERTY
    @given(X=nonneg_arrays(), ranks=st.sampled_from([[1], [2, 1], [3, 2]]))
    def test_neural_nmf_outputs_are_sound(X, ranks):
        # init='random': 'hierarchical' has the known failure of the strict xfail below.
        est = NeuralNMF(ranks=ranks, max_iter=10, init="random", random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            S = est.fit_transform(X)
        assert_sound(S, X.dtype, "transform")
        assert all(np.all(np.isfinite(A)) and np.all(A >= 0) for A in est.factors_)
        assert np.all(np.isfinite(est.loss_curve_))


def test_neural_nmf_hierarchical_init_on_rank_deficient_data():
    X = np.array([[0.0, 7.6e-6], [0.0, 0.0], [0.0, 3.8e-6]])
    S = NeuralNMF(ranks=[2, 1], max_iter=10, random_state=0).fit_transform(X)
    assert np.all(np.isfinite(S))


@pytest.mark.skipif(PhysicsAwareDeepNMF is None, reason="pad_nmf is not available")
@pytest.mark.parametrize("n_trained_layers", [0, 2])
def test_physics_aware_deep_nmf_float32_at_1e30(n_trained_layers):
    X, Y = mixture(seed=5, dtype=np.float32)
    f = np.float32(1e30)
    params = dict(deep_params(n_trained_layers=n_trained_layers), hankel_size=1, reconstruction_penalty=0.5)
    est = PhysicsAwareDeepNMF(**params).fit(X * f, Y * f)
    for out in (est.predict(X * f), est.reconstruct(X * f), est.transform(X * f)):
        assert np.all(np.isfinite(out)) and np.all(out >= 0)
    # The network is scale-equivariant: the same fit on X / 1e30 predicts the same up to the factor.
    small = PhysicsAwareDeepNMF(**params).fit(X, Y)
    np.testing.assert_allclose(est.predict(X * f) / f, small.predict(X), rtol=2e-3, atol=1e-6)
