"""Tests for the multiplicative updates in sklearn_unfold._nmf_updates.

Every number compared against comes from an independent reference written
here: the dense objective of eq. 32, the update formulas written entry by
entry, finite differences, scipy's L-BFGS-B, or a plain-update-then-renormalize
algorithm implemented in this file.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.optimize import minimize

from conftest import ref_divergence
from sklearn_unfold._nmf import updates as _nmf_updates
from sklearn_unfold._nmf.chunks import is_memmap_backed
from sklearn_unfold._nmf.divergences import eps_for, mm_exponent
from sklearn_unfold._nmf.updates import (
    activation_ratio,
    fit_sparse_nmf,
    initial_activations,
    learn_sparse_nmf,
    model,
    normalize_columns,
    sparse_nmf_objective,
    update_activations,
    update_bases_normalized,
)

BETAS = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
MUS = [0.0, 0.5]


# --- independent references ----------------------------------------------------


def ref_objective(M, W, H, beta, mu):
    """Eq. 32: D_beta(M | W H) + mu * ||H||_1."""
    return ref_divergence(M, W @ H, beta) + mu * float(np.sum(H))


def unit_columns(W):
    return W / np.sqrt((W**2).sum(axis=0))


def ref_normalized_update(M, W, H, beta, step=1.0):
    """Le Roux et al. (2015) normalization-aware update, entry by entry.

    With unit-norm columns w_r, G = dD/dW~ = (Lam**(beta-1) - M Lam**(beta-2)) H^T
    splits into pos[f, r] = sum_t Lam**(beta-1) H[r, t] and
    neg[f, r] = sum_t M Lam**(beta-2) H[r, t]; the gradient through the
    normalization is G - w_r (w_r . G_r), so
    W[f, r] <- W[f, r] * (neg + W (w_r . pos)) / (pos + W (w_r . neg)).
    """
    F, R = W.shape
    Lam = W @ H
    pos = np.zeros_like(W)
    neg = np.zeros_like(W)
    for f in range(F):
        for r in range(R):
            pos[f, r] = np.sum(Lam[f] ** (beta - 1.0) * H[r])
            neg[f, r] = np.sum(M[f] * Lam[f] ** (beta - 2.0) * H[r])
    new = np.empty_like(W)
    for r in range(R):
        pos_proj = np.dot(W[:, r], pos[:, r])
        neg_proj = np.dot(W[:, r], neg[:, r])
        for f in range(F):
            numer = neg[f, r] + W[f, r] * pos_proj
            denom = pos[f, r] + W[f, r] * neg_proj
            new[f, r] = W[f, r] * (numer / denom) ** step
    return unit_columns(new), pos, neg


def plain_update_then_renormalize(M, W, H, beta):
    """Standard MU step on W (Févotte & Idier) followed by renormalization."""
    Lam = W @ H
    W = W * (((M * Lam ** (beta - 2.0)) @ H.T) / (Lam ** (beta - 1.0) @ H.T)) ** mm_exponent(beta)
    return unit_columns(W)


def problem(F=10, R=3, N=8, seed=0):
    """Strictly positive data, unit-norm bases and positive activations."""
    rng = np.random.default_rng(seed)
    M = rng.uniform(0.1, 2.0, size=(F, N))
    W = unit_columns(rng.uniform(0.05, 1.0, size=(F, R)))
    H = rng.uniform(0.1, 2.0, size=(R, N))
    return M, W, H


def low_rank_problem(seed=0):
    """Noisy rank-4 data, as spectrograms look (multiplicative noise)."""
    rng = np.random.default_rng(seed)
    W0 = rng.gamma(1.0, size=(40, 4))
    H0 = rng.gamma(1.0, size=(4, 60))
    return (W0 @ H0) * (0.7 + 0.6 * rng.random((40, 60)))


# --- initial_activations, model, normalize_columns ---------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_initial_activations_match_frame_mass(dtype):
    M, W, _ = problem()
    M[:, 3] = 0.0
    M, W = M.astype(dtype), W.astype(dtype)
    H0 = initial_activations(M, W)
    assert H0.shape == (W.shape[1], M.shape[1])
    assert H0.dtype == dtype
    expected = M.sum(axis=0) / W.sum()
    assert_allclose(H0, np.tile(expected, (W.shape[1], 1)), rtol=1e-6)
    # The model starts with the frame's total mass; an all-zero frame starts at 0.
    assert_allclose((W @ H0).sum(axis=0), M.sum(axis=0), rtol=1e-5)
    assert (H0[:, 3] == 0).all()
    # Each column depends only on its own frame.
    assert_allclose(initial_activations(M[:, 2:5], W), H0[:, 2:5], rtol=1e-6)


def test_model_floors_at_eps():
    W = np.array([[1.0, 0.0], [0.0, 0.0]])
    H = np.array([[2.0], [3.0]])
    Lam = model(W, H, 1e-9)
    assert_allclose(Lam, [[2.0], [1e-9]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_columns_in_place_and_zero_safe(dtype):
    rng = np.random.default_rng(0)
    W = rng.uniform(size=(6, 4)).astype(dtype)
    W[:, 2] = 0.0
    out = normalize_columns(W, eps_for(dtype))
    assert out is W
    norms = np.linalg.norm(W, axis=0)
    assert_allclose(norms[[0, 1, 3]], 1.0, rtol=1e-6)
    assert (W[:, 2] == 0).all()
    assert np.isfinite(W).all()


def test_sparse_nmf_objective_matches_reference():
    M, W, H = problem(seed=1)
    for beta in BETAS:
        for mu in MUS:
            assert_allclose(
                sparse_nmf_objective(M, W @ H, H, beta, mu), ref_objective(M, W, H, beta, mu), rtol=1e-12
            )


# --- activation update (eq. 33) ----------------------------------------------


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("mu", MUS)
@pytest.mark.parametrize("exponent", [1.0, "mm"])
def test_update_activations_matches_entrywise_formula(beta, mu, exponent):
    M, W, H = problem(seed=2)
    exponent = mm_exponent(beta) if exponent == "mm" else exponent
    M0, W0, H0 = M.copy(), W.copy(), H.copy()
    H_new = update_activations(M, W, H, beta, mu, exponent=exponent)
    Lam = W @ H
    expected = np.empty_like(H)
    for r in range(H.shape[0]):
        for t in range(H.shape[1]):
            P = np.sum(W[:, r] * M[:, t] * Lam[:, t] ** (beta - 2.0))
            Q = np.sum(W[:, r] * Lam[:, t] ** (beta - 1.0)) + mu
            expected[r, t] = H[r, t] * (P / Q) ** exponent
    assert_allclose(H_new, expected, rtol=1e-12)
    # Nothing passed in was modified.
    assert np.array_equal(M, M0) and np.array_equal(W, W0) and np.array_equal(H, H0)


@pytest.mark.parametrize("beta", BETAS)
def test_activation_ratio_shapes(beta):
    M, W, H = problem(seed=3)
    P, Q = activation_ratio(M, W, W @ H, beta, 0.3, 1e-12)
    assert P.shape == H.shape
    assert Q.shape == ((H.shape[0], 1) if beta == 1 else H.shape)
    assert_allclose(np.broadcast_to(Q, H.shape), W.T @ (W @ H) ** (beta - 1.0) + 0.3, rtol=1e-12)


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("mu", MUS)
def test_update_activations_never_increases_any_frame_objective(beta, mu):
    # With the MM exponent the step is majorization-minimization (Févotte &
    # Idier 2011) and the objective is separable over frames, so every frame's
    # own objective must not go up, from any positive starting point.
    rng = np.random.default_rng(4)
    for _ in range(20):
        M = rng.uniform(0.05, 3.0, size=(8, 6))
        W = rng.uniform(0.01, 1.0, size=(8, 3))
        H = rng.uniform(0.01, 3.0, size=(3, 6))
        H_new = update_activations(M, W, H, beta, mu, exponent=mm_exponent(beta))
        for t in range(M.shape[1]):
            before = ref_objective(M[:, t : t + 1], W, H[:, t : t + 1], beta, mu)
            after = ref_objective(M[:, t : t + 1], W, H_new[:, t : t + 1], beta, mu)
            assert after <= before * (1 + 1e-12)


@pytest.mark.parametrize("beta", [1.0, 1.5, 2.0])
@pytest.mark.parametrize("mu", [0.0, 0.3, 1.0])
def test_inference_reaches_the_convex_optimum(beta, mu):
    # For 1 <= beta <= 2 the problem in H is convex: the activations inferred
    # with frozen bases must reach scipy's L-BFGS-B minimum, frame by frame.
    rng = np.random.default_rng(1)
    F, R, N = 12, 4, 5
    W = unit_columns(rng.random((F, R)) + 0.05)
    M = rng.random((F, N)) + 0.1
    W_in = W.copy()
    W_out, H, n_iter, curve = fit_sparse_nmf(
        M, W, initial_activations(M, W), beta=beta, mu=mu, max_iter=3000, tol=0, update_W=False
    )
    assert n_iter == 3000
    assert np.array_equal(W_out, W_in) and np.array_equal(W, W_in)
    for t in range(N):
        m = M[:, t]

        def f(h):
            return ref_divergence(m, W @ h, beta) + mu * h.sum()

        def grad(h):
            lam = W @ h
            return W.T @ (lam ** (beta - 1.0) - m * lam ** (beta - 2.0)) + mu

        best = minimize(
            f,
            np.full(R, 0.5),
            jac=grad,
            method="L-BFGS-B",
            bounds=[(1e-12, None)] * R,
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10000},
        )
        # Multiplicative updates converge sublinearly once entries approach 0.
        assert f(H[:, t]) == pytest.approx(best.fun, rel=1e-5)


def test_inference_l1_norm_decreases_with_sparsity():
    # At the optimum of D + mu ||h||_1 with frozen bases, ||h||_1 cannot grow with mu.
    M = low_rank_problem()[:, :20]
    rng = np.random.default_rng(0)
    W = unit_columns(rng.uniform(0.05, 1.0, size=(M.shape[0], 6)))
    l1 = []
    for mu in [0.0, 0.3, 1.0, 3.0]:
        _, H, _, _ = fit_sparse_nmf(
            M, W, initial_activations(M, W), beta=1.0, mu=mu, max_iter=500, tol=0, update_W=False
        )
        l1.append(H.sum())
    assert np.all(np.diff(l1) < 0)


# --- normalization-aware basis update ----------------------------------------


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("step", [1.0, 0.5])
def test_update_bases_normalized_matches_entrywise_formula(beta, step):
    M, W, H = problem(seed=5)
    M0, W0, H0 = M.copy(), W.copy(), H.copy()
    W_new = update_bases_normalized(M, W, H, beta, step=step)
    expected, _, _ = ref_normalized_update(M, W, H, beta, step=step)
    assert_allclose(W_new, expected, rtol=1e-11)
    assert (W_new >= 0).all()
    assert_allclose(np.linalg.norm(W_new, axis=0), 1.0, rtol=1e-12)
    assert np.array_equal(M, M0) and np.array_equal(W, W0) and np.array_equal(H, H0)


@pytest.mark.parametrize("beta", BETAS)
def test_normalized_update_parts_are_the_gradient_through_the_normalization(beta):
    # The reference's (denominator - numerator) must equal the finite-difference
    # gradient of W -> D(M | normalize(W) H) at unit-norm W.
    M, W, H = problem(F=6, R=3, N=5, seed=6)
    _, pos, neg = ref_normalized_update(M, W, H, beta)
    pos_proj = np.sum(W * pos, axis=0)
    neg_proj = np.sum(W * neg, axis=0)
    analytic = (pos + W * neg_proj) - (neg + W * pos_proj)

    def f(Wp):
        return ref_divergence(M, unit_columns(Wp) @ H, beta)

    h = 1e-6
    fd = np.empty_like(W)
    for idx in np.ndindex(W.shape):
        Wp, Wm = W.copy(), W.copy()
        Wp[idx] += h
        Wm[idx] -= h
        fd[idx] = (f(Wp) - f(Wm)) / (2 * h)
    assert_allclose(analytic, fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max())


@pytest.mark.parametrize("beta", BETAS)
def test_normalized_update_is_a_descent_direction(beta):
    # A short enough step along the multiplicative direction lowers the objective.
    M, W, H = problem(seed=7)
    before = ref_divergence(M, W @ H, beta)
    after = ref_divergence(M, update_bases_normalized(M, W, H, beta, step=1e-3) @ H, beta)
    assert after < before


@pytest.mark.parametrize("beta", BETAS)
def test_normalized_update_differs_from_plain_update_then_renormalize(beta):
    M, W, H = problem(seed=8)
    W_aware = update_bases_normalized(M, W, H, beta)
    W_plain = plain_update_then_renormalize(M, W, H, beta)
    assert_allclose(np.linalg.norm(W_plain, axis=0), 1.0)
    assert np.abs(W_aware - W_plain).max() > 1e-3


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_normalization_aware_beats_plain_then_renormalize_with_sparsity(beta):
    # Le Roux et al. (2015): renormalizing after a plain update lets the L1
    # penalty be dodged and then undone; the normalization-aware algorithm
    # reaches a lower objective in the same number of iterations.
    M = low_rank_problem()
    mu, n_iter = 1.0, 200
    rng = np.random.default_rng(0)
    W0 = unit_columns(rng.uniform(0.05, 1.0, size=(M.shape[0], 6)))
    H0 = rng.uniform(0.5, 1.5, size=(6, M.shape[1]))
    _, _, _, curve = fit_sparse_nmf(M, W0, H0, beta=beta, mu=mu, max_iter=n_iter, tol=0)

    W, H = W0, H0
    for _ in range(n_iter):
        Lam = W @ H
        H = H * ((W.T @ (M * Lam ** (beta - 2.0))) / (W.T @ Lam ** (beta - 1.0) + mu)) ** mm_exponent(beta)
        W = plain_update_then_renormalize(M, W, H, beta)
    plain = ref_objective(M, W, H, beta, mu)
    assert curve[-1] < 0.97 * plain


# --- the alternating loop ----------------------------------------------------


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("mu", MUS)
@pytest.mark.parametrize("update_W", [True, False])
def test_objective_non_increasing_and_matches_dense_recomputation(beta, mu, update_W):
    # Chain single iterations from a fixed start (the loop carries no state
    # but W and H), recompute the objective densely after each one.
    M, W, H = problem(F=12, R=4, N=10, seed=9)
    W_start, H_start = W.copy(), H.copy()
    n_steps = 25
    objective = [ref_objective(M, W, H, beta, mu)]
    for _ in range(n_steps):
        W, H, n_iter, curve = fit_sparse_nmf(M, W, H, beta=beta, mu=mu, max_iter=1, tol=0, update_W=update_W)
        assert n_iter == 1 and len(curve) == 2
        assert_allclose(curve[0], objective[-1], rtol=1e-10)
        objective.append(ref_objective(M, W, H, beta, mu))
        assert_allclose(curve[1], objective[-1], rtol=1e-10)
        assert (H >= 0).all() and (W >= 0).all()
        assert_allclose(np.linalg.norm(W, axis=0), 1.0, rtol=1e-12)
    assert np.all(np.diff(objective) <= 0)
    assert objective[-1] < objective[0]
    if not update_W:
        assert np.array_equal(W, W_start)
    # One call for n_steps iterations is the same computation.
    W_all, H_all, n_iter, curve = fit_sparse_nmf(
        M, W_start, H_start, beta=beta, mu=mu, max_iter=n_steps, tol=0, update_W=update_W
    )
    assert n_iter == n_steps and len(curve) == n_steps + 1
    assert np.array_equal(W_all, W) and np.array_equal(H_all, H)
    assert_allclose(curve, objective, rtol=1e-10)


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("mu", MUS)
@pytest.mark.parametrize("update_W", [True, False])
def test_objective_non_increasing_over_a_long_run(beta, mu, update_W):
    M, W, H = problem(F=15, R=4, N=20, seed=10)
    _, _, _, curve = fit_sparse_nmf(M, W, H, beta=beta, mu=mu, max_iter=300, tol=0, update_W=update_W)
    assert len(curve) == 301
    assert np.all(np.diff(curve) <= 0)


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_objective_non_increasing_float32(beta):
    M, W, H = problem(F=15, R=4, N=20, seed=11)
    M, W, H = (a.astype(np.float32) for a in (M, W, H))
    W_out, H_out, _, curve = fit_sparse_nmf(M, W, H, beta=beta, mu=0.2, max_iter=200, tol=0)
    assert W_out.dtype == H_out.dtype == np.float32
    assert np.all(np.diff(curve) <= 0)


def test_rejected_basis_steps_are_halved_then_dropped(monkeypatch):
    # A basis update that increases the objective must be shortened, and
    # dropped when no shorter step helps: the objective never goes up.
    M, W, H = problem(F=12, R=3, N=10, seed=12)
    # The solver computes the gradient parts once per iteration and proposes
    # steps of every length from them with normalized_bases_step.
    real_step = _nmf_updates.normalized_bases_step
    steps = []

    def bad_long_steps(W, neg, pos, eps, *, step=1.0):
        steps.append(step)
        if step > 0.3:  # everything piled on one feature: a terrible model
            W_bad = np.zeros_like(W)
            W_bad[0] = 1.0
            return W_bad
        return real_step(W, neg, pos, eps, step=step)

    monkeypatch.setattr(_nmf_updates, "normalized_bases_step", bad_long_steps)
    W_out, _, _, curve = fit_sparse_nmf(M, W, H, beta=1.0, mu=0.1, max_iter=5, tol=0)
    assert steps[:3] == [1.0, 0.5, 0.25]
    assert np.all(np.diff(curve) <= 0)
    assert not np.array_equal(W_out, W)

    # With no halving allowed every basis step is rejected: only H moves.
    steps.clear()
    W_out, H_out, _, curve = fit_sparse_nmf(M, W, H, beta=1.0, mu=0.1, max_iter=5, tol=0, max_halvings=0)
    assert steps == [1.0] * 5
    assert np.array_equal(W_out, W)
    _, H_frozen, _, curve_frozen = fit_sparse_nmf(
        M, W, H, beta=1.0, mu=0.1, max_iter=5, tol=0, update_W=False
    )
    assert np.array_equal(H_out, H_frozen)
    assert curve == curve_frozen


@pytest.mark.parametrize("tol", [1e-2, 1e-3])
def test_tol_stops_at_first_small_relative_decrease(tol):
    M, W, H = problem(F=15, R=4, N=20, seed=13)
    _, _, n_iter, curve = fit_sparse_nmf(M, W, H, beta=1.0, mu=0.1, max_iter=1000, tol=tol)
    assert 1 < n_iter < 1000 and len(curve) == n_iter + 1
    decrease = -np.diff(curve)
    # Earlier iterations decreased by more than tol relative to the current
    # objective; the last one by at most tol relative to the starting objective.
    assert np.all(decrease[:-1] > tol * np.asarray(curve[1:-1]))
    assert decrease[-1] <= tol * curve[0]


def test_verbose_prints_progress(capsys):
    M, W, H = problem(seed=14)
    fit_sparse_nmf(M, W, H, beta=1.0, mu=0.0, max_iter=25, tol=0, verbose=1)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert "iteration    1" in lines[0] and "iteration   20" in lines[-1]
    assert all("objective" in line for line in lines)
    fit_sparse_nmf(M, W, H, beta=1.0, mu=0.0, max_iter=25, tol=0, verbose=0)
    assert capsys.readouterr().out == ""


# --- the numpy KL solver's passes a block of frames at a time --------------------


@pytest.mark.parametrize("order", ["F", "C"])
def test_kl_frame_blocks_match_the_plain_expressions(monkeypatch, order):
    # Blocks of 3 frames over 20 (the last one ragged): the objective, the
    # next activation update's numerator and the basis-gradient parts equal
    # the full-size expressions in any memory layout of the data.
    monkeypatch.setattr(_nmf_updates, "_BLOCK", 3 * 15)
    M, W, H = problem(F=15, R=4, N=20, seed=21)
    M = np.asarray(M, order=order)
    H[:, 2] = 0.0  # a frame whose model falls below the floor
    eps = eps_for(M.dtype)
    numerator = np.full(H.shape, np.nan)
    gradient, objective = _nmf_updates._kl_frame_blocks(M, 0.3, eps, numerator)
    Lam = model(W, H, eps)
    assert_allclose(objective(W, H), _nmf_updates.make_objective(M, 1.0, 0.3)(Lam, H), rtol=1e-12)
    assert_allclose(numerator, W.T @ (M / Lam), rtol=1e-12)
    for got, expected in zip(gradient(W, H), _nmf_updates.bases_gradient_parts(M, W, H, 1.0)):
        assert_allclose(got, expected, rtol=1e-12)


def test_update_activations_from_a_given_numerator():
    M, W, H = problem(seed=22)
    numerator = W.T @ (M / model(W, H, eps_for(M.dtype)))
    kept = numerator.copy()
    H_new = update_activations(M, W, H, 1.0, 0.2, numerator=numerator)
    assert_allclose(H_new, update_activations(M, W, H, 1.0, 0.2), rtol=1e-12)
    assert np.array_equal(numerator, kept)


def test_kl_one_shot_solver_matches_the_chunked_one_with_halved_steps(monkeypatch):
    # The one-shot KL solver carries W.T @ (M / Lam) of the last evaluated
    # point into the next iteration; with halved and rejected basis steps it
    # must still be the model the iteration ended at; so must the chunked
    # numpy KL solver (the same passes, H updated in place). The generic
    # chunked solver recomputes everything from W and H: all three give
    # the same iterations.
    monkeypatch.setattr(_nmf_updates, "_BLOCK", 4 * 12)
    M, W, H = problem(F=12, R=3, N=30, seed=23)
    real_step = _nmf_updates.normalized_bases_step
    calls, good = [], []

    def bad_long_steps(W, neg, pos, eps, *, step=1.0):
        calls.append(step)
        if len(calls) % 7 != 0 and len(calls) % 4 != 0:
            W_bad = np.zeros_like(W)
            W_bad[0] = 1.0
            return W_bad
        good.append(step)
        return real_step(W, neg, pos, eps, step=step)

    monkeypatch.setattr(_nmf_updates, "normalized_bases_step", bad_long_steps)
    results, proposals = [], []
    for batch_size, generic in ((None, False), (7, False), (7, True)):
        calls.clear()
        good.clear()
        with monkeypatch.context() as patch:
            if generic:
                patch.setattr(_nmf_updates, "_fit_kl_in_place", _nmf_updates._fit_sparse_nmf_chunked)
            results.append(
                fit_sparse_nmf(M, W, H.copy(), beta=1.0, mu=0.1, max_iter=12, tol=0, max_halvings=1,
                               batch_size=batch_size)
            )
        proposals.append((list(calls), list(good)))
    assert proposals[0] == proposals[1] == proposals[2]
    # Full steps, halved steps and dropped steps (both proposals bad) all happened:
    # each of the 12 iterations proposed a full step, the rejected ones a half step.
    n_dropped = (len(calls) - 12) - good.count(0.5)
    assert 1.0 in good and 0.5 in good and n_dropped > 0
    (W1, H1, _, curve1), *others = results
    for W2, H2, _, curve2 in others:
        assert_allclose(W1, W2, rtol=1e-10)
        assert_allclose(H1, H2, rtol=1e-10)
        assert_allclose(curve1, curve2, rtol=1e-12)


@pytest.mark.parametrize("where", ["memory", "memmap"])
def test_chunked_kl_solver_reads_the_data_in_place(monkeypatch, tmp_path, where):
    # DeepNMF hands the sparse NMF of its bases a column block of y (frames
    # contiguous, rows strided): the chunked KL solver reads it where it lies
    # (no copy of M), its numerators live in a frame buffer like H (a
    # temporary file for memory-mapped data), and it gives the one-shot
    # solver's result.
    monkeypatch.setattr(_nmf_updates, "_BLOCK", 5 * 24)
    rng = np.random.default_rng(24)
    y = rng.gamma(1.0, 1.0, (40, 2 * 24))
    if where == "memmap":
        mapped = np.memmap(tmp_path / "y.dat", dtype=y.dtype, mode="w+", shape=y.shape)
        mapped[:] = y
        y = mapped
    V = y[:, 24:]
    assert not V.flags.c_contiguous and not V.flags.f_contiguous
    buffers = []
    real_buffer = _nmf_updates.frame_buffer

    def recording_buffer(*args, **kwargs):
        buffers.append(real_buffer(*args, **kwargs))
        return buffers[-1]

    monkeypatch.setattr(_nmf_updates, "frame_buffer", recording_buffer)
    copies = []
    monkeypatch.setattr(_nmf_updates, "_contiguous_frames", lambda M: copies.append(M) or np.asfortranarray(M))
    one_shot = learn_sparse_nmf(V, 3, beta=1.0, sparsity=0.2, init="exemplar", random_state=0, max_iter=15, tol=0)
    assert len(copies) == 1
    chunked = learn_sparse_nmf(V, 3, beta=1.0, sparsity=0.2, init="exemplar", random_state=0, max_iter=15, tol=0,
                               batch_size=7)
    assert len(copies) == 1  # the chunked solver made none
    # H and the numerators: frame buffers, on disk for memory-mapped data.
    assert len(buffers) == 2
    assert all(is_memmap_backed(b) == (where == "memmap") for b in buffers)
    assert_allclose(chunked[0], one_shot[0], rtol=1e-9)
    assert_allclose(chunked[2], one_shot[2], rtol=1e-12)
