"""UnfoldedMeanField / UnfoldedBP: every fit is a transaction, predictions read fitted state only.

A fit either replaces the previous model as a whole or, when anything escapes
it (an error found late, a KeyboardInterrupt), leaves the estimator exactly as
it was: the reference is a snapshot of ``vars(estimator)`` before the call
and a fresh fit of a clone.
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.validation import check_is_fitted

from sklearn_unfold import unfolded_mrf
from sklearn_unfold._mrf import training
from sklearn_unfold.exceptions import FitInterruptedWarning
from sklearn_unfold.unfolded_mrf import UnfoldedBP, UnfoldedMeanField

CLASSES = [UnfoldedMeanField, UnfoldedBP]


def data(n=60, seed=0):
    """Three labels, three features (so every observation mode applies)."""
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 3)
    Y = np.column_stack([X[:, 0] > 0, X[:, 0] + X[:, 1] > 0, X[:, 2] > 0.3]).astype(np.int64)
    return X, Y


def rich(cls):
    """A configuration that produces every optional fitted attribute."""
    params = dict(n_layers=3, graph="chain", observation="local+dense", schedule="edge",
                  early_stopping=True, validation_fraction=0.2, max_iter=6, random_state=0)
    if cls is UnfoldedBP:
        params.update(lambda_=[0.5, 1.0, 1.5], train_lambda=True)
    return params


def fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def outputs(est, X, y):
    return {
        "predict_proba": est.predict_proba(X),
        "transform": est.transform(X),
        "predict": est.predict(X),
        "score": est.score(X, y),
        "feature_names": est.get_feature_names_out(),
    }


def assert_same_outputs(actual, expected):
    assert actual.keys() == expected.keys()
    for method, value in expected.items():
        assert_array_equal(actual[method], value, err_msg=method, strict=True)


def snapshot(est):
    return {key: (value.copy() if isinstance(value, np.ndarray) else value) for key, value in vars(est).items()}


def assert_state(est, state):
    """``vars(est)`` holds exactly the names and values of ``state``."""
    assert sorted(vars(est)) == sorted(state)
    for key, value in state.items():
        now = vars(est)[key]
        if isinstance(value, np.ndarray):
            assert_array_equal(now, value, err_msg=key, strict=True)
        else:
            assert now == value, key


# --------------------------------------------------------------------------
# Defect 1: a refit after set_params kept attributes of the previous fit
# --------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("observation, gone", [("local", "dense_coef_"), ("dense", "local_coef_")])
def test_refit_after_set_params_forgets_the_previous_fit(cls, observation, gone):
    X, Y = data()
    est = fit(cls(**rich(cls)), X, Y)
    assert hasattr(est, gone) and hasattr(est, "schedule_") and hasattr(est, "validation_scores_")
    est.set_params(n_layers=2, observation=observation, schedule="none", early_stopping=False)
    if cls is UnfoldedBP:
        est.set_params(lambda_=0.5, train_lambda=False)
    fit(est, X, Y)
    fresh = fit(clone(est), X, Y)
    for name in (gone, "schedule_", "validation_scores_", "best_validation_score_"):
        assert not hasattr(est, name), name
    assert sorted(vars(est)) == sorted(vars(fresh))
    assert_same_outputs(outputs(est, X, Y), outputs(fresh, X, Y))


# --------------------------------------------------------------------------
# Defect 5: a rejected refit left classes_ of the new call on the old network
# --------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CLASSES)
def test_rejected_refit_leaves_the_previous_model(cls):
    X, Y = data()
    est = fit(cls(n_layers=2, graph="chain", max_iter=5, random_state=0), X, Y)
    before = outputs(est, X, Y)
    est.set_params(tied_params=("couplings",))
    state = snapshot(est)
    y = np.where(Y[:, 0] == 1, "yes", "no")
    with pytest.raises(ValueError, match="tied_params"):
        est.fit(X, y)
    assert_state(est, state)
    assert_same_outputs(outputs(est, X, Y), before)


# --------------------------------------------------------------------------
# A fault at any stage of fit: the estimator is exactly the previous one
# --------------------------------------------------------------------------
def fail_after(monkeypatch, owner, name, exc):
    """Let ``owner.name`` run, then raise ``exc`` (its effects are done, the fit is not)."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        original(*args, **kwargs)
        raise exc

    monkeypatch.setattr(owner, name, wrapper)


