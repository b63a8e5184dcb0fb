"""Tests for the array math of unfolded NMF (``sklearn_unfold._nmf``: network, backward, trainer).

References: central finite differences of the network objective, dense
textbook formulas for eq. 33, 34 and the beta-divergence, and an independent
numpy transcription of the paper's appendix D.5 (eq. 98-105) for beta1 = 1,
beta2 = 2 and one target source. The Wiener filter has no absolute floor:
its estimates sum to the mixture exactly at any scale, in any dtype, also
through the public estimator (regression tests of issue 11, defect 11).
"""

import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sklearn_unfold import DeepNMF
from sklearn_unfold._nmf.backward import layer_backward, wiener_backward
from sklearn_unfold._nmf.chunks import frame_chunks
from sklearn_unfold._nmf.divergences import eps_for, mm_exponent
from sklearn_unfold._nmf.network import (
    NetworkSpec,
    fixed_activations,
    forward_chunk,
    layer_forward,
    run_network,
    trained_forward,
    wiener_forward,
    wiener_masks,
)
from sklearn_unfold._nmf.trainer import (
    TrainingProblem,
    chunk_loss,
    chunk_loss_and_gradients,
    evaluate,
    train_layers,
)
from sklearn_unfold._nmf.updates import infer_activations, initial_activations
from conftest import ref_divergence

BETAS = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
# (number of sources, source weights gamma): one target source and mixed weights.
SOURCE_SETUPS = [(2, (1.0, 0.0)), (2, (0.7, 0.4)), (3, (1.0, 0.0, 0.0)), (3, (0.5, 1.0, 0.2))]


# --------------------------------------------------------------------------
# Independent references
# --------------------------------------------------------------------------
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


def training(M, sources, H_start, n_trained, slices, weights, beta1, beta2, mu):
    """The TrainingProblem of single-frame layers (DeepNMF's) on these arrays.

    Its layers run with ``spec.exponent = mm_exponent(beta1)``, as the estimators run them.
    """
    R = slices[0].stop - slices[0].start
    spec = NetworkSpec(
        n_layers=max(n_trained, 1), n_trained=n_trained, n_context=1, n_frequencies=M.shape[0],
        n_components=R, n_sources=len(slices), beta=beta1, sparsity=mu,
    )
    assert spec.source_slices == list(slices)
    return TrainingProblem(
        spec=spec, M_layers=M, M=M, sources=list(sources), H_start=H_start, mu=mu,
        weights=tuple(weights), target_beta=beta2,
    )


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
    estimates, masks, Lam = wiener_forward(M, W, H, slices)
    for S_hat, mask, sl in zip(estimates, masks, slices):
        assert_allclose(S_hat, M * (W[:, sl] @ H[sl]) / (W @ H), rtol=1e-12)
        assert_allclose(mask, (W[:, sl] @ H[sl]) / (W @ H), rtol=1e-12)
    # A Wiener-like filter distributes the mixture: the estimates sum to it.
    assert_allclose(sum(estimates), M, rtol=1e-12)
    assert_allclose(sum(masks), 1.0, rtol=1e-14)
    assert_allclose(Lam, W @ H, rtol=1e-12)
    Lams, Lam2, masks2 = wiener_masks(W, H, slices)
    assert_allclose(Lam2, Lam, rtol=0)
    for mask2, mask in zip(masks2, masks, strict=True):
        assert_array_equal(mask2, mask)
    for Lam_l, sl in zip(Lams, slices):
        assert_allclose(Lam_l, W[:, sl] @ H[sl], rtol=1e-14)


