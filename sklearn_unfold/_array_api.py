"""The few array operations that differ between numpy and other Array API libraries.

Under ``sklearn.config_context(array_api_dispatch=True)`` the NMF estimators
accept arrays of any Array API namespace (torch, CuPy, array-api-strict...)
and everything follows X: fitted attributes and outputs stay in X's
namespace and on X's device. The solvers are written once, with ``xp.``
functions; :func:`get_namespace` gives ``numpy`` itself for numpy arrays (and
always when dispatch is off), so the numpy path keeps its numpy-only tricks
(``out=`` buffers, ``einsum``, memory maps, threads) behind the helpers
below, and with dispatch off not one numpy operation changes.

``array-api-compat`` (the ``array-api`` extra) is imported only when a
non-numpy array is met under dispatch.
"""

import math
from contextlib import nullcontext

import numpy as np
from sklearn import get_config

_EXTRA = 'pip install "sklearn_unfold[array-api]"'


def _compat():
    try:
        import array_api_compat
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Non-numpy arrays under array_api_dispatch=True need the array-api-compat package: "
            f"{_EXTRA}"
        ) from error
    return array_api_compat


def get_namespace(*arrays):
    """Namespace of the arrays: ``numpy`` unless dispatch is on and one of them is not numpy.

    None and Python scalars are ignored, and so are inputs that are not
    arrays (lists, data frames): scikit-learn's validation turns those
    into numpy arrays.
    """
    if not get_config()["array_api_dispatch"]:
        return np
    others = [a for a in arrays if a is not None and not isinstance(a, (np.ndarray, np.generic, bool, int, float))]
    if not others:
        return np
    compat = _compat()
    others = [a for a in others if compat.is_array_api_obj(a)]
    if not others:
        return np
    xp = compat.array_namespace(*others)
    return np if compat.is_numpy_namespace(xp) else xp


def is_numpy(xp):
    return xp is np


def device(x):
    """Device of ``x`` (``'cpu'`` for numpy)."""
    if isinstance(x, np.ndarray):
        return "cpu"
    return _compat().device(x)


def asarray(values, xp, *, like, dtype=None):
    """``values`` (e.g. a numpy array) as an array of ``xp`` on the device of ``like``."""
    if is_numpy(xp):
        return np.asarray(values, dtype=dtype)
    return xp.asarray(values, dtype=dtype, device=device(like))


def astype(x, dtype, xp, *, copy=False):
    if is_numpy(xp):
        return x.astype(dtype, copy=copy)
    return xp.astype(x, dtype, copy=copy)


def copy(x, xp):
    return x.copy() if is_numpy(xp) else xp.asarray(x, copy=True)


def ascontiguous(x, xp, dtype=None):
    """A C-ordered numpy array (no copy when already one); other arrays as they are."""
    if is_numpy(xp):
        return np.ascontiguousarray(x, dtype=dtype)
    return x if dtype is None else xp.astype(x, dtype, copy=False)


def size(x):
    """Number of elements (``x.size`` is a method on torch tensors)."""
    return math.prod(x.shape)


def floor_(x, low, xp):
    """``max(x, low)``, in place on numpy."""
    if is_numpy(xp):
        return np.maximum(x, low, out=x)
    return xp.clip(x, min=low)


def ceil_(x, high, xp):
    """``min(x, high)``, in place on numpy."""
    if is_numpy(xp):
        return np.minimum(x, high, out=x)
    return xp.clip(x, max=high)


def row_dots(A, B, xp):
    """``sum(A * B, axis=1)`` for 2-D arrays (einsum on numpy: no temporary)."""
    if is_numpy(xp):
        return np.einsum("rn,rn->r", A, B)
    return xp.sum(A * B, axis=1)


def column_dots(A, B, xp):
    """``sum(A * B, axis=0)`` for 2-D arrays (einsum on numpy: no temporary)."""
    if is_numpy(xp):
        return np.einsum("fr,fr->r", A, B)
    return xp.sum(A * B, axis=0)


def vdot(a, b, xp):
    """``sum(a * b)`` over all entries, as a float."""
    if is_numpy(xp):
        return float(np.vdot(a, b))
    return float(xp.sum(a * b))


def vstack(arrays, xp):
    return np.vstack(arrays) if is_numpy(xp) else xp.concat(list(arrays), axis=0)


def errstate(xp, **kwargs):
    """``np.errstate`` on numpy; other libraries do not warn on floating-point errors."""
    return np.errstate(**kwargs) if is_numpy(xp) else nullcontext()


def numpy_dtype(dtype):
    """The numpy dtype of the same name as ``dtype`` (e.g. ``torch.float32``), for ``np.finfo``."""
    try:
        return np.dtype(dtype)
    except TypeError:
        return np.dtype(str(dtype).rsplit(".", 1)[-1])


def to_numpy(x):
    """A numpy copy (or view) of ``x``, from any namespace and device."""
    if isinstance(x, np.ndarray):
        return x
    compat = _compat()
    xp = compat.array_namespace(x)
    if compat.is_torch_namespace(xp):
        return x.detach().cpu().numpy()
    if compat.is_cupy_namespace(xp):
        return x.get()
    if compat.device(x) != "cpu" and hasattr(xp, "Device"):
        # array-api-strict's simulated devices: move to its CPU device first.
        x = compat.to_device(x, xp.Device("CPU_DEVICE"))
    return np.asarray(x)


def check_same_namespace(X, fitted, estimator, method):
    """Refuse X from another library or device than ``fitted`` (an array set by fit).

    Only under dispatch: with it off, every input becomes numpy and so is
    every fitted array. Array-likes (lists) count as numpy.
    """
    if not get_config()["array_api_dispatch"]:
        return
    X_xp, fitted_xp = get_namespace(X), get_namespace(fitted)
    X_device = device(X) if not is_numpy(X_xp) or isinstance(X, np.ndarray) else "cpu"
    if X_xp is fitted_xp and X_device == device(fitted):
        return
    raise ValueError(
        f"Inputs passed to {type(estimator).__name__}.{method}() must use the same namespace and the same "
        f"device as those passed to fit(): fitted on {fitted_xp.__name__} arrays on {device(fitted)!r}, got "
        f"{X_xp.__name__} arrays on {X_device!r}. Convert X (e.g. torch.asarray(X, device=...)) or refit."
    )


def take(x, indices, axis):
    """``x`` restricted to the numpy integer ``indices`` along ``axis`` (a copy)."""
    xp = get_namespace(x)
    if is_numpy(xp):
        return np.take(x, indices, axis=axis)
    return xp.take(x, asarray(indices, xp, like=x), axis=axis)


def scalar(value, like, xp):
    """``value`` for an operation with ``like``: itself on numpy, else a 0-d array of like's dtype and device.

    The 2023.12 standard (which scikit-learn 1.6 sets array-api-strict to)
    takes no Python scalars in ``where``, ``maximum`` and ``minimum``.
    """
    if is_numpy(xp):
        return value
    return xp.asarray(value, dtype=like.dtype, device=device(like))
