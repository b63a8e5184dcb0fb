"""Tests for sklearn_unfold._divergences against independent dense references.

The references are the textbook elementwise formulas (Févotte & Idier 2011,
eq. 2), written here with explicit loops or with scipy.special, never with the
code under test.
"""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.special import rel_entr, xlogy
from sklearn.decomposition._nmf import _beta_divergence as sk_beta_divergence

from sklearn_unfold._nmf.divergences import (
    beta_divergence,
    beta_divergence_grad_parts,
    beta_loss_to_float,
    eps_for,
    mm_exponent,
)

BETAS = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]


def scalar_divergence(x, y, beta):
    """Textbook d_beta(x | y) for two scalars, with 0 log 0 = 0."""
    if beta == 0:
        return x / y - math.log(x / y) - 1.0
    if beta == 1:
        return (x * math.log(x / y) if x > 0 else 0.0) - x + y
    return (x**beta + (beta - 1.0) * y**beta - beta * x * y ** (beta - 1.0)) / (beta * (beta - 1.0))


def loop_divergence(X, Y, beta):
    """Sum of scalar_divergence over all entries, with an explicit loop."""
    return math.fsum(
        scalar_divergence(float(x), float(y), beta) for x, y in zip(np.ravel(X), np.ravel(Y))
    )


def elementwise_divergence(X, Y, beta):
    """Vectorized elementwise reference, used for finite differences."""
    if beta == 0:
        return X / Y - np.log(X / Y) - 1.0
    if beta == 1:
        return xlogy(X, X) - xlogy(X, Y) - X + Y
    return (X**beta + (beta - 1.0) * Y**beta - beta * X * Y ** (beta - 1.0)) / (beta * (beta - 1.0))


def positive_pair(shape=(7, 5), seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.1, 3.0, size=shape), rng.uniform(0.1, 3.0, size=shape)


# --- beta_loss_to_float -------------------------------------------------------


@pytest.mark.parametrize(
    "beta_loss, expected",
    [
        ("frobenius", 2.0),
        ("kullback-leibler", 1.0),
        ("itakura-saito", 0.0),
        (0, 0.0),
        (0.5, 0.5),
        (3, 3.0),
        (np.float32(1.5), 1.5),
    ],
)
def test_beta_loss_to_float_accepts_names_and_numbers(beta_loss, expected):
    beta = beta_loss_to_float(beta_loss)
    assert type(beta) is float
    assert beta == expected


@pytest.mark.parametrize(
    "beta_loss, match",
    [
        ("euclidean", "Unknown beta_loss 'euclidean'"),
        ("2", "Unknown beta_loss"),
        (-0.5, ">= 0"),
        (np.nan, ">= 0"),
        (np.inf, ">= 0"),
        (True, "must be a float or a name"),
        (None, "must be a float or a name"),
        ([1.0], "must be a float or a name"),
    ],
)
def test_beta_loss_to_float_rejects_bad_values(beta_loss, match):
    with pytest.raises(ValueError, match=match):
        beta_loss_to_float(beta_loss)


# --- eps_for, mm_exponent -----------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eps_for_is_tiny_and_keeps_beta_gradients_finite(dtype):
    eps = eps_for(dtype)
    assert eps == eps_for(np.dtype(dtype))
    assert 0 < eps < 1e-8
    e = dtype(eps)
    # The beta < 1 gradients form x / eps**3: it must neither overflow nor be 0 / 0.
    assert e**3 > 0
    assert np.isfinite(dtype(1.0) / e**3)
    assert dtype(1.0) + e == dtype(1.0)


def test_eps_for_scales_with_dtype():
    assert eps_for(np.float64) < 1e-70
    assert eps_for(np.float32) > eps_for(np.float64)


@pytest.mark.parametrize(
    "beta, expected",
    [
        (0.0, 0.5), (0.5, 1 / 1.5), (0.99, 1 / 1.01), (1.0, 1.0),
        (1.5, 1.0), (2.0, 1.0), (3.0, 0.5), (4.0, 1 / 3),
    ],
)
def test_mm_exponent_matches_fevotte_idier_table(beta, expected):
    assert mm_exponent(beta) == pytest.approx(expected, rel=1e-15)


# --- beta_divergence ----------------------------------------------------------


@pytest.mark.parametrize("beta", BETAS + [0.25, 1.2, 2.5])
def test_beta_divergence_matches_loop_reference(beta):
    X, Y = positive_pair()
    assert_allclose(beta_divergence(X, Y, beta), loop_divergence(X, Y, beta), rtol=1e-12)


def test_beta_divergence_special_cases_match_scipy():
    X, Y = positive_pair(seed=1)
    # beta = 2: half the squared Euclidean distance.
    assert_allclose(beta_divergence(X, Y, 2), 0.5 * np.sum((X - Y) ** 2), rtol=1e-12)
    # beta = 1: generalized KL, rel_entr(x, y) = x log(x / y).
    assert_allclose(beta_divergence(X, Y, 1), np.sum(rel_entr(X, Y) - X + Y), rtol=1e-12)
    # beta = 0: Itakura-Saito.
    assert_allclose(beta_divergence(X, Y, 0), np.sum(X / Y - np.log(X / Y) - 1), rtol=1e-12)


@pytest.mark.parametrize("beta", [0.5, 1.0, 1.5, 2.0, 3.0])
def test_beta_divergence_with_zeros_in_data(beta):
    # d(0 | y) = y**beta / beta for beta > 0 (0 log 0 = 0 for KL).
    X, Y = positive_pair(seed=2)
    X[X < 1.0] = 0.0
    assert (X == 0).any()
    value = beta_divergence(X, Y, beta)
    assert np.isfinite(value)
    assert_allclose(value, loop_divergence(X, Y, beta), rtol=1e-12)
    zeros = X == 0
    assert_allclose(
        beta_divergence(X[zeros], Y[zeros], beta), np.sum(Y[zeros] ** beta) / beta, rtol=1e-12
    )


