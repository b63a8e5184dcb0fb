"""Tests for the array math of unfolded NMF (``sklearn_unfold._unfolded_nmf``).

References: central finite differences of the network objective, dense
textbook formulas for eq. 33, 34 and the beta-divergence, and an independent
numpy transcription of the paper's appendix D.5 (eq. 98-105) for beta1 = 1,
beta2 = 2 and one target source.
"""

import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import xlogy

from sklearn_unfold._divergences import mm_exponent
from sklearn_unfold._nmf_updates import infer_activations, initial_activations
from sklearn_unfold._unfolded_nmf import (
    chunk_loss_and_gradients,
    fixed_activations,
    frame_chunks,
    layer_backward,
    layer_forward,
    network_loss,
    train_layers,
    trained_forward,
    wiener_backward,
    wiener_forward,
)

BETAS = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
# (number of sources, source weights gamma): one target source and mixed weights.
SOURCE_SETUPS = [(2, (1.0, 0.0)), (2, (0.7, 0.4)), (3, (1.0, 0.0, 0.0)), (3, (0.5, 1.0, 0.2))]


# --------------------------------------------------------------------------
# Independent references
# --------------------------------------------------------------------------
def ref_divergence(X, Y, beta):
    """Dense beta-divergence, elementwise textbook formula (0 log 0 = 0)."""
    if beta == 0:
        return float(np.sum(X / Y - np.log(X / Y) - 1.0))
    if beta == 1:
        return float(np.sum(xlogy(X, X) - xlogy(X, Y) - X + Y))
    if beta == 2:
        return 0.5 * float(np.sum((X - Y) ** 2))
    terms = X**beta + (beta - 1.0) * Y**beta - beta * X * Y ** (beta - 1.0)
    return float(np.sum(terms) / (beta * (beta - 1.0)))


def ref_update(M, W, H, beta, mu, exponent):
    """Eq. 33 written out: H * [W^T (M Lam^(b-2)) / (W^T Lam^(b-1) + mu)]^exponent."""
    Lam = W @ H
    return H * ((W.T @ (M * Lam ** (beta - 2.0))) / (W.T @ Lam ** (beta - 1.0) + mu)) ** exponent


def ref_objective(M, sources, H, W_layers, n_sources, weights, beta1, beta2, mu, exponent):
    """Eq. 62-64: trained update layers, then the Wiener filter of eq. 34, then eq. 37."""
    for W in W_layers[:-1]:
        H = ref_update(M, W, H, beta1, mu, exponent)
    W = W_layers[-1]
    R = W.shape[1] // n_sources
    Lams = [W[:, l * R : (l + 1) * R] @ H[l * R : (l + 1) * R] for l in range(n_sources)]
    Lam = sum(Lams)
    return sum(g * ref_divergence(S, M * La / Lam, beta2) for S, La, g in zip(sources, Lams, weights) if g)


def problem(n_sources, n_trained, seed, F=5, R=2, n=6):
    """A small random network: mixture, sources, starting H, trained matrices."""
    rng = np.random.default_rng(seed)
    sources = [rng.uniform(0.1, 1.0, size=(F, n)) for _ in range(n_sources)]
    M = sum(sources) * rng.uniform(0.8, 1.2, size=(F, n))
    W_layers = [rng.uniform(0.2, 1.0, size=(F, n_sources * R)) for _ in range(n_trained)]
    H_start = rng.uniform(0.2, 1.0, size=(n_sources * R, n))
    slices = [slice(l * R, (l + 1) * R) for l in range(n_sources)]
    return M, sources, H_start, W_layers, slices


