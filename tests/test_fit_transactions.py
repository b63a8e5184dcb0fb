"""Every fit of the NMF estimators is a transaction; inference reads fitted state only.

Issue 11: a fault at any stage of fit / partial_fit (an exception, Ctrl-C,
a late validation error) leaves the estimator exactly as it was; a clean
interrupt of the training loop keeps a whole new model with a
FitInterruptedWarning; set_params without a refit changes no output.
(The MRF estimators and NeuralNMF have the same tests in their own files.)
"""

import pickle
import warnings

import numpy as np

import pytest
from numpy.testing import assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.validation import check_is_fitted

from sklearn_unfold import DeepNMF, DiscriminativeNMF, PhysicsAwareDeepNMF, SparseNMF
from sklearn_unfold import deep_nmf, sparse_nmf
from sklearn_unfold._nmf import hankel, network, trainer, updates
from sklearn_unfold.exceptions import FitInterruptedWarning
from conftest import source_mixture

F = 5


def mixture(n=60, n_context=2, seed=0):
    return source_mixture(n, F, n_context, 2, seed)


COMMON = dict(n_components=2, n_layers=4, n_context=2, sparsity=0.1, max_iter=4, tol=0.0, bases_max_iter=10, random_state=0)
DEEP_FAMILY = {
    "DeepNMF": DeepNMF(n_trained_layers=2, **COMMON),
    "DiscriminativeNMF": DiscriminativeNMF(**COMMON),
    "PhysicsAwareDeepNMF": PhysicsAwareDeepNMF(
        n_trained_layers=3, hankel_size=2, reconstruction_bases="dnmf", reconstruction_penalty=0.3, **COMMON
    ),
    "PhysicsAwareDeepNMF(given)": PhysicsAwareDeepNMF(n_trained_layers=2, reconstruction_bases="snmf", **COMMON),
}

# Stages of a DeepNMF-family fit, as (module, function) the fit calls in that order.
STAGES = [
    (deep_nmf, "check_source_weights"),  # validation of y's meaning
    (updates, "update_activations"),  # the sparse NMF bases
    (network, "fixed_activations"),  # the fixed layers
    (trainer, "chunk_loss_and_gradients"),  # first evaluation, before any accepted update
    (deep_nmf, "scale_power"),  # after training, before the attributes are set
]


def snapshot(est):
    return pickle.dumps(vars(est))


def fail_on_call(monkeypatch, module, name, exc):
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        raise exc

    monkeypatch.setattr(module, name, wrapper)
    return original


def quiet_fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