@pytest.mark.parametrize("beta", ["frobenius", "kullback-leibler", "itakura-saito", 0.5, 1.5, 3.0])
def test_beta_divergence_matches_sklearn(beta):
    rng = np.random.default_rng(3)
    X = rng.uniform(0.1, 2.0, size=(9, 6))
    W = rng.uniform(0.1, 1.0, size=(9, 3))
    H = rng.uniform(0.1, 1.0, size=(3, 6))
    b = beta_loss_to_float(beta)
    assert_allclose(beta_divergence(X, W @ H, b), sk_beta_divergence(X, W, H, beta), rtol=1e-10)


@pytest.mark.parametrize("beta", [0.5, 1.0, 1.5, 2.0, 3.0])
def test_beta_divergence_matches_sklearn_with_zeros(beta):
    # sklearn drops the zero entries of X, which is the same sum for beta > 0.
    rng = np.random.default_rng(4)
    X = rng.uniform(0.0, 2.0, size=(9, 6))
    X[X < 0.6] = 0.0
    W = rng.uniform(0.1, 1.0, size=(9, 3))
    H = rng.uniform(0.1, 1.0, size=(3, 6))
    assert_allclose(beta_divergence(X, W @ H, beta), sk_beta_divergence(X, W, H, beta), rtol=1e-10)


@pytest.mark.parametrize("beta", BETAS)
def test_beta_divergence_basic_properties(beta):
    X, Y = positive_pair(seed=5)
    assert beta_divergence(X, Y, beta) > 0
    assert beta_divergence(X, X, beta) == pytest.approx(0.0, abs=1e-12)
    # Scale property: d(l x | l y) = l**beta d(x | y).
    lam = 3.0
    assert_allclose(
        beta_divergence(lam * X, lam * Y, beta), lam**beta * beta_divergence(X, Y, beta), rtol=1e-12
    )


@pytest.mark.parametrize("beta", BETAS)
def test_beta_divergence_float32_close_to_float64(beta):
    X, Y = positive_pair(seed=6)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    value = beta_divergence(X32, Y32, beta)
    assert isinstance(value, float)
    assert_allclose(value, loop_divergence(X32, Y32, beta), rtol=1e-5)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 1.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_beta_divergence_model_zeros_are_floored(beta, dtype):
    # A zero in the model is replaced by eps_for(dtype): large but finite.
    X, Y = positive_pair(seed=7)
    X, Y = X.astype(dtype), Y.astype(dtype)
    Y[0, 0] = 0.0
    value = beta_divergence(X, Y, beta)
    assert np.isfinite(value)
    Y_floor = Y.astype(np.float64)
    Y_floor[0, 0] = eps_for(dtype)
    assert_allclose(value, loop_divergence(X.astype(np.float64), Y_floor, beta), rtol=1e-4)


def test_beta_divergence_does_not_modify_inputs():
    X, Y = positive_pair(seed=8)
    Y[0, 0] = 0.0
    X0, Y0 = X.copy(), Y.copy()
    for beta in BETAS:
        beta_divergence(X, Y, beta)
    assert np.array_equal(X, X0) and np.array_equal(Y, Y0)


# --- beta_divergence_grad_parts ----------------------------------------------


@pytest.mark.parametrize("beta", BETAS + [0.25, 2.5])
def test_grad_parts_match_finite_differences(beta):
    X, Y = positive_pair(seed=9)
    if beta > 0:
        X[0, :2] = 0.0  # zeros in the data are allowed when beta > 0
    pos, neg = beta_divergence_grad_parts(X, Y, beta)
    assert pos.shape == neg.shape == Y.shape
    assert (pos >= 0).all() and (neg >= 0).all()
    # The divergence is a sum of elementwise terms: the partial derivative
    # with respect to Y[i, j] is the derivative of its own term.
    h = 1e-6
    fd = (elementwise_divergence(X, Y + h, beta) - elementwise_divergence(X, Y - h, beta)) / (2 * h)
    assert_allclose(pos - neg, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("beta", BETAS)
def test_grad_parts_match_textbook_derivative(beta):
    X, Y = positive_pair(seed=10)
    pos, neg = beta_divergence_grad_parts(X, Y, beta)
    assert_allclose(pos, Y ** (beta - 1.0), rtol=1e-13)
    assert_allclose(neg, X * Y ** (beta - 2.0), rtol=1e-13)


@pytest.mark.parametrize("beta", BETAS)
def test_grad_parts_of_summed_divergence_by_finite_differences(beta):
    # Same check through beta_divergence itself (central difference on the sum).
    X, Y = positive_pair(shape=(3, 4), seed=11)
    pos, neg = beta_divergence_grad_parts(X, Y, beta)
    h = 1e-6
    fd = np.empty_like(Y)
    for idx in np.ndindex(Y.shape):
        Yp, Ym = Y.copy(), Y.copy()
        Yp[idx] += h
        Ym[idx] -= h
        fd[idx] = (loop_divergence(X, Yp, beta) - loop_divergence(X, Ym, beta)) / (2 * h)
    assert_allclose(pos - neg, fd, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("beta", BETAS)
def test_grad_parts_float32_finite_with_zero_model(beta):
    X, Y = positive_pair(seed=12)
    X, Y = X.astype(np.float32), Y.astype(np.float32)
    Y[1, 1] = 0.0
    pos, neg = beta_divergence_grad_parts(X, Y, beta)
    assert pos.dtype == neg.dtype == np.float32
    assert np.isfinite(pos).all() and np.isfinite(neg).all()
    assert Y[1, 1] == 0.0  # input untouched
