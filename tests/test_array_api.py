"""The NMF estimators on Array API arrays (issue 14): "everything follows X".

Under ``sklearn.config_context(array_api_dispatch=True)`` the estimators fit
and infer on array-api-strict arrays (also on its simulated second device,
which catches any array silently created on the default one) and on torch
tensors, with the same solver code as numpy: the results equal numpy's, the
fitted attributes and outputs stay in X's namespace and on X's device.
scikit-learn checks the variable ``SCIPY_ARRAY_API`` when dispatch is
switched on; this module sets it (only scikit-learn reads it here). The
DeepNMF family enters scikit-learn's check through test_common's adapter,
which derives a valid two-source y from X (in X's namespace).
"""

import inspect

import numpy as np
import pytest
from conftest import source_mixture
from sklearn import clone, config_context
from sklearn.utils.estimator_checks import check_array_api_input

try:  # scikit-learn >= 1.8
    from sklearn.utils.estimator_checks import check_array_api_same_namespace
except ImportError:
    check_array_api_same_namespace = None
from test_common import DerivedDeepNMF, DerivedDiscriminativeNMF, DerivedPhysicsAwareDeepNMF

from sklearn_unfold import DeepNMF, DiscriminativeNMF, PhysicsAwareDeepNMF, SparseNMF
from sklearn_unfold._array_api import device, get_namespace, to_numpy

array_api_strict = pytest.importorskip("array_api_strict")
array_api_compat = pytest.importorskip("array_api_compat")

try:
    import torch
except ImportError:  # torch is optional: its tests are skipped
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


@pytest.fixture(autouse=True)
def _scipy_array_api(monkeypatch, one_blas_thread):
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")


SMALL = dict(n_components=2, n_layers=3, n_context=1, max_iter=5, random_state=0)
ESTIMATORS = [
    SparseNMF(n_components=2, max_iter=50, random_state=0),
    DerivedDeepNMF(n_trained_layers=2, **SMALL),
    DerivedDiscriminativeNMF(**SMALL),
    DerivedPhysicsAwareDeepNMF(
        n_trained_layers=3, hankel_size=1, reconstruction_bases="snmf", reconstruction_penalty=0.5, **SMALL
    ),
]
NAMESPACES = [
    ("array_api_strict", None),
    ("array_api_strict", "device1"),
    pytest.param("torch", "cpu", marks=needs_torch),
]


def _id(estimator):
    return type(estimator).__name__


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
@pytest.mark.parametrize("namespace, device_name", NAMESPACES)
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=_id)
def test_check_array_api_input(estimator, namespace, device_name, dtype_name):
    if "device_name" in inspect.signature(check_array_api_input).parameters:
        device = {"device_name": device_name}
    else:  # older scikit-learn passes its `device` to xp.asarray as it is
        if namespace == "array_api_strict" and device_name is not None:
            pytest.skip("this scikit-learn's check cannot bring arrays on array-api-strict's second device back to "
                        "numpy (test_*_equals_numpy below run on that device)")
        device = {"device": device_name}
    check_array_api_input(_id(estimator), estimator, array_namespace=namespace, dtype_name=dtype_name, **device)


@pytest.mark.parametrize("namespace, device_name", NAMESPACES)
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=_id)
def test_check_array_api_same_namespace(estimator, namespace, device_name):
    if check_array_api_same_namespace is None:
        pytest.skip("this scikit-learn has no check_array_api_same_namespace (test_another_device_than_fit_is_refused "
                    "checks the same here)")
    # predict / transform with numpy input after a fit on another library: one clear error.
    check_array_api_same_namespace(_id(estimator), estimator, array_namespace=namespace, device_name=device_name)


def test_another_device_than_fit_is_refused():
    X, y = source_mixture(n=40, n_freqs=4, n_context=1)
    default, other = array_api_strict.asarray(X), _strict(X)
    with config_context(array_api_dispatch=True):
        model = DeepNMF(n_components=2, n_layers=2, n_context=1, max_iter=2, random_state=0)
        model.fit(other, _strict(y))
        with pytest.raises(ValueError, match=r"DeepNMF.predict\(\) must use the same namespace and the same device"):
            model.predict(default)
        sparse = SparseNMF(n_components=2, max_iter=5, random_state=0).fit(other)
        with pytest.raises(ValueError, match=r"SparseNMF.partial_fit\(\) must use the same namespace"):
            sparse.partial_fit(default)


# --------------------------------------------------------------------------
# The same numbers as numpy, in X's namespace and on its device
# --------------------------------------------------------------------------
def _strict(A):
    return array_api_strict.asarray(A, device=array_api_strict.Device("device1"))


def _torch(A):
    return torch.asarray(A)


CONVERTERS = [pytest.param(_strict, id="strict-device1"), pytest.param(_torch, id="torch", marks=needs_torch)]


def _assert_follows(result, X_xp):
    with config_context(array_api_dispatch=True):
        assert get_namespace(result) is get_namespace(X_xp)
    assert device(result) == device(X_xp)


