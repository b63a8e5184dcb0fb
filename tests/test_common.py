"""scikit-learn's common checks for every estimator: one table of instances, one of expected failures.

The DeepNMF family is fitted on ``y`` = n_sources blocks of source spectra
stacked like X; the generic checks fit with made-up targets (1-D, one
column, ``make_regression``'s), which the real estimators rightly refuse.
So that the generic checks still exercise the real code, the family enters
the table through a test-only adapter (imbalanced-learn's pattern of a
module-level helper): ``fit``/``partial_fit``/``score`` derive a valid
two-source ``y`` from X (a fixed split of every column, so the sources sum
to the mixture) and call the real methods. The few checks that cannot apply
even then are listed with their reason, and
``test_expected_failures_have_the_stated_cause`` makes sure each one fails
for exactly that reason.
"""

import functools
import inspect
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.metaestimators import available_if
from sklearn.utils.estimator_checks import (
    check_param_validation,
    estimator_checks_generator,
    parametrize_with_checks,
)

from sklearn_unfold import (
    DeepNMF,
    DiscriminativeNMF,
    NeuralNMF,
    PhysicsAwareDeepNMF,
    SparseNMF,
    SpeechEnhancer,
    UnfoldedBP,
    UnfoldedMeanField,
)


def derive_y(X):
    """Two sources summing to X: column j of X split as (w_j, 1 - w_j).

    Inputs the estimators must reject (sparse, non-numeric, not 2-D) are
    passed through, so that the error raised is the one about X.
    """
    if sp.issparse(X):
        return X
    if not isinstance(X, np.ndarray) and _is_array_api_array(X):
        # An Array API array (tests/test_array_api.py): the same split in X's namespace, on its device.
        from array_api_compat import array_namespace, device

        xp = array_namespace(X)
        w = xp.asarray(np.linspace(0.25, 0.75, X.shape[1]), dtype=X.dtype, device=device(X))
        return xp.concat([X * w, X * (1.0 - w)], axis=1)
    try:
        A = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        return X
    if A.ndim != 2:
        return X
    w = np.linspace(0.25, 0.75, A.shape[1])
    return np.hstack([A * w, A * (1.0 - w)])


def _is_array_api_array(X):
    try:
        from array_api_compat import is_array_api_obj
    except ImportError:
        return False
    return is_array_api_obj(X)