def fail_on_call(monkeypatch, owner, name, exc, k):
    """Make ``owner.name`` raise ``exc`` on its k-th call (counting from 1)."""
    original = getattr(owner, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == k:
            raise exc
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


STAGES = {
    # X checked (this sets n_features_in_ on the estimator)
    "validation": lambda mp, exc: fail_after(mp, unfolded_mrf, "validate_data", exc),
    "targets": lambda mp, exc: fail_after(mp, unfolded_mrf, "_encode_targets", exc),
    "graph": lambda mp, exc: fail_after(mp, unfolded_mrf, "make_graph", exc),
    "init": lambda mp, exc: fail_after(mp, unfolded_mrf, "init_params", exc),
    # in the first mini-batch: nothing to keep, so even a KeyboardInterrupt propagates
    "first epoch": lambda mp, exc: fail_on_call(mp, training, "loss_and_grad", exc, 1),
    # in the 2nd mini-batch of epoch 4 (3 an epoch)
    "later epoch": lambda mp, exc: fail_on_call(mp, training, "loss_and_grad", exc, 3 * 3 + 2),
    "trainer returned": lambda mp, exc: fail_after(mp, unfolded_mrf._training, "fit_network", exc),
    # every fitted attribute assigned, then a failure
    "store": lambda mp, exc: fail_after(mp, unfolded_mrf._BaseUnfoldedMRF, "_store_fit", exc),
}
# A KeyboardInterrupt after a complete epoch stops cleanly instead (tested below).
FAULTS = [
    (stage, exc)
    for stage in STAGES
    for exc in (RuntimeError, KeyboardInterrupt)
    if (stage, exc) != ("later epoch", KeyboardInterrupt)
]
REFIT = dict(n_layers=2, batch_size=20, max_iter=6, tol=0)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("stage, exc", FAULTS)
def test_fault_at_any_stage_leaves_an_unfitted_estimator_unfitted(monkeypatch, cls, stage, exc):
    X, Y = data()
    est = cls(**REFIT, graph="chain", random_state=0)
    STAGES[stage](monkeypatch, exc)
    with pytest.raises(exc), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, Y)
    assert_state(est, vars(cls(**REFIT, graph="chain", random_state=0)))
    with pytest.raises(NotFittedError):
        check_is_fitted(est)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("stage, exc", FAULTS)
def test_fault_at_any_stage_of_a_refit_keeps_the_previous_model(monkeypatch, cls, stage, exc):
    X, Y = data()
    est = fit(cls(**rich(cls)), X, Y)
    before = outputs(est, X, Y)
    # The refit changes all it can: features, targets (1-D strings), structure, options.
    est.set_params(**REFIT, graph="full", observation="dense", schedule="none", early_stopping=False)
    if cls is UnfoldedBP:
        est.set_params(lambda_=0.5, train_lambda=False)
    state = snapshot(est)
    STAGES[stage](monkeypatch, exc)
    with pytest.raises(exc), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(np.hstack([X, X[:, :1]]), np.where(Y[:, 0] == 1, "yes", "no"))
    monkeypatch.undo()
    assert_state(est, state)
    assert_same_outputs(outputs(est, X, Y), before)


# --------------------------------------------------------------------------
# Ctrl-C after a complete epoch: the model of the last complete epoch, and a warning
# --------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("early_stopping", [False, True])
def test_interrupt_keeps_the_last_complete_epoch(monkeypatch, cls, early_stopping):
    X, Y = data()
    params = dict(n_layers=2, graph="chain", observation="dense", schedule="layer", batch_size=20, max_iter=8, tol=0,
                  early_stopping=early_stopping, validation_fraction=0.25, random_state=0)
    est = fit(cls(**params), X, Y)  # a previous model, replaced by the interrupted fit
    # Three mini-batches an epoch (early stopping: 45 samples, 20 + 20 + 5): stop in the 2nd of epoch 4.
    fail_on_call(monkeypatch, training, "loss_and_grad", KeyboardInterrupt, 3 * 3 + 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            est.fit(X, Y)
        except KeyboardInterrupt:  # a failure, not the end of the test session
            pytest.fail("KeyboardInterrupt after three complete epochs propagated")
    monkeypatch.undo()
    categories = [w.category for w in caught]
    assert categories == [FitInterruptedWarning], categories
    assert "3 completed epoch" in str(caught[0].message)
    reference = fit(cls(**{**params, "max_iter": 3}), X, Y)
    assert est.n_iter_ == 3
    assert sorted(vars(est)) == sorted(vars(reference))
    assert est.loss_curve_ == reference.loss_curve_
    for name in ("coupling_", "bias_", "dense_coef_", "schedule_"):
        assert_array_equal(getattr(est, name), getattr(reference, name), strict=True)
    assert_same_outputs(outputs(est, X, Y), outputs(reference, X, Y))


# --------------------------------------------------------------------------
# Predict-time code reads fitted state only
# --------------------------------------------------------------------------
# Another valid value of every constructor parameter (all differ from rich()).
OTHER_VALUES = {
    "n_layers": 4,
    "graph": "full",
    "image_shape": (1, 3),
    "n_latent": 2,
    "observation": "dense",
    "schedule": "layer",
    "coupling": "directed",
    "tied_params": ("bias", "dense"),
    "l2_regularization": 0.5,
    "learning_rate_init": 0.5,
    "max_iter": 2,
    "tol": 0.25,
    "n_iter_no_change": 2,
    "batch_size": 7,
    "shuffle": False,
    "early_stopping": False,
    "validation_fraction": 0.5,
    "random_state": 7,
    "verbose": 3,
    "lambda_": 0.0,
    "kappa": np.inf,
    "train_lambda": False,
}


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("one_d", [False, True])
def test_set_params_without_refit_changes_no_prediction(cls, one_d):
    X, Y = data()
    params = {**rich(cls), "n_latent": 1}
    if one_d:  # one label: local observation would need a single feature
        Y = np.where(Y[:, 1] == 1, "b", "a")
        params["observation"] = "dense"
    est = fit(cls(**params), X, Y)
    before = outputs(est, X, Y)
    current = est.get_params()
    assert set(current) <= set(OTHER_VALUES), "a new parameter needs another value here"
    changed = {name: OTHER_VALUES[name] for name in current}
    if one_d:
        changed["observation"] = "local"
    for name, value in changed.items():
        same = np.array_equal(np.asarray(value, dtype=object), np.asarray(current[name], dtype=object))
        assert not same, name
    est.set_params(**changed)
    assert_same_outputs(outputs(est, X, Y), before)