@pytest.mark.parametrize("name", DEEP_FAMILY)
@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s[1])
@pytest.mark.parametrize("exc", [RuntimeError("injected"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_a_fault_at_any_stage_leaves_the_previous_model(monkeypatch, name, stage, exc):
    X, y = mixture()
    module, function = stage
    if function == "update_activations" and DEEP_FAMILY[name].get_params().get("hankel_size"):
        module = hankel  # block-Hankel bases are learned by their own solver
    # Unfitted: stays unfitted, with exactly its parameters.
    fresh = clone(DEEP_FAMILY[name])
    before = snapshot(fresh)
    fail_on_call(monkeypatch, module, function, exc)
    with pytest.raises(type(exc)):
        quiet_fit(fresh, X, y)
    monkeypatch.undo()
    assert snapshot(fresh) == before
    with pytest.raises(NotFittedError):
        check_is_fitted(fresh)
    # Fitted: a refit with other parameters on other data fails -> the old model, whole.
    fitted = quiet_fit(clone(DEEP_FAMILY[name]), X, y)
    before, prediction = snapshot(fitted), fitted.predict(X)
    fitted.set_params(n_layers=3)
    fail_on_call(monkeypatch, module, function, exc)
    with pytest.raises(type(exc)):
        quiet_fit(fitted, X[:40], y[:40])
    monkeypatch.undo()
    fitted.set_params(n_layers=4)
    assert snapshot(fitted) == before
    assert_array_equal(fitted.predict(X), prediction)


@pytest.mark.parametrize("name", ["DeepNMF", "PhysicsAwareDeepNMF(given)"])
@pytest.mark.parametrize("exc", [RuntimeError("injected"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_partial_fit_fault_leaves_the_previous_model(monkeypatch, name, exc):
    X, y = mixture()
    est = clone(DEEP_FAMILY[name]).partial_fit(X, y)
    before, prediction = snapshot(est), est.predict(X)
    fail_on_call(monkeypatch, trainer, "chunk_loss", exc)
    with pytest.raises(type(exc)):
        est.partial_fit(X, y)
    monkeypatch.undo()
    assert snapshot(est) == before
    assert_array_equal(est.predict(X), prediction)


def test_n_jobs_zero_is_refused_before_anything_changes():
    # Issue 11, defect 4: n_jobs=0 passed validation and was refused by joblib
    # only after the bases stage, leaving new bases_ next to the old layers.
    X, y = mixture()
    for est in DEEP_FAMILY.values():
        fitted = quiet_fit(clone(est), X, y)
        before = snapshot(fitted)
        with pytest.raises(ValueError, match="'n_jobs' parameter"):
            fitted.set_params(n_jobs=0).fit(X[:40], y[:40])
        fitted.set_params(n_jobs=None)
        assert snapshot(fitted) == before


@pytest.mark.parametrize("name", DEEP_FAMILY)
def test_clean_interrupt_keeps_a_whole_new_model(monkeypatch, name):
    # Ctrl-C during the training loop after one accepted update: the new
    # model, with every attribute from this fit (not a mix with the old one).
    X, y = mixture()
    old = quiet_fit(clone(DEEP_FAMILY[name]).set_params(sparsity=0.5), X[:30], y[:30])
    original = trainer.chunk_loss_and_gradients
    calls = {"n": 0}

    def interrupt_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "chunk_loss_and_gradients", interrupt_on_third)
    with pytest.warns(FitInterruptedWarning, match="interrupted by the user"):
        old.set_params(sparsity=0.1, max_iter=20).fit(X, y)
    monkeypatch.undo()
    new = old
    assert new.n_iter_ >= 1 and len(new.loss_curve_) == new.n_iter_ + 1
    assert new.get_params()["sparsity"] == 0.1 and new._spec_.sparsity == 0.1
    if new.get_params().get("reconstruction_bases") == "dnmf":
        # Two passes: the interrupt ended the first; the second never ran.
        assert new.n_iter_ < 20
        return
    reference = quiet_fit(clone(DEEP_FAMILY[name]).set_params(max_iter=new.n_iter_), X, y)
    assert_array_equal(new.bases_, reference.bases_)
    assert_array_equal(new.predict(X), reference.predict(X))


@pytest.mark.parametrize("name", DEEP_FAMILY)
def test_inference_reads_fitted_state_only(name):
    # Issue 11, defect 12: predict / score read n_components, n_layers,
    # n_trained_layers (and more) from the constructor, so set_params without
    # a refit changed the score (5.91 -> 5.44).
    X, y = mixture()
    est = quiet_fit(clone(DEEP_FAMILY[name]), X, y)
    outputs = (est.predict(X), est.transform(X), est.score(X, y), est.n_params_)
    other = dict(
        n_components=3, n_layers=7, n_context=1, sparsity=5.0, beta_loss="frobenius", target_loss=1.0,
        source_weights=[1.0, 1.0], max_iter=1, tol=0.5, bases_max_iter=3, random_state=5,
    )
    if "n_trained_layers" in est.get_params():
        other["n_trained_layers"] = 1
    if isinstance(est, PhysicsAwareDeepNMF):
        other.update(reconstruction_bases=None, hankel_size=None, context_layers=False, reconstruction_penalty=2.0)
    est.set_params(**other)
    assert_array_equal(est.predict(X), outputs[0])
    assert_array_equal(est.transform(X), outputs[1])
    assert est.score(X, y) == outputs[2]
    assert est.n_params_ == outputs[3]


def test_sparse_nmf_transform_reads_the_fitted_model():
    X, _ = mixture()
    est = SparseNMF(2, sparsity=0.2, random_state=0).fit(X)
    H = est.transform(X)
    est.set_params(sparsity=3.0, beta_loss="frobenius", n_components=4, init="random")
    assert_array_equal(est.transform(X), H)


@pytest.mark.parametrize("exc", [RuntimeError("injected"), KeyboardInterrupt()], ids=["error", "interrupt"])
@pytest.mark.parametrize("stage", [(sparse_nmf, "learn_sparse_nmf"), (updates, "update_activations"), (sparse_nmf, "warn_not_converged")], ids=lambda s: s[1])
def test_sparse_nmf_fault_leaves_the_previous_model(monkeypatch, stage, exc):
    X, _ = mixture()
    est = SparseNMF(2, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X)
    before, H = snapshot(est), est.transform(X)
    fail_on_call(monkeypatch, *stage, exc)
    with pytest.raises(type(exc)):
        est.set_params(n_components=3).fit(X[:30])
    monkeypatch.undo()
    est.set_params(n_components=2)
    assert snapshot(est) == before
    assert_array_equal(est.transform(X), H)


def test_weights_without_gradient_are_kept():
    # Found while porting the core: where both gradient parts are 0 (every
    # activation underflowed under a huge sparsity), W * 0 / eps zeroed the
    # trained layers for good, and the flat objective accepted it.
    X, y = mixture()
    X, y = X.astype(np.float32), y.astype(np.float32)
    est = quiet_fit(
        DeepNMF(n_components=2, n_layers=25, n_trained_layers=2, n_context=2, sparsity=1e12, max_iter=4, tol=0,
                bases_max_iter=5, random_state=0), X, y
    )
    assert np.all(est.trained_components_.sum(axis=(1, 2)) > 0)
    start = np.ascontiguousarray(est.bases_[:, -F:])
    for W in est.trained_components_:
        assert_array_equal(W, start)