def _assert_close(expected, result, rtol=1e-5):
    expected, result = np.asarray(expected), to_numpy(result)
    assert result.dtype == expected.dtype
    np.testing.assert_allclose(result, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


@pytest.mark.parametrize("convert", CONVERTERS)
@pytest.mark.parametrize("batch_size", [None, 25])
def test_sparse_nmf_equals_numpy(convert, batch_size):
    X = np.random.default_rng(0).gamma(1.0, 1.0, (60, 8)).astype(np.float32)
    # tol=0: a frame's stopping test sits at the rounding level of float32, so with a tolerance a
    # frame may stop one iteration apart in two libraries; the iterations themselves agree.
    model = SparseNMF(n_components=3, sparsity=0.1, max_iter=30, tol=0.0, random_state=0, batch_size=batch_size)
    H = clone(model).fit_transform(X)
    reference = clone(model).fit(X)
    X_xp = convert(X)
    with config_context(array_api_dispatch=True):
        fitted = clone(model).fit(X_xp)
        H_xp = fitted.transform(X_xp)
        back = fitted.inverse_transform(H_xp)
    for result in (fitted.components_, H_xp, back):
        _assert_follows(result, X_xp)
    _assert_close(reference.components_, fitted.components_)
    _assert_close(H, H_xp)
    _assert_close(reference.inverse_transform(H), back)
    np.testing.assert_allclose(fitted.loss_curve_, reference.loss_curve_, rtol=1e-5)
    assert fitted.n_iter_ == reference.n_iter_


@pytest.mark.parametrize("convert", CONVERTERS)
@pytest.mark.parametrize(
    "make",
    [
        lambda: DeepNMF(n_components=3, n_layers=4, n_trained_layers=2, n_context=2, sparsity=0.1, max_iter=10,
                        bases_max_iter=20, random_state=0),
        lambda: DiscriminativeNMF(n_components=3, n_layers=4, n_context=2, sparsity=0.1, max_iter=10,
                                  bases_max_iter=20, random_state=0),
        lambda: PhysicsAwareDeepNMF(n_components=4, n_layers=4, n_trained_layers=3, n_context=2, sparsity=0.1,
                                    hankel_size=2, reconstruction_bases="dnmf", reconstruction_penalty=0.5,
                                    max_iter=5, bases_max_iter=20, random_state=0),
    ],
    ids=["DeepNMF", "DiscriminativeNMF", "PhysicsAwareDeepNMF"],
)
def test_deep_family_equals_numpy(make, convert):
    X, y = source_mixture(n=80, n_freqs=6, n_context=2, dtype=np.float32)
    reference = make().fit(X, y)
    X_xp, y_xp = convert(X), convert(y)
    with config_context(array_api_dispatch=True):
        fitted = make().fit(X_xp, y_xp)
        predicted, activations = fitted.predict(X_xp), fitted.transform(X_xp)
        score = fitted.score(X_xp, y_xp)
    attributes = ["bases_"] + [
        name for name in ("trained_components_", "update_components_", "reconstruction_components_")
        if hasattr(reference, name)
    ]
    for name in attributes:
        _assert_follows(getattr(fitted, name), X_xp)
        _assert_close(getattr(reference, name), getattr(fitted, name))
    for result in (predicted, activations):
        _assert_follows(result, X_xp)
    _assert_close(reference.predict(X), predicted)
    _assert_close(reference.transform(X), activations)
    assert isinstance(score, float)
    assert score == pytest.approx(reference.score(X, y), rel=1e-4)
    np.testing.assert_allclose(fitted.loss_curve_, reference.loss_curve_, rtol=1e-5)


@pytest.mark.parametrize("convert", CONVERTERS)
def test_partial_fit_follows_x(convert):
    X, y = source_mixture(n=60, n_freqs=5, n_context=1, dtype=np.float32)
    model = DeepNMF(n_components=2, n_layers=3, n_context=1, bases_max_iter=10, random_state=0)
    reference = clone(model).partial_fit(X, y).partial_fit(X, y)
    X_xp, y_xp = convert(X), convert(y)
    with config_context(array_api_dispatch=True):
        fitted = clone(model).partial_fit(X_xp, y_xp).partial_fit(X_xp, y_xp)
    _assert_follows(fitted.trained_components_, X_xp)
    _assert_close(reference.trained_components_, fitted.trained_components_)


def test_dispatch_off_is_numpy():
    """Without dispatch nothing changes: numpy in, numpy out, other arrays converted by numpy."""
    X = np.random.default_rng(1).random((30, 5))
    model = SparseNMF(n_components=2, max_iter=20, random_state=0).fit(X)
    assert get_namespace(array_api_strict.asarray(X)) is np
    assert type(model.components_) is np.ndarray
    with config_context(array_api_dispatch=True):
        # numpy inputs under dispatch take the numpy path too.
        again = SparseNMF(n_components=2, max_iter=20, random_state=0).fit(X)
    np.testing.assert_array_equal(again.components_, model.components_)


@pytest.mark.parametrize("convert", CONVERTERS)
def test_early_stopping_equals_numpy(convert):
    X, y = source_mixture(n=80, n_freqs=6, n_context=2, seed=43, dtype=np.float32)
    groups = np.repeat(np.arange(8), 10)
    model = DeepNMF(n_components=4, n_layers=4, n_trained_layers=2, n_context=2, sparsity=0.1, max_iter=30,
                    tol=0.0, early_stopping=True, validation_fraction=0.5, n_iter_no_change=5,
                    bases_max_iter=20, random_state=0)
    reference = clone(model).fit(X, y, groups=groups)
    X_xp = convert(X)
    with config_context(array_api_dispatch=True):
        fitted = clone(model).fit(X_xp, convert(y), groups=groups)
    _assert_follows(fitted.trained_components_, X_xp)
    _assert_close(reference.trained_components_, fitted.trained_components_)
    np.testing.assert_allclose(fitted.validation_loss_curve_, reference.validation_loss_curve_, rtol=1e-4)
    assert fitted.n_iter_ == reference.n_iter_