class _DerivedTargets:
    """Test-only adapter: the DeepNMF family with ``y`` derived from X (see module docstring)."""

    def fit(self, X, y=None):
        return super().fit(X, derive_y(X))

    # Only where the real estimator has one (PhysicsAwareDeepNMF's 'dnmf' has none).
    @available_if(lambda est: est._supports_partial_fit())
    def partial_fit(self, X, y=None):
        return super().partial_fit(X, derive_y(X))

    def fit_transform(self, X, y=None):
        return super().fit_transform(X, derive_y(X))

    def score(self, X, y=None):
        return super().score(X, derive_y(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        return tags


class DerivedSpeechEnhancer(SpeechEnhancer):
    """Test-only adapter: the clean speech is derived from the noisy waveforms (0.6 X, noise 0.4 X)."""

    def fit(self, X, y=None):
        return super().fit(X, _scaled(X, 0.6))

    def score(self, X, y=None, sample_weight=None):
        return super().score(X, _scaled(X, 0.6), sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        return tags


def _scaled(X, factor):
    if sp.issparse(X):
        return X
    try:
        return np.asarray(X, dtype=np.float64) * factor
    except (TypeError, ValueError):
        return X


class DerivedDeepNMF(_DerivedTargets, DeepNMF):
    pass


class DerivedDiscriminativeNMF(_DerivedTargets, DiscriminativeNMF):
    pass


class DerivedPhysicsAwareDeepNMF(_DerivedTargets, PhysicsAwareDeepNMF):
    pass


ESTIMATORS = [
    SparseNMF(n_components=2, random_state=0, max_iter=500),
    DerivedDeepNMF(n_components=2, n_layers=3, n_trained_layers=2, n_context=1, max_iter=5, random_state=0),
    DerivedDiscriminativeNMF(n_components=2, n_layers=3, n_context=1, max_iter=5, random_state=0),
    DerivedPhysicsAwareDeepNMF(
        # hankel_size=1: some checks set n_components=1, which a larger group cannot divide.
        n_components=2, n_layers=3, n_trained_layers=3, n_context=1, hankel_size=1,
        reconstruction_bases="snmf", reconstruction_penalty=0.5, max_iter=5, random_state=0,
    ),
    # The two-pass configuration, which has no partial_fit.
    DerivedPhysicsAwareDeepNMF(
        n_components=2, n_layers=3, n_trained_layers=3, n_context=1, hankel_size=1,
        reconstruction_bases="dnmf", reconstruction_penalty=0.5, max_iter=5, random_state=0,
    ),
    NeuralNMF(ranks=(3, 2), max_iter=20, random_state=0),
    NeuralNMF(ranks=2, init="random", max_iter=10, random_state=0),
    UnfoldedMeanField(n_layers=2, max_iter=50, graph="chain"),
    UnfoldedBP(n_layers=2, max_iter=50, graph="chain"),
    DerivedSpeechEnhancer(
        DeepNMF(n_components=2, n_layers=2, n_trained_layers=1, max_iter=2, bases_max_iter=3, random_state=0),
        sample_rate=8000, n_context=2, max_frames=None, random_state=0,
    ),
]

# Reasons, per check, for the DeepNMF family (through the adapter), and the
# error each must fail with (checked by test_expected_failures_have_the_stated_cause).
_DEEP_FAMILY = {
    "check_regressors_train": (
        "the check passes a y with fewer samples than X and expects fit to refuse it, but the "
        "adapter derives y from X; besides, predict returns each source's target frame "
        "(n_samples, n_sources * n_frequencies), not y's shape, and score is the SDR in dB, not R^2"
    ),
    "check_regressor_multioutput": (
        "the check wants predict to return y's shape (n_samples, n_sources * n_features_in); "
        "predict returns the target frame of each source"
    ),
}
_DEEP_FAMILY_ERRORS = {
    "check_regressors_train": "number of training examples is not the same as the number of labels",
    "check_regressor_multioutput": r"shape",
}
# The enhancer's adapter derives y (the clean speech) from X, so the checks
# that pass a broken or mismatched y cannot reach fit.
_ADAPTER_Y = "the adapter derives y from X, so the check's own y never reaches fit"
_ENHANCER = {
    "check_regressors_train": f"{_ADAPTER_Y} (the check passes a y with fewer samples than X)",
    "check_supervised_y_no_nan": f"{_ADAPTER_Y} (the check passes a y with inf; the real fit refuses it)",
    "check_regressor_multioutput": f"{_ADAPTER_Y}; predict returns one waveform per row of X, not y's shape",
    "check_n_features_in_after_fitting": (
        "predict takes waveforms of any length (a model is not tied to the length of the training "
        "utterances), so fewer 'features' than in fit is valid input"
    ),
}
_ENHANCER_ERRORS = {
    "check_regressors_train": "number of training examples is not the same as the number of labels",
    "check_supervised_y_no_nan": "should have raised error on fitting array y with inf",
    "check_regressor_multioutput": "shape of the prediction",
    "check_n_features_in_after_fitting": "does not check for consistency between input number",
}
EXPECTED_FAILED_CHECKS = {
    "DerivedSpeechEnhancer": _ENHANCER,
    "DerivedDeepNMF": _DEEP_FAMILY,
    "DerivedDiscriminativeNMF": _DEEP_FAMILY,
    "DerivedPhysicsAwareDeepNMF": _DEEP_FAMILY,
}


def _expected(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


def check_name(check):
    while hasattr(check, "__wrapped__"):
        check = check.__wrapped__
    return check.func.__name__ if isinstance(check, functools.partial) else check.__name__


# A check that starts to pass must leave the table (xfail_strict is scikit-learn >= 1.8).
_STRICT = {"xfail_strict": True} if "xfail_strict" in inspect.signature(parametrize_with_checks).parameters else {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected, **_STRICT)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if check_name(check) not in _expected(estimator):
            check(estimator)
            return
        try:
            check(estimator)
        except Exception as exc:
            # Expected (xfail). Re-raised without the checks' deep traceback,
            # which pytest takes a third of a second to format for each one.
            raise AssertionError(f"{type(exc).__name__}: {exc}") from None


@pytest.mark.parametrize(
    "estimator", [est for est in ESTIMATORS if _expected(est)], ids=lambda est: type(est).__name__
)
def test_expected_failures_have_the_stated_cause(estimator):
    # Each listed check must fail, and for the stated reason.
    seen = set()
    for est, check in estimator_checks_generator(clone(estimator), mark=None):
        name = check_name(check)
        if name not in _expected(estimator):
            continue
        seen.add(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            errors = _ENHANCER_ERRORS if isinstance(estimator, SpeechEnhancer) else _DEEP_FAMILY_ERRORS
            with pytest.raises(Exception, match=errors[name]):
                check(est)
    assert seen == set(_expected(estimator))


@pytest.mark.parametrize(
    "estimator",
    [
        SparseNMF(), DeepNMF(), DiscriminativeNMF(), PhysicsAwareDeepNMF(), NeuralNMF(), UnfoldedMeanField(),
        UnfoldedBP(), SpeechEnhancer(),
    ],
    ids=lambda est: type(est).__name__,
)
def test_param_validation(estimator):
    check_param_validation(type(estimator).__name__, estimator)
