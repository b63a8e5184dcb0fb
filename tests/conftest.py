"""Shared test helpers: the mixture the DeepNMF family is tested on, independent references.

Import the helpers (``from conftest import source_mixture``) where a module
needs them at import time, or request the fixtures of the same names.
Every reference here is written from the textbook formula, never from the
code under test.
"""

import os

# scikit-learn's Array API dispatch (tests/test_array_api.py) needs scipy's, switched on before
# scipy is first imported; scikit-learn 1.6 even refuses to import its test utilities (the
# estimator checks) without it once array-api-compat is installed. numpy inputs are unaffected.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy.special import xlogy  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402


def source_mixture(n=120, n_freqs=6, n_context=2, n_sources=2, seed=0, dtype=np.float64):
    """Context-stacked mixture X (n, T*F) and sources y (n, L*T*F), as the DeepNMF family reads them.

    Each source is a few non-negative spectral shapes with sparse gains; the
    mixture is their sum. Row t of a stacked array holds frames t..t+T-1 of
    the spectrogram, the target frame last.
    """
    rng = np.random.default_rng(seed)
    n_frames = n + n_context - 1
    spectra = [
        rng.gamma(0.5, size=(n_freqs, 3)) @ rng.gamma(0.5, size=(3, n_frames)) + 0.01 for _ in range(n_sources)
    ]

    def stack(S):
        return np.hstack([S[:, k : k + n].T for k in range(n_context)])

    return stack(sum(spectra)).astype(dtype), np.hstack([stack(S) for S in spectra]).astype(dtype)


def ref_divergence(X, Y, beta):
    """Dense beta-divergence summed over all entries, the textbook formula (0 log 0 = 0)."""
    if beta == 0:
        return float(np.sum(X / Y - np.log(X / Y) - 1.0))
    if beta == 1:
        return float(np.sum(xlogy(X, X) - xlogy(X, Y) - X + Y))
    if beta == 2:
        return 0.5 * float(np.sum((X - Y) ** 2))
    terms = X**beta + (beta - 1.0) * Y**beta - beta * X * Y ** (beta - 1.0)
    return float(np.sum(terms) / (beta * (beta - 1.0)))


def finite_difference_gradient(f, x, h=1e-6):
    """Central finite differences of a scalar ``f`` at every entry of ``x`` (relative steps)."""
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    for index in np.ndindex(x.shape):
        step = h * max(abs(x[index]), 1.0)
        old = x[index]
        x[index] = old + step
        up = f(x)
        x[index] = old - step
        down = f(x)
        x[index] = old
        grad[index] = (up - down) / (2 * step)
    return grad


@pytest.fixture(name="source_mixture")
def _source_mixture():
    return source_mixture


@pytest.fixture(name="ref_divergence")
def _ref_divergence():
    return ref_divergence


@pytest.fixture(name="finite_difference_gradient")
def _finite_difference_gradient():
    return finite_difference_gradient


@pytest.fixture
def one_blas_thread():
    """BLAS limited to one thread, for modules of tiny fits on a loaded machine."""
    with threadpool_limits(limits=1):
        yield
