"""The batched NNLS solver and its derivative, against scipy and finite differences."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import nnls as scipy_nnls
from sklearn.exceptions import ConvergenceWarning

from sklearn_unfold._nnls import (
    _masked_solve,
    nnls,
    nnls_backward,
    power_of_two_exponent,
)


def scipy_columns(A, X):
    """Reference: one scipy.optimize.nnls call per column."""
    out = [scipy_nnls(A, X[:, j]) for j in range(X.shape[1])]
    return np.stack([s for s, _ in out], axis=1), np.array([r for _, r in out])


def assert_kkt(A, X, S, rtol=1e-9):
    """Independent optimality check: S >= 0, gradient >= 0, complementarity."""
    W = A.T @ (X - A @ S)  # minus the gradient
    scale = np.linalg.norm(A, axis=0).max() * np.linalg.norm(X, axis=0) + 1e-300
    assert np.all(S >= 0)
    assert np.all(W <= rtol * scale)
    assert np.all(np.abs(W[S > 0]) <= rtol * np.broadcast_to(scale, W.shape)[S > 0])


@pytest.mark.parametrize("m, k, n", [(1, 1, 5), (6, 1, 7), (5, 5, 30), (20, 6, 40), (12, 9, 25), (40, 15, 60)])
@pytest.mark.parametrize("signs", ["nonnegative", "mixed"])
def test_matches_scipy_full_rank(m, k, n, signs):
    rng = np.random.default_rng(m * 100 + k)
    A = rng.standard_normal((m, k))
    X = rng.standard_normal((m, n))
    if signs == "nonnegative":
        A, X = np.abs(A), np.abs(X)
    S, passive = nnls(A, X)
    S_ref, _ = scipy_columns(A, X)
    assert_allclose(S, S_ref, rtol=1e-10, atol=1e-12)
    assert_array_equal(passive, S > 0)
    assert_kkt(A, X, S)


def test_degenerate_exact_fit_with_zeros():
    # x = A s with zeros in s: the residual is 0, so the gradient vanishes on
    # the zero entries too (no strict complementarity).
    rng = np.random.default_rng(1)
    A = np.abs(rng.standard_normal((15, 8)))
    S_true = np.abs(rng.standard_normal((8, 30)))
    S_true[rng.random(S_true.shape) < 0.5] = 0.0
    X = A @ S_true
    S, _ = nnls(A, X)
    assert_allclose(S, S_true, rtol=1e-9, atol=1e-10)
    assert_allclose(S, scipy_columns(A, X)[0], rtol=1e-9, atol=1e-10)


def test_degenerate_trivial_columns():
    rng = np.random.default_rng(2)
    A = np.abs(rng.standard_normal((6, 4)))
    X = np.column_stack([np.zeros(6), -np.abs(rng.standard_normal(6)), A[:, 2] * 3.0, rng.standard_normal(6)])
    S, passive = nnls(A, X)
    assert_array_equal(S[:, 0], 0.0)  # x = 0
    assert_array_equal(S[:, 1], 0.0)  # A^T x < 0: nothing helps
    assert_allclose(S[:, 2], [0, 0, 3, 0], atol=1e-12)  # one column of A exactly
    assert_allclose(S, scipy_columns(A, X)[0], rtol=1e-10, atol=1e-12)
    assert_array_equal(passive, S > 0)


def test_zero_column_in_A_is_never_used():
    rng = np.random.default_rng(3)
    A = np.abs(rng.standard_normal((10, 5)))
    A[:, 1] = 0.0
    X = np.abs(rng.standard_normal((10, 20)))
    S, _ = nnls(A, X)
    assert_array_equal(S[1], 0.0)
    assert_allclose(S, scipy_columns(A, X)[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", ["duplicate_columns", "wide", "collinear_triplet"])
def test_rank_deficient_residual_matches_scipy(case):
    # The minimizer is not unique, so compare what is: the residual, and the
    # optimality conditions.
    rng = np.random.default_rng(4)
    if case == "duplicate_columns":
        A = np.abs(rng.standard_normal((8, 4)))
        A = np.column_stack([A, A[:, 0], 2 * A[:, 2]])
    elif case == "wide":
        A = rng.standard_normal((5, 9))
    else:
        A = np.abs(rng.standard_normal((7, 3)))
        A = np.column_stack([A, A[:, 0] + A[:, 1]])
    X = rng.standard_normal((A.shape[0], 40))
    S, _ = nnls(A, X)
    _, rnorm = scipy_columns(A, X)
    assert_allclose(np.linalg.norm(X - A @ S, axis=0), rnorm, rtol=1e-9, atol=1e-12)
    assert_kkt(A, X, S)


def test_ill_conditioned_matches_scipy():
    rng = np.random.default_rng(5)
    U, _ = np.linalg.qr(rng.standard_normal((30, 6)))
    V, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    A = U @ np.diag(np.logspace(0, -4, 6)) @ V.T  # condition number 1e4
    X = rng.standard_normal((30, 20))
    S, _ = nnls(A, X)
    S_ref, rnorm = scipy_columns(A, X)
    assert_allclose(np.linalg.norm(X - A @ S, axis=0), rnorm, rtol=1e-10)
    assert_allclose(S, S_ref, rtol=1e-5, atol=1e-8 * np.abs(S_ref).max())


@pytest.mark.parametrize("start", ["random", "all", "previous"])
def test_warm_start_gives_the_same_solution(start):
    rng = np.random.default_rng(6)
    A = np.abs(rng.standard_normal((25, 10)))
    X = np.abs(rng.standard_normal((25, 50)))
    S_cold, P_cold = nnls(A, X)
    if start == "random":
        warm = rng.random(S_cold.shape) < 0.5
    elif start == "all":
        warm = np.ones(S_cold.shape, dtype=bool)
    else:
        warm = nnls(A * (1 + 0.05 * rng.random(A.shape)), X)[1]
    S_warm, P_warm = nnls(A, X, passive=warm)
    assert_allclose(S_warm, S_cold, rtol=1e-11, atol=1e-13)
    assert_array_equal(P_warm, P_cold)


def test_singular_warm_start_falls_back():
    # A warm passive set holding two equal columns makes A_J^T A_J singular.
    rng = np.random.default_rng(7)
    a = np.abs(rng.standard_normal((6, 3)))
    A = np.column_stack([a, a[:, 0]])
    X = A @ np.abs(rng.standard_normal((4, 10))) + 0.01 * np.abs(rng.standard_normal((6, 10)))
    S, _ = nnls(A, X, passive=np.ones((4, 10), dtype=bool))
    assert_allclose(np.linalg.norm(X - A @ S, axis=0), scipy_columns(A, X)[1], rtol=1e-9)
    assert_kkt(A, X, S)


def test_float32():
    rng = np.random.default_rng(8)
    A = np.abs(rng.standard_normal((12, 5))).astype(np.float32)
    X = np.abs(rng.standard_normal((12, 9))).astype(np.float32)
    S, _ = nnls(A, X)
    assert S.dtype == np.float32
    assert_allclose(S, scipy_columns(A.astype(float), X.astype(float))[0], rtol=1e-3, atol=1e-4)


def test_max_iter_warns_and_stays_feasible():
    rng = np.random.default_rng(9)
    A = np.abs(rng.standard_normal((20, 10)))
    X = np.abs(rng.standard_normal((20, 5)))
    with pytest.warns(ConvergenceWarning, match="did not reach a KKT point"):
        S, _ = nnls(A, X, max_iter=1)
    assert np.all(S >= 0)


def test_columns_are_independent():
    # Solving a subset of columns gives the same numbers as the full batch.
    rng = np.random.default_rng(10)
    A = np.abs(rng.standard_normal((15, 7)))
    X = rng.standard_normal((15, 40))
    S, _ = nnls(A, X)
    S_sub, _ = nnls(A, X[:, 5:9])
    assert_allclose(S_sub, S[:, 5:9], rtol=1e-13, atol=1e-15)


def _well_posed_problem(seed):
    """A full-rank problem whose passive sets are stable under tiny perturbations."""
    rng = np.random.default_rng(seed)
    A = rng.uniform(0.2, 1.0, size=(9, 5))
    X = rng.uniform(0.0, 1.0, size=(9, 6))
    S, P = nnls(A, X)
    W = A.T @ (X - A @ S)
    # Strict complementarity with a margin: FD steps cannot change the sets.
    assert S[P].min() > 1e-3
    assert (-W[~P]).min() > 1e-4
    assert P.any() and (~P).any()  # both kinds of entries are exercised
    return rng, A, X, S, P


def test_backward_matches_finite_differences():
    rng, A, X, S, P = _well_posed_problem(11)
    G_out = rng.standard_normal(S.shape)
    grad_X, grad_A = nnls_backward(A, X, S, P, G_out)

    def f(A_, X_):
        S_, _ = scipy_columns(A_, X_)
        return np.vdot(G_out, S_)

    h = 1e-6
    fd_A = np.zeros_like(A)
    for idx in np.ndindex(A.shape):
        E = np.zeros_like(A)
        E[idx] = h
        fd_A[idx] = (f(A + E, X) - f(A - E, X)) / (2 * h)
    fd_X = np.zeros_like(X)
    for idx in np.ndindex(X.shape):
        E = np.zeros_like(X)
        E[idx] = h
        fd_X[idx] = (f(A, X + E) - f(A, X - E)) / (2 * h)
    assert_allclose(grad_A, fd_A, rtol=1e-6, atol=1e-7)
    assert_allclose(grad_X, fd_X, rtol=1e-6, atol=1e-7)


def test_backward_is_zero_off_support():
    # Rows of S that are zero do not move: a gradient placed there propagates nothing.
    rng, A, X, S, P = _well_posed_problem(11)
    G_out = np.where(P, 0.0, rng.standard_normal(S.shape))
    grad_X, grad_A = nnls_backward(A, X, S, P, G_out)
    assert_array_equal(grad_X, 0.0)
    assert_array_equal(grad_A, 0.0)


# ------------------------------------------------------------------- units


@pytest.mark.parametrize(
    "largest, exponent", [(1.0, 0), (1.999, 0), (2.0, 1), (0.75, -1), (1e300, 996), (1e-300, -997), (3e38, 127)]
)
def test_power_of_two_exponent(largest, exponent):
    X = np.array([[0.0, -largest], [largest / 4, 0.0]])
    assert power_of_two_exponent(X) == exponent
    assert 1.0 <= np.abs(np.ldexp(X, -exponent)).max() < 2.0


@pytest.mark.parametrize("X", [np.zeros((2, 3)), np.zeros((0, 3)), np.array([[1.0, np.nan]]), np.array([[np.inf]])])
def test_power_of_two_exponent_leaves_degenerate_data_alone(X):
    assert power_of_two_exponent(X) == 0


@pytest.mark.parametrize("e_A, e_X", [(-300, 300), (600, 0), (0, 900), (-500, -500), (500, -400)])
def test_units_change_nothing_but_the_scale_bit_for_bit(e_A, e_X):
    # q(a A, x X) = (x / a) q(A, X): with powers of two, exactly. Before, the
    # normal equations overflowed (A at 2**600: A^T A = inf) or lost the
    # KKT tolerance.
    rng = np.random.default_rng(12)
    A = np.abs(rng.standard_normal((15, 6)))
    X = rng.standard_normal((15, 20))
    S, P = nnls(A, X)
    S2, P2 = nnls(np.ldexp(A, e_A), np.ldexp(X, e_X))
    assert_array_equal(S2, np.ldexp(S, e_X - e_A))
    assert_array_equal(P2, P)


@pytest.mark.parametrize("scale", [1e-25, 1e25])
def test_float32_at_extreme_scales(scale):
    # float32 squares overflow at 1.8e19 and underflow under 1e-19.
    rng = np.random.default_rng(13)
    A = np.abs(rng.standard_normal((12, 5))).astype(np.float32)
    X = np.abs(rng.standard_normal((12, 9))).astype(np.float32)
    S, _ = nnls(A * np.float32(scale), X * np.float32(scale))
    assert S.dtype == np.float32
    assert_allclose(S, scipy_columns(A.astype(float), X.astype(float))[0], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("scale", [1e-40, 1e40])
def test_singular_fallback_does_not_depend_on_units(scale):
    # Two equal columns in J make G[J, J] singular (pinv fallback); a fifth
    # variable off J gives the system a row off J. Its diagonal used to be 1,
    # which set pinv's relative cutoff: at 1e-40 all of G[J, J] fell under it.
    rng = np.random.default_rng(14)
    a = np.abs(rng.standard_normal((8, 3)))
    A = np.column_stack([a, a[:, 0], np.abs(rng.standard_normal(8))])
    X = np.abs(rng.standard_normal((8, 6)))
    G, C = A.T @ A, A.T @ X
    passive = np.ones((5, 6), dtype=bool)
    passive[4] = False
    Z = _masked_solve(G, C, passive)
    assert np.linalg.norm(Z) > 0
    assert_allclose(_masked_solve(G * scale, C * scale, passive), Z, rtol=1e-9, atol=1e-12 * np.abs(Z).max())