@pytest.mark.parametrize("dtype, k", [(np.float64, 300), (np.float64, 1000), (np.float32, 40), (np.float32, 100)])
def test_wiener_masks_have_no_absolute_floor(dtype, k):
    # Issue 11, defect 11 (core): a model many orders of magnitude below any
    # absolute floor (float32's eps_for is ~3e-10) still splits the mixture
    # by its ratios. Powers of two scale every product and sum exactly, so the
    # masks of H * 2**-k are bit-identical to those of H.
    M, _, H, (W,), slices = problem(3, 1, seed=20)
    M, H, W = M.astype(dtype), H.astype(dtype), W.astype(dtype)
    tiny = H * dtype(2.0**-k)
    assert (W @ tiny).max() < eps_for(dtype)
    estimates, masks, Lam = wiener_forward(M, W, tiny, slices)
    ref_estimates, ref_masks, _ = wiener_forward(M, W, H, slices)
    assert Lam.min() > 0
    for mask, ref in zip(masks, ref_masks):
        assert mask.dtype == dtype
        assert_array_equal(mask, ref)
    for S_hat, ref in zip(estimates, ref_estimates):
        assert_array_equal(S_hat, ref)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    assert_allclose(np.sum(estimates, axis=0, dtype=np.float64), M, rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_wiener_masks_of_a_zero_model_are_equal(dtype):
    # Frames whose activations all underflowed: no information, equal shares.
    M, _, H, (W,), slices = problem(3, 1, seed=21)
    M, H, W = M.astype(dtype), H.astype(dtype), W.astype(dtype)
    H[:, [1, 4]] = 0.0
    estimates, masks, Lam = wiener_forward(M, W, H, slices)
    for mask in masks:
        assert_array_equal(mask[:, [1, 4]], dtype(1.0 / 3.0))
        assert np.all(np.isfinite(mask))
    ref, _, _ = wiener_forward(M[:, [0, 2, 3, 5]], W, H[:, [0, 2, 3, 5]], slices)
    for S_hat, expected in zip(estimates, ref):
        assert_array_equal(S_hat[:, [0, 2, 3, 5]], expected)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    assert_allclose(np.sum(estimates, axis=0, dtype=np.float64), M, rtol=rtol)


@pytest.mark.parametrize("beta1, beta2", [(1.0, 2.0), (0.5, 1.0), (3.0, 1.5), (0.0, 0.0)])
@pytest.mark.parametrize("n_sources, weights", SOURCE_SETUPS[:2] + SOURCE_SETUPS[3:])
def test_network_loss_is_the_objective(beta1, beta2, n_sources, weights):
    M, sources, H, W_layers, slices = problem(n_sources, 3, seed=3)
    exponent = mm_exponent(beta1)
    expected = ref_objective(M, sources, H, W_layers, n_sources, weights, beta1, beta2, 0.2, exponent)
    prob = training(M, sources, H, 3, slices, weights, beta1, beta2, 0.2)
    assert prob.spec.exponent == exponent
    assert_allclose(chunk_loss(prob, W_layers), expected, rtol=1e-11)
    loss, _ = chunk_loss_and_gradients(prob, W_layers)
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


@pytest.mark.parametrize("context_layers", [False, True])
@pytest.mark.parametrize("beta, n_trained", [(1.0, 3), (0.5, 2), (3.0, 1), (1.0, 0)])
def test_forward_chunk_is_the_written_out_network(context_layers, beta, n_trained):
    # The one forward of predict / transform / reconstruct: K - C + 1 iterations
    # (K when C = 0) with the fixed context bases, C - 1 trained update layers
    # (on the target frame, or on the context for context layers), eq. 34.
    T, F, R, K, mu = 3, 4, 2, 5, 0.2
    rng = np.random.default_rng(22)
    M_ctx = rng.uniform(0.1, 1.0, size=(T * F, 7))
    W_fixed = rng.uniform(0.1, 1.0, size=(T * F, 2 * R))
    rows = T * F if context_layers else F
    layers = [rng.uniform(0.1, 1.0, size=(rows, 2 * R)) for _ in range(max(n_trained - 1, 0))]
    layers.append(rng.uniform(0.1, 1.0, size=(F, 2 * R)))
    spec = NetworkSpec(
        n_layers=K, n_trained=n_trained, n_context=T, n_frequencies=F, n_components=R, n_sources=2,
        beta=beta, sparsity=mu, context_layers=context_layers,
    )
    e = mm_exponent(beta)
    M = M_ctx[-F:]
    H = np.tile(M_ctx.sum(axis=0) / W_fixed.sum(), (2 * R, 1))
    for _ in range(K - n_trained + 1 if n_trained else K):
        H = ref_update(M_ctx, W_fixed, H, beta, mu, e)
    for W in layers[:-1]:
        H = ref_update(M_ctx if context_layers else M, W, H, beta, mu, e)
    W_out = layers[-1]
    Lams = [W_out[:, :R] @ H[:R], W_out[:, R:] @ H[R:]]
    assert_allclose(forward_chunk(spec, W_fixed, layers, M_ctx, mu, "activations"), H, rtol=1e-11)
    assert_allclose(forward_chunk(spec, W_fixed, layers, M_ctx, mu, "reconstruction"), np.vstack(Lams), rtol=1e-11)
    sources = forward_chunk(spec, W_fixed, layers, M_ctx, mu, "sources")
    assert_allclose(sources, np.vstack([M * La / sum(Lams) for La in Lams]), rtol=1e-11)
    # run_network: the same, frame-major, any batch size.
    X = np.ascontiguousarray(M_ctx.T)
    for batch_size in (None, 3):
        out = run_network(spec, W_fixed, layers, X, output="sources", batch_size=batch_size)
        assert_allclose(out, sources.T, rtol=1e-12)


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
        prob = training(M, sources, H, n_trained, slices, weights, beta1, beta2, mu)
        loss, grads = chunk_loss_and_gradients(prob, W_layers)
        assert len(grads) == n_trained
        for i, (plus, minus) in enumerate(grads):
            assert plus.shape == minus.shape == W_layers[i].shape
            assert np.all(np.isfinite(plus)) and np.all(np.isfinite(minus))
            assert np.all(plus >= 0) and np.all(minus >= 0)
            layers = [W.copy() for W in W_layers]

            def loss_of(W_i, i=i, layers=layers):
                layers[i] = W_i
                return ref_objective(M, sources, H, layers, n_sources, weights, beta1, beta2, mu, exponent)

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
        return float(np.sum((Gp - Gm) * ref_update(M, W, H_, beta, mu, exponent)))

    def phi_of_W(W_):
        return float(np.sum((Gp - Gm) * ref_update(M, W_, H, beta, mu, exponent)))

    assert relative_error(dHp - dHm, central_differences(phi_of_H, H.copy())) < 1e-7
    assert relative_error(dWp - dWm, central_differences(phi_of_W, W.copy())) < 1e-7
    # The bottom trained layer skips the input gradient but not the W one.
    dH_none, (dWp2, dWm2) = layer_backward(M, W, cache, Gp, Gm, beta, exponent, need_input_grad=False)
    assert dH_none is None
    assert_allclose(dWp2, dWp, rtol=1e-14)
    assert_allclose(dWm2, dWm, rtol=1e-14)


def wiener_loss(M, sources, W, H, slices, weights, beta2):
    """Eq. 37 on eq. 34, dense."""
    R = slices[0].stop - slices[0].start
    Lams = [W[:, l * R : (l + 1) * R] @ H[l * R : (l + 1) * R] for l in range(len(slices))]
    Lam = sum(Lams)
    return sum(g * ref_divergence(S, M * La / Lam, beta2) for S, La, g in zip(sources, Lams, weights) if g)


@pytest.mark.parametrize("beta2", [0.0, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("n_sources, weights", SOURCE_SETUPS)
def test_wiener_backward_matches_finite_differences(beta2, n_sources, weights):
    M, sources, H, (W,), slices = problem(n_sources, 1, seed=8)

    def loss(W_, H_):
        return wiener_loss(M, sources, W_, H_, slices, weights, beta2)

    value, (dWp, dWm), (dHp, dHm) = wiener_backward(M, sources, W, H, slices, weights, beta2)
    assert_allclose(value, loss(W, H), rtol=1e-12)
    for part in (dWp, dWm, dHp, dHm):
        assert np.all(part >= 0)
    assert relative_error(dWp - dWm, central_differences(lambda W_: loss(W_, H), W.copy())) < 1e-7
    assert relative_error(dHp - dHm, central_differences(lambda H_: loss(W, H_), H.copy())) < 1e-7


@pytest.mark.parametrize("beta2", [1.0, 2.0])
def test_wiener_backward_without_floor(beta2):
    # Written with the masks, the gradient needs no floor either. (a) A frame
    # whose model is 0 contributes nothing (equal masks do not depend on W),
    # and the other frames keep their finite-difference gradients.
    n_sources, weights = 3, (0.5, 1.0, 0.2)
    M, sources, H, (W,), slices = problem(n_sources, 1, seed=23)
    H[:, 2] = 0.0
    value, (dWp, dWm), (dHp, dHm) = wiener_backward(M, sources, W, H, slices, weights, beta2)
    for part in (dWp, dWm, dHp, dHm):
        assert np.all(np.isfinite(part)) and np.all(part >= 0)
    assert_array_equal(dHp[:, 2], 0.0)
    assert_array_equal(dHm[:, 2], 0.0)
    equal = [M / 3.0] * 3  # the zero frame's estimates (the dense formula is 0 / 0 there)
    keep = [0, 1, 3, 4, 5]
    expected = wiener_loss(M[:, keep], [S[:, keep] for S in sources], W, H[:, keep], slices, weights, beta2)
    expected += sum(g * ref_divergence(S[:, [2]], E[:, [2]], beta2) for S, E, g in zip(sources, equal, weights))
    assert_allclose(value, expected, rtol=1e-12)

    def loss_W(W_):
        return wiener_loss(M[:, keep], [S[:, keep] for S in sources], W_, H[:, keep], slices, weights, beta2)

    assert relative_error(dWp - dWm, central_differences(loss_W, W.copy())) < 1e-7
    H_keep = H[:, keep].copy()
    fd_H = central_differences(
        lambda H_: wiener_loss(M[:, keep], [S[:, keep] for S in sources], W, H_, slices, weights, beta2), H_keep
    )
    assert relative_error((dHp - dHm)[:, keep], fd_H) < 1e-7
    # (b) A model 2**-400 times smaller (far below float64's eps_for, ~1e-77):
    # the loss and dW are unchanged and dH scales by 2**400, exactly.
    H = problem(n_sources, 1, seed=23)[2]
    c = 2.0**-400
    ref_value, (rWp, rWm), (rHp, rHm) = wiener_backward(M, sources, W, H, slices, weights, beta2)
    value, (dWp, dWm), (dHp, dHm) = wiener_backward(M, sources, W, H * c, slices, weights, beta2)
    assert (W @ (H * c)).max() < eps_for(np.float64)
    assert value == ref_value
    assert_allclose(dWp, rWp, rtol=1e-14)
    assert_allclose(dWm, rWm, rtol=1e-14)
    assert_allclose(dHp * c, rHp, rtol=1e-14)
    assert_allclose(dHm * c, rHm, rtol=1e-14)


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

    prob = training(M, sources, H_start, n_trained, slices, weights, 1.0, 2.0, mu)
    assert prob.spec.exponent == 1.0
    _, grads = chunk_loss_and_gradients(prob, W_layers)
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
        return wiener_loss(M, sources, W, H_, slices, (1.0, 0.0), 2.0)

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


def _train(M, sources, H_start, W_layers, slices, beta1=1.0, beta2=2.0, mu=0.05, **kwargs):
    params = dict(max_iter=15, tol=0.0, batch_size=1000)
    params.update(kwargs)
    prob = training(M, sources, H_start, len(W_layers), slices, (1.0, 0.0), beta1, beta2, mu)
    layers, n_iter, curve, interrupted, _, _ = train_layers(prob, W_layers, **params)
    assert interrupted is False
    return layers, n_iter, curve


@pytest.mark.parametrize("beta1, beta2", [(1.0, 2.0), (1.0, 1.0), (0.5, 2.0), (3.0, 1.0)])
def test_train_layers_decreases_and_keeps_non_negative(beta1, beta2):
    M, sources, H_start, W_layers, slices = learnable_problem()
    originals = [W.copy() for W in W_layers]
    exponent = mm_exponent(beta1)
    layers, n_iter, curve = _train(M, sources, H_start, W_layers, slices, beta1=beta1, beta2=beta2)
    for W, W0 in zip(W_layers, originals):
        assert_array_equal(W, W0)  # inputs untouched
    assert 1 <= n_iter <= 15 and len(curve) == n_iter + 1
    assert np.all(np.diff(curve) <= 0)
    assert curve[1] < curve[0] and curve[-1] < 0.9 * curve[0]
    weights = (1.0, 0.0)
    start = ref_objective(M, sources, H_start, W_layers, 2, weights, beta1, beta2, 0.05, exponent)
    end = ref_objective(M, sources, H_start, layers, 2, weights, beta1, beta2, 0.05, exponent)
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
    prob = training(M, sources, H_start, 3, slices, (1.0, 0.0), 1.0, 2.0, 0.1)

    def objective(layers):
        return ref_objective(M, sources, H_start, layers, 2, (1.0, 0.0), 1.0, 2.0, 0.1, 1.0)

    layers, losses = W_layers, []
    for _ in range(2):
        loss, grads = chunk_loss_and_gradients(prob, layers)
        losses.append(loss)
        layers = [W * (minus / plus) for W, (plus, minus) in zip(layers, grads)]
    losses.append(objective(layers))
    assert losses[2] > losses[1]  # precondition: a plain step overshoots

    trained, n_iter, curve = _train(M, sources, H_start, W_layers, slices, mu=0.1, max_iter=10)
    assert n_iter == 10
    assert np.all(np.diff(curve) <= 0)
    assert curve[-1] < 0.5 * curve[0]
    assert_allclose(curve[-1], objective(trained) / M.shape[1], rtol=1e-12)


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


def test_evaluate_sums_the_chunks_and_skips_frozen_layers():
    M, sources, H_start, W_layers, slices = learnable_problem(n=20, n_trained=3)
    prob = training(M, sources, H_start, 3, slices, (1.0, 0.0), 1.0, 2.0, 0.05)
    loss, grads = evaluate(prob, W_layers, batch_size=6)
    whole_loss, whole = chunk_loss_and_gradients(prob, W_layers)
    assert_allclose(loss, whole_loss, rtol=1e-12)
    for (p, m), (wp, wm) in zip(grads, whole):
        assert_allclose(p, wp, rtol=1e-12)
        assert_allclose(m, wm, rtol=1e-12)
    frozen_loss, frozen = evaluate(prob, W_layers, trainable=[False, True, True], batch_size=6)
    assert frozen_loss == loss and frozen[0] is None
    for a, b in zip(frozen[1:], grads[1:]):
        assert_array_equal(a[0], b[0])
        assert_array_equal(a[1], b[1])
    only_loss, none = evaluate(prob, W_layers, gradients=False, batch_size=6)
    assert none is None and only_loss == loss


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
    prob64 = training(M, sources, H, 2, slices, (1.0, 0.0), 1.0, 2.0, 0.1)
    prob32 = training(np.float32(M), [np.float32(S) for S in sources], np.float32(H), 2, slices, (1.0, 0.0), 1.0, 2.0, 0.1)
    loss64, grads64 = chunk_loss_and_gradients(prob64, W_layers)
    loss32, grads32 = chunk_loss_and_gradients(prob32, [np.float32(W) for W in W_layers])
    assert_allclose(loss32, loss64, rtol=1e-5)
    for g32, g64 in zip(itertools.chain(*grads32), itertools.chain(*grads64)):
        assert g32.dtype == np.float32
        assert_allclose(g32, g64, rtol=1e-4, atol=1e-5 * np.abs(g64).max())


# --------------------------------------------------------------------------
# Issue 11, defect 11: through the public estimator, the estimates sum to the mixture
# --------------------------------------------------------------------------
def stacked_mixture(n=60, F=5, T=2, seed=0, quiet_every=4, quiet=1e-10):
    """Context-stacked X, y of two sources; every ``quiet_every``-th frame at ``quiet`` of the peak."""
    rng = np.random.default_rng(seed)
    n_frames = n + T - 1
    spectra = [rng.gamma(0.5, size=(F, 3)) @ rng.gamma(0.5, size=(3, n_frames)) + 0.01 for _ in range(2)]
    gain = np.ones(n_frames)
    gain[::quiet_every] = quiet
    spectra = [S * gain for S in spectra]

    def stack(S):
        return np.hstack([S[:, k : k + n].T for k in range(T)])

    return stack(sum(spectra)), np.hstack([stack(S) for S in spectra])


# (dtype, sparsity, K): float32 with sparsity 1e10, 1e12 puts every model far
# below float32's eps_for (~3e-10); with K = 25 every activation underflows to 0.
DEFECT11_CASES = [
    (np.float64, 0.1, 4), (np.float32, 0.1, 4), (np.float32, 1e10, 4), (np.float32, 1e12, 4),
    (np.float32, 1e12, 25), (np.float64, 1e12, 4),
]


def assert_sums_to_the_mixture(est, X, n_freqs, n_sources=2):
    rtol = 1e-6 if X.dtype == np.float32 else 1e-12
    for data in (X, X[::4]):  # all frames; the quiet ones alone (another scale for safe_scale)
        pred = est.predict(data)
        assert pred.dtype == X.dtype and np.all(np.isfinite(pred)) and np.all(pred >= 0)
        total = pred.astype(np.float64).reshape(len(data), n_sources, n_freqs).sum(axis=1)
        assert_allclose(total, data[:, -n_freqs:].astype(np.float64), rtol=rtol, atol=0)


@pytest.mark.parametrize("dtype, sparsity, n_layers", DEFECT11_CASES)
@pytest.mark.parametrize("n_trained_layers", [0, 2])
def test_issue11_defect11_deep_nmf_predict_sums_to_the_mixture(dtype, sparsity, n_layers, n_trained_layers):
    # Before: the Wiener filter divided by max(Lam, eps): where the model was
    # below float32's floor (sparsity 1e10, 1e12; frames at 1e-10 of the peak)
    # or every activation underflowed, the estimates summed to a fraction of
    # the mixture, down to 0 (relative error 1.0).
    F = 5
    X, y = stacked_mixture(F=F)
    X, y = X.astype(dtype), y.astype(dtype)
    est = DeepNMF(
        n_components=2, n_layers=n_layers, n_trained_layers=n_trained_layers, n_context=2, sparsity=sparsity,
        max_iter=4, tol=0.0, bases_max_iter=10, random_state=0,
    ).fit(X, y)
    if n_layers == 25:
        assert np.all(est.transform(X) == 0)  # the case is the one meant: every activation is 0
    assert_sums_to_the_mixture(est, X, F)