def central_differences(func, x, h=1e-5):
    """Gradient of the scalar ``func(x)`` by central differences, entry by entry."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        saved = x[idx]
        x[idx] = saved + h
        f_plus = func(x)
        x[idx] = saved - h
        f_minus = func(x)
        x[idx] = saved
        grad[idx] = (f_plus - f_minus) / (2 * h)
    return grad


def relative_error(actual, expected):
    """max-abs error / max-abs reference (the reference must not be trivial)."""
    scale = np.abs(expected).max()
    assert scale > 1e-3, "degenerate reference gradient"
    return np.abs(actual - expected).max() / scale


# --------------------------------------------------------------------------
# Forward pieces against dense formulas
# --------------------------------------------------------------------------
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("mu", [0.0, 0.3])
def test_layer_forward_is_eq33(beta, mu):
    M, _, H, (W,), _ = problem(2, 1, seed=1)
    exponent = mm_exponent(beta)
    H_new, (H_in, Lam, P, Q) = layer_forward(M, W, H, beta, mu, exponent, keep=True)
    assert_allclose(H_new, ref_update(M, W, H, beta, mu, exponent), rtol=1e-12)
    assert_allclose(layer_forward(M, W, H, beta, mu, exponent), H_new, rtol=0, atol=0)
    assert_allclose(Lam, W @ H, rtol=1e-14)
    assert H_in is H


def test_wiener_forward_is_eq34():
    M, _, H, (W,), slices = problem(3, 1, seed=2)
    estimates, Lams, Lam = wiener_forward(M, W, H, slices)
    for S_hat, sl in zip(estimates, slices):
        assert_allclose(S_hat, M * (W[:, sl] @ H[sl]) / (W @ H), rtol=1e-12)
    # A Wiener-like filter distributes the mixture: the estimates sum to it.
    assert_allclose(sum(estimates), M, rtol=1e-12)
    assert_allclose(Lam, W @ H, rtol=1e-12)


@pytest.mark.parametrize("beta1, beta2", [(1.0, 2.0), (0.5, 1.0), (3.0, 1.5), (0.0, 0.0)])
@pytest.mark.parametrize("n_sources, weights", SOURCE_SETUPS[:2] + SOURCE_SETUPS[3:])
def test_network_loss_is_the_objective(beta1, beta2, n_sources, weights):
    M, sources, H, W_layers, slices = problem(n_sources, 3, seed=3)
    exponent = mm_exponent(beta1)
    expected = ref_objective(M, sources, H, W_layers, n_sources, weights, beta1, beta2, 0.2, exponent)
    args = (M, sources, H, W_layers, slices, weights, beta1, beta2, 0.2, exponent)
    assert_allclose(network_loss(*args), expected, rtol=1e-11)
    loss, _ = chunk_loss_and_gradients(*args)
    assert_allclose(loss, expected, rtol=1e-11)


def test_fixed_activations_is_sparse_nmf_inference():
    # The fixed layers are sparse-NMF inference from its own starting point.
    rng = np.random.default_rng(4)
    M_ctx = rng.uniform(0.1, 1.0, size=(12, 9))
    W = rng.uniform(0.1, 1.0, size=(12, 4))
    W /= np.linalg.norm(W, axis=0)
    for beta in (1.0, 0.5, 3.0):
        H0 = initial_activations(M_ctx, W)
        expected, n_iter, _ = infer_activations(M_ctx, W, H0, beta=beta, mu=0.1, max_iter=5, tol=0)
        assert n_iter == 5
        assert_allclose(fixed_activations(M_ctx, W, 5, beta, 0.1, mm_exponent(beta)), expected, rtol=1e-13)
        assert_array_equal(fixed_activations(M_ctx, W, 0, beta, 0.1, mm_exponent(beta)), H0)


def test_trained_forward_skips_reconstruction_layer():
    M, _, H, W_layers, _ = problem(2, 3, seed=5)
    expected = ref_update(M, W_layers[1], ref_update(M, W_layers[0], H, 1.0, 0.1, 1.0), 1.0, 0.1, 1.0)
    H_top, caches = trained_forward(M, H, W_layers, 1.0, 0.1, 1.0, keep=True)
    assert_allclose(H_top, expected, rtol=1e-12)
    assert len(caches) == 2
    assert_allclose(trained_forward(M, H, W_layers[:1], 1.0, 0.1, 1.0), H, rtol=0, atol=0)


def test_frame_chunks_partition_the_frames():
    for n_frames, batch_size in [(10, 3), (9, 3), (1, 5), (7, 7)]:
        chunks = frame_chunks(n_frames, batch_size)
        covered = np.concatenate([np.arange(n_frames)[c] for c in chunks])
        assert_array_equal(covered, np.arange(n_frames))
        assert all(0 < c.stop - c.start <= batch_size for c in chunks)


# --------------------------------------------------------------------------
# Gradients against finite differences
# --------------------------------------------------------------------------
@pytest.mark.parametrize("beta1", BETAS)
@pytest.mark.parametrize("beta2", [1.0, 2.0])
@pytest.mark.parametrize("mu", [0.0, 0.3])
@pytest.mark.parametrize("n_trained", [1, 2, 3])
def test_gradient_parts_match_finite_differences(beta1, beta2, mu, n_trained):
    exponent = mm_exponent(beta1)  # as the estimator runs the layers
    for seed, (n_sources, weights) in enumerate(SOURCE_SETUPS):
        M, sources, H, W_layers, slices = problem(n_sources, n_trained, seed=100 + seed)
        loss, grads = chunk_loss_and_gradients(M, sources, H, W_layers, slices, weights, beta1, beta2, mu, exponent)
        assert len(grads) == n_trained
        for i, (plus, minus) in enumerate(grads):
            assert plus.shape == minus.shape == W_layers[i].shape
            assert np.all(np.isfinite(plus)) and np.all(np.isfinite(minus))
            assert np.all(plus >= 0) and np.all(minus >= 0)
            layers = [W.copy() for W in W_layers]

            def loss_of(W_i, i=i, layers=layers):
                layers[i] = W_i
                return network_loss(M, sources, H, layers, slices, weights, beta1, beta2, mu, exponent)

            fd = central_differences(loss_of, W_layers[i].copy())
            assert relative_error(plus - minus, fd) < 1e-6, (n_sources, weights, i)


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("mu", [0.0, 0.3])
@pytest.mark.parametrize("unit_exponent", [False, True])
def test_layer_backward_matches_finite_differences(beta, mu, unit_exponent):
    # phi(H_new) = sum((Gp - Gm) * H_new): its gradient in H_new is Gp - Gm, so
    # layer_backward's parts must difference to phi's gradient in H and in W.
    M, _, H, (W,), _ = problem(2, 1, seed=6)
    rng = np.random.default_rng(7)
    Gp, Gm = rng.uniform(0, 1, size=H.shape), rng.uniform(0, 1, size=H.shape)
    exponent = 1.0 if unit_exponent else mm_exponent(beta)
    _, cache = layer_forward(M, W, H, beta, mu, exponent, keep=True)
    (dHp, dHm), (dWp, dWm) = layer_backward(M, W, cache, Gp, Gm, beta, exponent)
    for part in (dHp, dHm, dWp, dWm):
        assert np.all(part >= 0) and np.all(np.isfinite(part))

    def phi_of_H(H_):
        return float(np.sum((Gp - Gm) * layer_forward(M, W, H_, beta, mu, exponent)))

    def phi_of_W(W_):
        return float(np.sum((Gp - Gm) * layer_forward(M, W_, H, beta, mu, exponent)))

    assert relative_error(dHp - dHm, central_differences(phi_of_H, H.copy())) < 1e-7
    assert relative_error(dWp - dWm, central_differences(phi_of_W, W.copy())) < 1e-7
    # The bottom trained layer skips the input gradient but not the W one.
    dH_none, (dWp2, dWm2) = layer_backward(M, W, cache, Gp, Gm, beta, exponent, need_input_grad=False)
    assert dH_none is None
    assert_allclose(dWp2, dWp, rtol=1e-14)
    assert_allclose(dWm2, dWm, rtol=1e-14)


@pytest.mark.parametrize("beta2", [0.0, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("n_sources, weights", SOURCE_SETUPS)
def test_wiener_backward_matches_finite_differences(beta2, n_sources, weights):
    M, sources, H, (W,), slices = problem(n_sources, 1, seed=8)

    def loss(W_, H_):
        estimates, _, _ = wiener_forward(M, W_, H_, slices)
        return sum(g * ref_divergence(S, S_hat, beta2) for S, S_hat, g in zip(sources, estimates, weights) if g)

    value, (dWp, dWm), (dHp, dHm) = wiener_backward(M, sources, W, H, slices, weights, beta2)
    assert_allclose(value, loss(W, H), rtol=1e-12)
    for part in (dWp, dWm, dHp, dHm):
        assert np.all(part >= 0)
    assert relative_error(dWp - dWm, central_differences(lambda W_: loss(W_, H), W.copy())) < 1e-7
    assert relative_error(dHp - dHm, central_differences(lambda H_: loss(W, H_), H.copy())) < 1e-7


# --------------------------------------------------------------------------
# Appendix D.5 of the paper, transcribed independently (beta1 = 1, beta2 = 2)
# --------------------------------------------------------------------------
def paper_top_layer(M, S, W, H, R, literal_eq100=False):
    """Eq. 98-101 for source l = 0 (the target, gamma = (1, 0)) of two sources.

    Returns the parts for ``H^K`` stacked [l; lbar] and, by the chain rule
    through ``Lam^l = W^(K,l) H^(K,l)`` (the DNMF update of the reconstruction
    bases, paper sec. D.1 "for k = K"), those for ``W^K``: the same matrices
    right-multiplied by ``H^T`` instead of left-multiplied by ``W^T``.

    Eq. 100 as printed has ``S^lbar``; its own derivation (eq. 67) has
    ``S^l``, and only ``S^l`` matches finite differences (see
    test_paper_eq100_typo), so ``S^l`` is used unless ``literal_eq100``.
    """
    S_l, S_lbar = S
    W_l, W_lb = W[:, :R], W[:, R:]
    H_l, H_lb = H[:R], H[R:]
    Lam = W @ H
    Lam_l = W_l @ H_l
    Lam_lb = Lam - Lam_l
    E98 = M**2 * Lam_l * Lam_lb / Lam**3
    E99 = M * S_l * Lam_lb / Lam**2
    E100 = M * (S_lbar if literal_eq100 else S_l) * Lam_l / Lam**2
    E101 = M**2 * Lam_l**2 / Lam**3
    dH_plus = np.vstack([W_l.T @ E98, W_lb.T @ E100])
    dH_minus = np.vstack([W_l.T @ E99, W_lb.T @ E101])
    dW_plus = np.hstack([E98 @ H_l.T, E100 @ H_lb.T])
    dW_minus = np.hstack([E99 @ H_l.T, E101 @ H_lb.T])
    return (dH_plus, dH_minus), (dW_plus, dW_minus)


def paper_lower_layer(M, W, H, Gp, Gm, mu):
    """Eq. 102-105 for one KL update layer H^(k+1) = f(W^k, M, H^k) (eq. 69).

    ``(W^k)^T 1_{NxT} + mu`` is alpha_r + mu broadcast over frames (R x T);
    ``W^k / ((W^k)^T 1_{NxR} + mu)`` divides column r of W by alpha_r + mu; the
    last term of eq. 104/105 is a per-column constant, so its ``1_{RxT}``
    is read as ``1_{NxT}`` (an N x R result).
    """
    N, T = M.shape
    Lam = W @ H
    alpha_T = W.sum(axis=0)[:, None] + mu  # R x T after broadcasting
    alpha_R = W.sum(axis=0)[None, :] + mu  # broadcast over the N rows of W
    M_L = M / Lam
    M_L2 = M / Lam**2
    WtML = W.T @ M_L

    def w_part(Gs, Go):
        # Eq. 104 (Gs = [.]_+, Go = [.]_-) and eq. 105 (swapped), term by term.
        return (
            M_L @ ((H * Gs) / alpha_T).T
            + (M_L2 * ((W / alpha_R) @ (H * Go))) @ H.T
            - W * (M_L2 @ ((H**2 * (Gp + Gm)) / alpha_T).T)
            + (np.ones((N, T)) @ (H * WtML * Go).T) / alpha_R**2
        )

    def h_part(Gs, Go):
        # Eq. 102 / 103.
        return (WtML * Gs) / alpha_T + W.T @ (M_L2 * ((W / alpha_R) @ (H * Go)))

    return (h_part(Gp, Gm), h_part(Gm, Gp)), (w_part(Gp, Gm), w_part(Gm, Gp))


@pytest.mark.parametrize("n_trained", [1, 2, 3])
@pytest.mark.parametrize("mu", [0.0, 0.3])
def test_appendix_d5_transcription(n_trained, mu):
    R = 2
    M, sources, H_start, W_layers, slices = problem(2, n_trained, seed=9, F=6, R=R, n=7)
    weights = (1.0, 0.0)
    # Forward pass of eq. 69 (KL, no normalization of the trained W^k).
    Hs = [H_start]
    for W in W_layers[:-1]:
        H = Hs[-1]
        Hs.append(H * (W.T @ (M / (W @ H))) / (W.sum(axis=0)[:, None] + mu))

    (Gp, Gm), top_W = paper_top_layer(M, sources, W_layers[-1], Hs[-1], R)
    expected = [top_W]
    for k in range(n_trained - 2, -1, -1):
        (Gp_next, Gm_next), dW = paper_lower_layer(M, W_layers[k], Hs[k], Gp, Gm, mu)
        expected.append(dW)
        Gp, Gm = Gp_next, Gm_next
    expected.reverse()

    _, grads = chunk_loss_and_gradients(M, sources, H_start, W_layers, slices, weights, 1.0, 2.0, mu, 1.0)
    for (plus, minus), (ref_plus, ref_minus) in zip(grads, expected, strict=True):
        # The positive and negative parts separately, not only their difference.
        assert_allclose(plus, ref_plus, rtol=1e-10, atol=1e-12 * np.abs(ref_plus).max())
        assert_allclose(minus, ref_minus, rtol=1e-10, atol=1e-12 * np.abs(ref_minus).max())

    # The H parts too: eq. 98-101 from wiener_backward, eq. 102-103 from layer_backward.
    (Gp, Gm), _ = paper_top_layer(M, sources, W_layers[-1], Hs[-1], R)
    _, _, (dHp, dHm) = wiener_backward(M, sources, W_layers[-1], Hs[-1], slices, weights, 2.0)
    assert_allclose(dHp, Gp, rtol=1e-10)
    assert_allclose(dHm, Gm, rtol=1e-10)
    for k in range(n_trained - 2, -1, -1):
        _, cache = layer_forward(M, W_layers[k], Hs[k], 1.0, mu, 1.0, keep=True)
        (dHp, dHm), _ = layer_backward(M, W_layers[k], cache, Gp, Gm, 1.0, 1.0)
        (Gp, Gm), _ = paper_lower_layer(M, W_layers[k], Hs[k], Gp, Gm, mu)
        assert_allclose(dHp, Gp, rtol=1e-10)
        assert_allclose(dHm, Gm, rtol=1e-10)


def test_paper_eq100_typo():
    # Eq. 100 as printed (S^lbar) contradicts finite differences; eq. 67 (S^l) agrees.
    R = 2
    M, sources, H, (W,), slices = problem(2, 1, seed=10, R=R)

    def loss(H_):
        estimates, _, _ = wiener_forward(M, W, H_, slices)
        return 0.5 * float(np.sum((sources[0] - estimates[0]) ** 2))

    fd = central_differences(loss, H.copy())
    (ok_p, ok_m), _ = paper_top_layer(M, sources, W, H, R)
    (lit_p, lit_m), _ = paper_top_layer(M, sources, W, H, R, literal_eq100=True)
    assert relative_error(ok_p - ok_m, fd) < 1e-7
    assert relative_error(lit_p - lit_m, fd) > 1e-2


# --------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------
def learnable_problem(n_sources=2, n_trained=2, n=60, F=6, R=2, seed=11):
    """Sources made of a few spectral shapes; the layers start away from them."""
    rng = np.random.default_rng(seed)
    sources = [rng.gamma(0.5, size=(F, R)) @ rng.gamma(0.5, size=(R, n)) + 0.01 for _ in range(n_sources)]
    M = sum(sources)
    W = rng.uniform(0.2, 1.0, size=(F, n_sources * R))
    H_start = initial_activations(M, W)
    for _ in range(3):
        H_start = layer_forward(M, W, H_start, 1.0, 0.05)
    slices = [slice(l * R, (l + 1) * R) for l in range(n_sources)]
    return M, sources, H_start, [W.copy() for _ in range(n_trained)], slices


def _train(M, sources, H_start, W_layers, slices, **kwargs):
    params = dict(beta1=1.0, beta2=2.0, mu=0.05, exponent=1.0, max_iter=15, tol=0.0, batch_size=1000)
    params.update(kwargs)
    return train_layers(M, sources, H_start, W_layers, slices, (1.0, 0.0), **params)


@pytest.mark.parametrize("beta1, beta2", [(1.0, 2.0), (1.0, 1.0), (0.5, 2.0), (3.0, 1.0)])
def test_train_layers_decreases_and_keeps_non_negative(beta1, beta2):
    M, sources, H_start, W_layers, slices = learnable_problem()
    originals = [W.copy() for W in W_layers]
    exponent = mm_exponent(beta1)
    layers, n_iter, curve = _train(M, sources, H_start, W_layers, slices, beta1=beta1, beta2=beta2, exponent=exponent)
    for W, W0 in zip(W_layers, originals):
        assert_array_equal(W, W0)  # inputs untouched
    assert 1 <= n_iter <= 15 and len(curve) == n_iter + 1
    assert np.all(np.diff(curve) <= 0)
    assert curve[1] < curve[0] and curve[-1] < 0.9 * curve[0]
    weights = (1.0, 0.0)
    start = network_loss(M, sources, H_start, W_layers, slices, weights, beta1, beta2, 0.05, exponent)
    end = network_loss(M, sources, H_start, layers, slices, weights, beta1, beta2, 0.05, exponent)
    assert_allclose(curve[0], start / M.shape[1], rtol=1e-12)
    assert_allclose(curve[-1], end / M.shape[1], rtol=1e-12)
    for W in layers:
        assert np.all(W >= 0) and np.all(np.isfinite(W))
        assert not np.allclose(W, W_layers[0])


def overshooting_problem(n_trained=3):
    """Badly scaled start where the plain ratio update W * [grad]_- / [grad]_+ overshoots."""
    rng = np.random.default_rng(2)
    F, R, n = 6, 2, 40
    sources = [rng.gamma(0.3, size=(F, R)) @ rng.gamma(0.3, size=(R, n)) + 0.01 for _ in range(2)]
    M = sum(sources)
    W_layers = [rng.uniform(0.01, 3.0, size=(F, 2 * R)) for _ in range(n_trained)]
    H_start = initial_activations(M, W_layers[0]) * rng.uniform(0.1, 3.0, size=(2 * R, n))
    return M, sources, H_start, W_layers, [slice(0, R), slice(R, 2 * R)]


def test_train_layers_step_safeguard():
    # The heuristic update of eq. 38 is not monotone: on this problem two full
    # steps raise the objective. The trainer must still record a non-increasing curve.
    M, sources, H_start, W_layers, slices = overshooting_problem()
    args = (M, sources, H_start)
    common = (slices, (1.0, 0.0), 1.0, 2.0, 0.1, 1.0)
    layers, losses = W_layers, []
    for _ in range(2):
        loss, grads = chunk_loss_and_gradients(*args, layers, *common)
        losses.append(loss)
        layers = [W * (minus / plus) for W, (plus, minus) in zip(layers, grads)]
    losses.append(network_loss(*args, layers, *common))
    assert losses[2] > losses[1]  # precondition: a plain step overshoots

    trained, n_iter, curve = _train(M, sources, H_start, W_layers, slices, mu=0.1, max_iter=10)
    assert n_iter == 10
    assert np.all(np.diff(curve) <= 0)
    assert curve[-1] < 0.5 * curve[0]
    final = network_loss(*args, trained, *common) / M.shape[1]
    assert_allclose(curve[-1], final, rtol=1e-12)


def test_train_layers_chunking_and_threads():
    M, sources, H_start, W_layers, slices = learnable_problem(n=50)
    full, n_full, curve_full = _train(M, sources, H_start, W_layers, slices)
    chunked, n_chunked, curve_chunked = _train(M, sources, H_start, W_layers, slices, batch_size=7)
    threaded, _, curve_threaded = _train(M, sources, H_start, W_layers, slices, batch_size=7, n_jobs=2)
    assert n_full == n_chunked
    assert_allclose(curve_chunked, curve_full, rtol=1e-10)
    for a, b, c in zip(full, chunked, threaded):
        assert_allclose(b, a, rtol=1e-9)
        assert_array_equal(c, b)  # chunks are summed in order whatever the workers
    assert curve_threaded == curve_chunked


def test_train_layers_tol_and_max_iter():
    M, sources, H_start, W_layers, slices = learnable_problem()
    _, n_iter, curve = _train(M, sources, H_start, W_layers, slices, max_iter=0)
    assert n_iter == 0 and len(curve) == 1
    _, n_iter, curve = _train(M, sources, H_start, W_layers, slices, max_iter=200, tol=1e-2)
    assert n_iter < 200
    # It stopped at the first update that gained less than tol (relative).
    gains = -np.diff(curve) / np.asarray(curve[1:])
    assert gains[-1] <= 1e-2 and np.all(gains[:-1] > 1e-2)


def test_float32_gradients_close_to_float64():
    M, sources, H, W_layers, slices = problem(2, 2, seed=12)
    args64 = (M, sources, H, W_layers, slices, (1.0, 0.0), 1.0, 2.0, 0.1, 1.0)
    f32 = [np.float32(M), [np.float32(S) for S in sources], np.float32(H), [np.float32(W) for W in W_layers]]
    loss64, grads64 = chunk_loss_and_gradients(*args64)
    loss32, grads32 = chunk_loss_and_gradients(*f32, *args64[4:])
    assert_allclose(loss32, loss64, rtol=1e-5)
    for g32, g64 in zip(itertools.chain(*grads32), itertools.chain(*grads64)):
        assert g32.dtype == np.float32
        assert_allclose(g32, g64, rtol=1e-4, atol=1e-5 * np.abs(g64).max())
