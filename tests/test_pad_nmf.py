"""Tests for the physics-aware options (``_nmf.hankel``, the penalty and the trainer's
structures and frozen layers, ``PhysicsAwareDeepNMF``).

References: a block-Hankel matrix built entry by entry from its definition
``W[b, j] = g[b + j]``, least squares for the projection, central finite
differences of objectives written out here from eq. 33-34 and the slides'
loss, the (independently tested) ``DeepNMF``, ``DiscriminativeNMF`` and
plain training for the options switched off, the network written out from
the fitted attributes, and scikit-learn's common checks (test_common.py's
adapter and expected failures). Regression tests of issue 11: defects 3
(interrupted refits), 11 (Wiener estimates sum to the mixture) and 14
(loss_curve_ in the data's units).
"""

import inspect
import pickle
import warnings

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning

from sklearn_unfold import DeepNMF, DiscriminativeNMF, deep_nmf
from sklearn_unfold._nmf import trainer
from sklearn_unfold._nmf.backward import output_backward, reconstruction_penalty
from sklearn_unfold._nmf.divergences import mm_exponent
from sklearn_unfold._nmf.hankel import BlockHankel, fit_hankel_sparse_nmf, hankel_ratio, init_hankel_generators
from sklearn_unfold._nmf.network import NetworkSpec
from sklearn_unfold._nmf.trainer import TrainingProblem, chunk_loss_and_gradients, train_layers
from sklearn_unfold._nmf.updates import init_training_activations
from sklearn_unfold.exceptions import FitInterruptedWarning
from sklearn_unfold.pad_nmf import PhysicsAwareDeepNMF
from conftest import ref_divergence

F, R = 6, 4  # frequencies per frame, components per source


# --------------------------------------------------------------------------
# Independent references
# --------------------------------------------------------------------------
def ref_hankel(gen, T, r):
    """Block-Hankel weights from the definition, entry by entry: W[b F + f, k r + j] = gen[k, b + j, f]."""
    G, _, n_freqs = gen.shape
    W = np.zeros((T * n_freqs, G * r))
    for k in range(G):
        for j in range(r):
            for b in range(T):
                W[b * n_freqs : (b + 1) * n_freqs, k * r + j] = gen[k, b + j]
    return W


def is_block_hankel(W, T, r):
    """Every F-block on an anti-diagonal of every group is *exactly* equal to the others."""
    n_freqs = W.shape[0] // T
    for k in range(W.shape[1] // r):
        for d in range(T + r - 1):
            blocks = [W[b * n_freqs : (b + 1) * n_freqs, k * r + d - b] for b in range(T) if 0 <= d - b < r]
            if any(not np.array_equal(blocks[0], other) for other in blocks[1:]):
                return False
    return True


def ref_update(M, W, H, beta, mu, exponent):
    """Eq. 33 written out."""
    Lam = W @ H
    return H * ((W.T @ (M * Lam ** (beta - 2.0))) / (W.T @ Lam ** (beta - 1.0) + mu)) ** exponent


def ref_objective(M_layers, M, sources, H, W_layers, n_sources, weights, beta1, beta2, mu, exponent, gamma):
    """Update layers on M_layers, eq. 34 on M, then the slides' loss (Wiener term + gamma * reconstruction)."""
    for W in W_layers[:-1]:
        H = ref_update(M_layers, W, H, beta1, mu, exponent)
    W = W_layers[-1]
    k = W.shape[1] // n_sources
    Lams = [W[:, l * k : (l + 1) * k] @ H[l * k : (l + 1) * k] for l in range(n_sources)]
    Lam = sum(Lams)
    wiener = sum(g * ref_divergence(S, M * La / Lam, beta2) for S, La, g in zip(sources, Lams, weights) if g)
    recon = sum(g * 0.5 * np.sum((S - La) ** 2) for S, La, g in zip(sources, Lams, weights) if g)
    return wiener + gamma * recon


def central_differences(func, x, h=1e-5):
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
    scale = np.abs(expected).max()
    assert scale > 1e-3, "degenerate reference gradient"
    return np.abs(actual - expected).max() / scale


def problem(n_sources, n_update, seed, T=3, n_freqs=4, k=2, n=6, context=True):
    """A small random network: context mixture, target frames, sources, H_start, layers."""
    rng = np.random.default_rng(seed)
    M_ctx = rng.uniform(0.2, 1.5, size=(T * n_freqs, n))
    M = M_ctx[-n_freqs:]
    sources = [M * w for w in rng.dirichlet(np.ones(n_sources), size=(n_freqs, n)).transpose(2, 0, 1)]
    rows = T * n_freqs if context else n_freqs
    W_layers = [rng.uniform(0.2, 1.0, size=(rows, n_sources * k)) for _ in range(n_update)]
    W_layers.append(rng.uniform(0.2, 1.0, size=(n_freqs, n_sources * k)))
    H_start = rng.uniform(0.2, 1.0, size=(n_sources * k, n))
    slices = [slice(l * k, (l + 1) * k) for l in range(n_sources)]
    return (M_ctx if context else M), M, sources, H_start, W_layers, slices


def training(M_layers, M, sources, H, slices, weights, beta1, beta2, mu, gamma, n_trained):
    """The TrainingProblem on these arrays (context layers when M_layers is the context).

    Layers run with ``spec.exponent = mm_exponent(beta1)``, as the estimators run them.
    """
    n_freqs = M.shape[0]
    spec = NetworkSpec(
        n_layers=n_trained, n_trained=n_trained, n_context=M_layers.shape[0] // n_freqs, n_frequencies=n_freqs,
        n_components=slices[0].stop - slices[0].start, n_sources=len(slices), beta=beta1, sparsity=mu,
        context_layers=M_layers.shape[0] != n_freqs,
    )
    assert spec.source_slices == list(slices)
    return TrainingProblem(
        spec=spec, M_layers=M_layers, M=M, sources=list(sources), H_start=H, mu=mu, weights=tuple(weights),
        target_beta=beta2, gamma=gamma,
    )


def params(**kwargs):
    base = dict(
        n_components=R,
        n_layers=4,
        n_trained_layers=3,
        n_context=3,
        sparsity=0.1,
        max_iter=8,
        tol=0.0,
        bases_max_iter=20,
        random_state=0,
    )
    base.update(kwargs)
    return base


def events(n=150, n_freqs=F, T=3, seed=0):
    """Sources with time structure: source 0 is a decaying spectral pattern restarting at random onsets."""
    rng = np.random.default_rng(seed)
    n_frames = n + T - 1
    shape = rng.gamma(1.0, size=n_freqs) + 0.1
    env = np.zeros(n_frames)
    for onset in np.flatnonzero(rng.random(n_frames) < 0.08):
        env[onset:] += rng.uniform(1, 3) * np.exp(-np.arange(n_frames - onset) / 2.0)
    S0 = np.outer(env, shape) * rng.uniform(0.8, 1.2, (n_frames, n_freqs)) + 0.01
    S1 = rng.gamma(2.0, 0.2, size=(n_frames, n_freqs)) * np.linspace(1.0, 0.3, n_freqs)

    def stack(S):
        return np.hstack([S[k : k + n] for k in range(T)])

    return stack(S0 + S1), np.hstack([stack(S0), stack(S1)])


# --------------------------------------------------------------------------
# Block-Hankel structure
# --------------------------------------------------------------------------
@pytest.mark.parametrize("T, r, G", [(3, 2, 2), (1, 3, 1), (4, 1, 3), (2, 5, 2)])
def test_block_hankel_expand_adjoint_project(T, r, G):
    rng = np.random.default_rng(0)
    h = BlockHankel(T, F, r)
    gen = rng.uniform(size=(G, T + r - 1, F))
    W = h.expand(gen)
    assert_array_equal(W, ref_hankel(gen, T, r))
    assert is_block_hankel(W, T, r)
    A = rng.normal(size=W.shape)
    assert not is_block_hankel(A, T, r) or T == 1 or r == 1
    # adjoint: <expand(g), A> = <g, adjoint(A)>.
    assert_allclose(np.vdot(W, A), np.vdot(gen, h.adjoint(A)), rtol=1e-12)
    # projection: least squares over generators (the basis of the Hankel subspace).
    basis = np.stack([ref_hankel(e.reshape(gen.shape), T, r).ravel() for e in np.eye(gen.size)], axis=1)
    coef = np.linalg.lstsq(basis, A.ravel(), rcond=None)[0]
    assert_allclose(h.project(A).ravel(), basis @ coef, atol=1e-12)
    assert_allclose(h.generator(A), coef.reshape(gen.shape), atol=1e-12)
    assert is_block_hankel(h.project(A), T, r)
    assert_allclose(h.project(W), W, rtol=1e-14)
    # group norms: RMS atom norm of each group.
    norms = np.sqrt((W**2).sum(axis=0).reshape(G, r).mean(axis=1))
    assert_allclose(h.group_norms(gen), norms, rtol=1e-12)


def test_hankel_ratio_keeps_structure_exactly():
    rng = np.random.default_rng(1)
    T, r = 3, 4
    h = BlockHankel(T, F, r)
    W = h.expand(rng.uniform(size=(2, T + r - 1, F)))
    plus, minus = rng.uniform(size=W.shape), rng.uniform(size=W.shape)
    ratio = hankel_ratio(h, plus, minus, 1e-30)
    assert is_block_hankel(ratio, T, r) and is_block_hankel(W * ratio, T, r)
    assert is_block_hankel(W * ratio**0.25, T, r)
    # It is the ratio of the anti-diagonal averages of the parts.
    assert_allclose(ratio, h.project(minus) / h.project(plus), rtol=1e-12)


def test_hankel_sparse_nmf():
    X, Y = events(n=120)
    M = np.ascontiguousarray(Y[:, : 3 * F].T)
    h = BlockHankel(3, F, 2)
    rng = np.random.RandomState(2)
    gen = init_hankel_generators(h, M, R, rng)
    assert_allclose(h.group_norms(gen), 1.0, rtol=1e-12)
    H = init_training_activations(M, h.expand(gen), rng)
    for mu in (0.0, 0.5):
        gen_out, H_out, n_iter, curve = fit_hankel_sparse_nmf(h, M, gen, H, beta=1.0, mu=mu, max_iter=40, tol=0)
        assert n_iter == 40 and np.all(np.diff(curve) <= 0) and curve[-1] < 0.5 * curve[0]
        assert_allclose(h.group_norms(gen_out), 1.0, rtol=1e-10)
        W = h.expand(gen_out)
        assert is_block_hankel(W, 3, 2) and np.all(W >= 0) and np.all(H_out >= 0)
        Lam = W @ H_out
        assert_allclose(curve[-1], ref_divergence(M, Lam, 1.0) + mu * H_out.sum(), rtol=1e-10)


@pytest.mark.parametrize("beta", [1.0, 2.0, 0.5])
def test_hankel_generator_gradient_matches_finite_differences(beta):
    # The generator gradient used by the Hankel NMF and by the trainer is the
    # adjoint of the W gradient: check it on D_beta(M | expand(g) H).
    rng = np.random.default_rng(3)
    T, r = 3, 2
    h = BlockHankel(T, 3, r)
    gen = rng.uniform(0.2, 1.0, size=(2, T + r - 1, 3))
    H = rng.uniform(0.2, 1.0, size=(2 * r, 5))
    M = rng.uniform(0.2, 1.0, size=(T * 3, 5))
    Lam = h.expand(gen) @ H
    pos, neg = (Lam ** (beta - 1)) @ H.T, (M * Lam ** (beta - 2)) @ H.T
    fd = central_differences(lambda g: ref_divergence(M, ref_hankel(g, T, r) @ H, beta), gen.copy())
    assert relative_error(h.adjoint(pos) - h.adjoint(neg), fd) < 1e-7


# --------------------------------------------------------------------------
# Output layer with the reconstruction penalty, and the whole trained part
# --------------------------------------------------------------------------
@pytest.mark.parametrize("beta2", [1.0, 2.0])
@pytest.mark.parametrize("n_sources, weights", [(2, (1.0, 0.0)), (3, (0.5, 1.0, 0.2))])
@pytest.mark.parametrize("gamma", [0.0, 0.7, 5.0])
def test_output_backward_matches_finite_differences(beta2, n_sources, weights, gamma):
    _, M, sources, H, (W,), slices = problem(n_sources, 0, seed=4)

    def loss(W_, H_):
        return ref_objective(M, M, sources, H_, [W_], n_sources, weights, 1.0, beta2, 0.0, 1.0, gamma)

    value, (dWp, dWm), (dHp, dHm) = output_backward(M, sources, W, H, slices, weights, beta2, gamma)
    assert_allclose(value, loss(W, H), rtol=1e-12)
    assert all(np.all(part >= 0) for part in (dWp, dWm, dHp, dHm))
    assert relative_error(dWp - dWm, central_differences(lambda W_: loss(W_, H), W.copy())) < 1e-7
    assert relative_error(dHp - dHm, central_differences(lambda H_: loss(W, H_), H.copy())) < 1e-7
    # The penalty alone: 0.5 * gamma * sum_l w_l ||S_l - W_l H_l||^2 with parts gamma w (Lam_l, S_l).
    pen, (pWp, pWm), _ = reconstruction_penalty(sources, W, H, slices, weights, gamma)
    wiener_only = ref_objective(M, M, sources, H, [W], n_sources, weights, 1.0, beta2, 0.0, 1.0, 0.0)
    assert_allclose(pen, loss(W, H) - wiener_only, rtol=1e-10, atol=1e-14)
    sl = slices[0]
    assert_allclose(pWp[:, sl], gamma * weights[0] * (W[:, sl] @ H[sl]) @ H[sl].T, rtol=1e-12)
    assert_allclose(pWm[:, sl], gamma * weights[0] * sources[0] @ H[sl].T, rtol=1e-12)


@pytest.mark.parametrize("beta1, beta2", [(1.0, 2.0), (0.5, 1.0), (2.0, 2.0)])
@pytest.mark.parametrize("context", [False, True])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_network_gradients_match_finite_differences(beta1, beta2, context, gamma):
    # Every trained matrix of a 2-update-layer network (context or single-frame
    # update layers) with the slides' loss, against central differences.
    exponent = mm_exponent(beta1)
    M_layers, M, sources, H, W_layers, slices = problem(2, 2, seed=5, context=context)
    weights, mu = (1.0, 0.3), 0.2
    prob = training(M_layers, M, sources, H, slices, weights, beta1, beta2, mu, gamma, 3)
    assert prob.spec.exponent == exponent
    loss, grads = chunk_loss_and_gradients(prob, W_layers)

    def ref(layers):
        return ref_objective(M_layers, M, sources, H, layers, 2, weights, beta1, beta2, mu, exponent, gamma)

    assert_allclose(loss, ref(W_layers), rtol=1e-12)
    assert len(grads) == 3
    for i, (plus, minus) in enumerate(grads):
        assert np.all(plus >= 0) and np.all(minus >= 0)
        layers = [W.copy() for W in W_layers]

        def loss_of(W_i, i=i, layers=layers):
            layers[i] = W_i
            return ref(layers)

        assert relative_error(plus - minus, central_differences(loss_of, W_layers[i].copy())) < 1e-6, i


@pytest.mark.parametrize("gamma", [0.0, 1.0])
def test_hankel_layer_gradient_matches_finite_differences(gamma):
    # For a block-Hankel update layer W = expand(g), dE/dg = adjoint of the W
    # gradient parts: the trainer's ratio adjoint(minus) / adjoint(plus).
    T, n_freqs, r = 3, 4, 2
    M_layers, M, sources, H, W_layers, slices = problem(2, 2, seed=6, T=T, n_freqs=n_freqs, k=2 * r)
    h = BlockHankel(T, n_freqs, r)
    rng = np.random.default_rng(7)
    gens = [rng.uniform(0.2, 1.0, size=(4, T + r - 1, n_freqs)) for _ in range(2)]
    W_layers[:2] = [h.expand(g) for g in gens]
    prob = training(M_layers, M, sources, H, slices, (1.0, 0.0), 1.0, 2.0, 0.1, gamma, 3)
    _, grads = chunk_loss_and_gradients(prob, W_layers)
    for i in range(2):
        plus, minus = grads[i]

        def loss_of(g, i=i):
            layers = list(W_layers)
            layers[i] = ref_hankel(g, T, r)
            return ref_objective(M_layers, M, sources, H, layers, 2, (1.0, 0.0), 1.0, 2.0, 0.1, 1.0, gamma)

        fd = central_differences(loss_of, gens[i].copy())
        assert relative_error(h.adjoint(plus) - h.adjoint(minus), fd) < 1e-6, i


def test_frozen_layers_backward_stops_and_matches():
    M_layers, M, sources, H, W_layers, slices = problem(2, 3, seed=8)
    prob = training(M_layers, M, sources, H, slices, (1.0, 0.0), 1.0, 2.0, 0.1, 0.5, 4)
    loss, full = chunk_loss_and_gradients(prob, W_layers)
    loss2, partial = chunk_loss_and_gradients(prob, W_layers, lowest=2)
    assert loss == loss2
    assert partial[0] is None and partial[1] is None
    for a, b in zip(full[2:], partial[2:]):
        assert_array_equal(a[0], b[0])
        assert_array_equal(a[1], b[1])


def _train_pad(M_layers, M, sources, H, W_layers, slices, gamma=0.0, **kwargs):
    options = dict(max_iter=10, tol=0.0, batch_size=1000)
    options.update(kwargs)
    prob = training(M_layers, M, sources, H, slices, (1.0, 0.0), 1.0, 2.0, 0.1, gamma, len(W_layers))
    layers, n_iter, curve, interrupted, _, _ = train_layers(prob, W_layers, **options)
    assert interrupted is False
    return layers, n_iter, curve


def test_trainer_neutral_options_change_nothing():
    # The options' switches at their neutral values compute exactly the plain
    # training: every layer trainable, no structure, and block-Hankel groups
    # of one atom (r = 1 constrains nothing: the projected ratio is the ratio).
    M_layers, M, sources, H, W_layers, slices = problem(2, 2, seed=9, n=30)
    expected = _train_pad(M_layers, M, sources, H, W_layers, slices, batch_size=7)
    assert expected[1] == 10 and np.all(np.diff(expected[2]) <= 0)
    h1 = BlockHankel(3, 4, 1)
    for options in (
        dict(trainable=[True] * 3, structures=[None] * 3),
        dict(structures=[h1, h1, None]),
        dict(structures=[h1, h1, None], trainable=[True, True, True]),
    ):
        got = _train_pad(M_layers, M, sources, H, W_layers, slices, batch_size=7, **options)
        assert got[1] == expected[1] and got[2] == expected[2]
        for a, b in zip(got[0], expected[0]):
            assert_array_equal(a, b)


def test_trainer_frozen_hankel_and_penalty():
    T, n_freqs, r = 3, 4, 2
    M_layers, M, sources, H, W_layers, slices = problem(2, 2, seed=10, T=T, n_freqs=n_freqs, k=2 * r, n=40)
    h = BlockHankel(T, n_freqs, r)
    W_layers[:2] = [h.project(W) for W in W_layers[:2]]
    originals = [W.copy() for W in W_layers]
    layers, n_iter, curve = _train_pad(
        M_layers, M, sources, H, W_layers, slices, trainable=[True, True, False], structures=[h, h, None], gamma=0.5
    )
    for W, W0 in zip(W_layers, originals):
        assert_array_equal(W, W0)  # inputs untouched
    assert n_iter == 10 and np.all(np.diff(curve) <= 0) and curve[-1] < curve[0]
    assert layers[2] is W_layers[2]  # frozen: the very same matrix
    for W, W0 in zip(layers[:2], originals[:2]):
        assert is_block_hankel(W, T, r) and np.all(W >= 0) and not np.allclose(W, W0)
    final = ref_objective(M_layers, M, sources, H, layers, 2, (1.0, 0.0), 1.0, 2.0, 0.1, 1.0, 0.5)
    assert_allclose(curve[-1], final / M.shape[1], rtol=1e-12)


# --------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(n_trained_layers=2, beta_loss=0.5, source_weights=[1.0, 0.3]), dict(n_trained_layers=0)],
)
def test_options_off_is_deep_nmf(kwargs):
    X, Y = events()
    deep = DeepNMF(**params(**kwargs)).fit(X, Y)
    pad = PhysicsAwareDeepNMF(**params(**kwargs)).fit(X, Y)
    assert_array_equal(pad.bases_, deep.bases_)
    assert_array_equal(pad.predict(X), deep.predict(X))
    assert_array_equal(pad.transform(X), deep.transform(X))
    assert pad.loss_curve_ == deep.loss_curve_ and pad.n_iter_ == deep.n_iter_
    assert pad.n_params_ == deep.n_params_
    C = kwargs.get("n_trained_layers", 3)
    if C:
        assert_array_equal(pad.reconstruction_components_, deep.trained_components_[-1])
        assert_array_equal(pad.update_components_, deep.trained_components_[:-1])
    # Every public DeepNMF parameter is a PhysicsAwareDeepNMF parameter with the same default.
    deep_params = inspect.signature(DeepNMF).parameters
    pad_params = inspect.signature(PhysicsAwareDeepNMF).parameters
    assert all(pad_params[k].default == p.default for k, p in deep_params.items())


def test_fixed_reconstruction_bases():
    X, Y = events(seed=1)
    rng = np.random.default_rng(0)
    given = rng.uniform(0.1, 1.0, size=(2 * R, F))
    kept = given.copy()
    est = PhysicsAwareDeepNMF(**params(reconstruction_bases=given)).fit(X, Y)
    assert_array_equal(given, kept)  # input untouched
    assert_array_equal(est.reconstruction_components_, given)  # not modified by back-propagation
    assert est.reconstruction_fixed_ and est.n_iter_ == 8
    assert np.all(np.diff(est.loss_curve_) <= 0) and est.loss_curve_[-1] < est.loss_curve_[0]
    assert est.n_params_["trained"] == est.update_components_.size
    snmf = PhysicsAwareDeepNMF(**params(reconstruction_bases="snmf")).fit(X, Y)
    assert_array_equal(snmf.reconstruction_components_, snmf.bases_[:, -F:])
    # C = 1 with a fixed W^K trains nothing: sparse NMF separation with W^K as reconstruction.
    none = PhysicsAwareDeepNMF(**params(reconstruction_bases="snmf", n_trained_layers=1)).fit(X, Y)
    assert none.n_iter_ == 0 and none.loss_ is None
    assert_allclose(none.predict(X), DeepNMF(**params(n_trained_layers=0)).fit(X, Y).predict(X), rtol=1e-12)


def test_dnmf_reconstruction_bases_is_two_passes():
    X, Y = events(seed=2)
    est = PhysicsAwareDeepNMF(**params(reconstruction_bases="dnmf", context_layers=True, n_trained_layers=2)).fit(X, Y)
    # Pass 1 trains W^K alone with the context update layer at its start (= the fixed
    # bases): the network is then K fixed iterations, i.e. discriminative NMF.
    dnmf = DiscriminativeNMF(**{k: v for k, v in params().items() if k != "n_trained_layers"}).fit(X, Y)
    assert_allclose(est.reconstruction_components_, dnmf.trained_components_[0], rtol=1e-9)
    assert est.n_iter_ == 16 and len(est.loss_curve_) == 17
    assert_allclose(est.loss_curve_[:9], dnmf.loss_curve_, rtol=1e-9)
    assert np.all(np.diff(est.loss_curve_) <= 0)
    # Pass 2 is a fit with that dictionary given.
    second = PhysicsAwareDeepNMF(
        **params(reconstruction_bases=est.reconstruction_components_, context_layers=True, n_trained_layers=2)
    ).fit(X, Y)
    assert_array_equal(second.update_components_, est.update_components_)
    assert_array_equal(second.predict(X), est.predict(X))


def test_hankel_structure_is_kept():
    X, Y = events(seed=3)
    r = 2
    est = PhysicsAwareDeepNMF(**params(hankel_size=r, reconstruction_penalty=0.5)).fit(X, Y)
    assert est.context_layers_ and est.update_components_.shape == (2, 2 * R, 3 * F)
    assert is_block_hankel(est.bases_.T, 3, r)
    for W in est.update_components_:
        assert is_block_hankel(W.T, 3, r) and np.all(W >= 0)
        assert not np.allclose(W, est.bases_)  # trained, not just copied
    assert np.all(np.diff(est.loss_curve_) <= 0) and est.loss_curve_[-1] < est.loss_curve_[0]
    # Free parameters: one generator of T + r - 1 frames per group of r atoms.
    n_gen = (2 * R // r) * (3 + r - 1) * F
    assert est.n_params_ == {"total": 3 * n_gen + 2 * R * F, "trained": 2 * n_gen + 2 * R * F}
    # Given bases are projected onto the structure; r = 1 constrains nothing.
    rng = np.random.default_rng(4)
    bases = rng.uniform(0.1, 1.0, size=(2 * R, 3 * F))
    given = PhysicsAwareDeepNMF(**params(hankel_size=r, bases=bases)).fit(X, Y)
    assert_allclose(given.bases_.T, BlockHankel(3, F, r).project(bases.T), rtol=1e-14)
    one = PhysicsAwareDeepNMF(**params(hankel_size=1, bases=bases)).fit(X, Y)
    plain = PhysicsAwareDeepNMF(**params(context_layers=True, bases=bases)).fit(X, Y)
    assert_array_equal(one.predict(X), plain.predict(X))


def test_reconstruction_penalty_loss_and_effect():
    X, Y = events(seed=5)
    target = np.hstack([Y[:, 3 * F - F : 3 * F], Y[:, -F:]])
    S = target[:, :F]
    results = {}
    for gamma in (0.0, 3.0):
        est = PhysicsAwareDeepNMF(**params(reconstruction_penalty=gamma, max_iter=30)).fit(X, Y)
        wiener, direct = est.predict(X)[:, :F], est.reconstruct(X)[:, :F]
        expected = 0.5 * np.sum((S - wiener) ** 2) + gamma * 0.5 * np.sum((S - direct) ** 2)
        assert_allclose(est.loss_, expected / X.shape[0], rtol=1e-10)
        results[gamma] = np.sum((S - direct) ** 2)
        assert_allclose(est.predict(X).reshape(-1, 2, F).sum(axis=1), X[:, -F:], rtol=1e-12)
        assert est.reconstruct(X).shape == (X.shape[0], 2 * F)
    # The penalty trains the direct reconstruction of the target source.
    assert results[3.0] < 0.8 * results[0.0]


def test_all_options_together_and_dtypes():
    X, Y = events(seed=6)
    kwargs = params(hankel_size=2, reconstruction_bases="dnmf", reconstruction_penalty=0.3)
    est = PhysicsAwareDeepNMF(**kwargs).fit(X, Y)
    assert est.n_iter_ == 16 and np.all(np.diff(est.loss_curve_) <= 0)
    assert all(is_block_hankel(W.T, 3, 2) for W in est.update_components_)
    est32 = PhysicsAwareDeepNMF(**kwargs).fit(X.astype(np.float32), Y.astype(np.float32))
    for name in ("bases_", "update_components_", "reconstruction_components_"):
        assert getattr(est32, name).dtype == np.float32
    for method in ("predict", "transform", "reconstruct"):
        out = getattr(est32, method)(X.astype(np.float32))
        assert out.dtype == np.float32
        assert_allclose(out, getattr(est, method)(X), rtol=2e-2, atol=1e-3 * np.abs(out).max())


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(hankel_size=3), r"hankel_size=3 must divide n_components=4"),
        (dict(hankel_size=2, context_layers=False), r"hankel_size needs context_layers=True"),
        (
            dict(reconstruction_bases=np.ones((2 * R, F + 1))),
            r"reconstruction_bases has shape \(8, 7\); expected \(8, 6\)",
        ),
        (dict(reconstruction_bases=-np.ones((2 * R, F))), r"Negative values .*\(reconstruction_bases\)"),
        (dict(reconstruction_bases=np.full((2 * R, F), np.nan)), r"reconstruction_bases contains NaN"),
        (dict(reconstruction_bases="sparse"), r"'reconstruction_bases' parameter of PhysicsAwareDeepNMF"),
        (dict(reconstruction_penalty=-1.0), r"'reconstruction_penalty' parameter"),
        (dict(hankel_size=0), r"'hankel_size' parameter"),
        (dict(context_layers="yes"), r"'context_layers' parameter"),
        (dict(n_trained_layers=5), r"n_trained_layers=5 cannot exceed n_layers=4"),
    ],
)
def test_bad_options(kwargs, message):
    X, Y = events(n=40, seed=7)
    with pytest.raises(ValueError, match=message):
        PhysicsAwareDeepNMF(**params(**kwargs)).fit(X, Y)


def test_replayed_contracts():
    # What the expected failures keep the common checks from testing, on valid data.
    X, Y = events(seed=8)
    kwargs = params(hankel_size=2, reconstruction_bases="dnmf", reconstruction_penalty=0.3, batch_size=32)
    est = PhysicsAwareDeepNMF(**kwargs)
    before = joblib.hash(est.get_params())
    X_in, Y_in = X.copy(), Y.copy()
    assert est.fit(X, Y) is est
    assert joblib.hash(est.get_params()) == before
    assert_array_equal(X, X_in)
    assert_array_equal(Y, Y_in)
    pred, H = est.predict(X), est.transform(X)
    # Idempotent and reproducible fit; batch_size and threads do not change the result.
    again = PhysicsAwareDeepNMF(**kwargs).fit(*events(n=90, seed=9)).fit(X, Y)
    assert_array_equal(again.predict(X), pred)
    other = PhysicsAwareDeepNMF(**{**kwargs, "batch_size": 1000, "n_jobs": 2}).fit(X, Y)
    assert_allclose(other.predict(X), pred, rtol=1e-9)
    # Subset / order invariance, one sample at a time.
    idx = np.random.default_rng(0).permutation(X.shape[0])[:37]
    assert_allclose(est.predict(X[idx]), pred[idx], rtol=1e-12)
    assert_allclose(est.transform(X[5:6]), H[5:6], rtol=1e-12)
    # State unchanged by methods; pickling.
    state = joblib.hash(vars(est))
    est.predict(X), est.transform(X), est.reconstruct(X), est.score(X, Y), est.n_params_
    assert joblib.hash(vars(est)) == state
    restored = pickle.loads(pickle.dumps(est))
    assert_array_equal(restored.predict(X), pred)
    with pytest.raises(ValueError, match=f"X has {2 * F} features, but PhysicsAwareDeepNMF is expecting {3 * F}"):
        est.predict(X[:, F:])


def test_verbose_and_convergence_warning(capsys):
    X, Y = events(n=60, seed=10)
    with pytest.warns(ConvergenceWarning, match="maximum number of iterations 2 reached"):
        PhysicsAwareDeepNMF(**params(hankel_size=2, max_iter=2, tol=1e-12, verbose=1)).fit(X, Y)
    out = capsys.readouterr().out
    assert "PhysicsAwareDeepNMF iteration    2" in out and "bases after" in out


def test_partial_fit_keeps_the_options():
    # PhysicsAwareDeepNMF inherits DeepNMF's partial_fit through the hooks, so
    # mini-batch updates must keep the options: block-Hankel update layers, a
    # fixed W^K, the penalty in the objective. ('dnmf' is two passes over all
    # the data, so it has no partial_fit.)
    assert not hasattr(PhysicsAwareDeepNMF(reconstruction_bases="dnmf"), "partial_fit")
    X, Y = events(seed=12)
    kwargs = params(hankel_size=2, reconstruction_bases="snmf", reconstruction_penalty=0.5)
    # One call on all the data is fit with max_iter=1.
    one = PhysicsAwareDeepNMF(**kwargs).partial_fit(X, Y)
    fit1 = PhysicsAwareDeepNMF(**params(**{**kwargs, "max_iter": 1})).fit(X, Y)
    assert one.n_iter_ == fit1.n_iter_ == 1 and one.n_steps_ == 1
    for name in ("bases_", "update_components_", "reconstruction_components_"):
        assert_array_equal(getattr(one, name), getattr(fit1, name))
    assert one.loss_curve_[-1] == fit1.loss_curve_[-1]
    # Further calls on batches.
    est = PhysicsAwareDeepNMF(**kwargs).fit(X, Y)
    fitted_out = est.reconstruction_components_.copy()
    S = [Y[:, 3 * F - F : 3 * F], Y[:, -F:]]
    for batch in (slice(0, 50), slice(50, 100), slice(100, 150)):
        before = est.update_components_.copy()
        est.partial_fit(X[batch], Y[batch])
        assert_array_equal(est.reconstruction_components_, fitted_out)
        assert_array_equal(est.reconstruction_components_, est.bases_[:, -F:])
        for W in est.update_components_:
            assert is_block_hankel(W.T, 3, 2) and np.all(W >= 0)
        # The recorded objective is the batch's, with the penalty, after the update.
        sources = [Sl[batch].T for Sl in S]
        pred, direct = est.predict(X[batch]), est.reconstruct(X[batch])
        expected = 0.5 * np.sum((sources[0] - pred[:, :F].T) ** 2) + 0.5 * 0.5 * np.sum((sources[0] - direct[:, :F].T) ** 2)
        assert_allclose(est.loss_curve_[-1], expected / 50, rtol=1e-10)
        assert not np.array_equal(est.update_components_, before)
    assert est.n_steps_ == 3 and est.n_iter_ == 8 + 3


# --------------------------------------------------------------------------
# Regression tests of issue 11 (defects 3, 11, 14) for PhysicsAwareDeepNMF
# --------------------------------------------------------------------------
def ref_pad_forward(est, X):
    """The fitted network written out from the estimator's own attributes (KL layers)."""
    mu, K, C, n_freqs = est.sparsity, est.n_layers, est.n_trained_layers, est.n_frequencies_
    M_ctx = X.T
    M = M_ctx[-n_freqs:]
    W0 = est.bases_.T
    H = np.tile(M_ctx.sum(axis=0) / W0.sum(), (W0.shape[1], 1))
    for _ in range(K - C + 1 if C else K):
        H = ref_update(M_ctx, W0, H, 1.0, mu, 1.0)
    for W in est.update_components_:
        H = ref_update(M_ctx if est.context_layers_ else M, W.T, H, 1.0, mu, 1.0)
    W_out = est.reconstruction_components_.T
    k = W_out.shape[1] // 2
    Lams = [W_out[:, :k] @ H[:k], W_out[:, k:] @ H[k:]]
    return np.hstack([(M * La / (Lams[0] + Lams[1])).T for La in Lams])


PAD_OPTIONS = {
    "hankel+penalty": dict(hankel_size=2, reconstruction_penalty=0.5),
    "dnmf+penalty": dict(reconstruction_bases="dnmf", reconstruction_penalty=0.3, context_layers=True),
    "given+single-frame": dict(reconstruction_bases="snmf", context_layers=False),
}


@pytest.mark.parametrize(
    "dtype, sparsity, n_layers",
    [(np.float64, 0.1, 4), (np.float32, 0.1, 4), (np.float32, 1e10, 4), (np.float32, 1e12, 4), (np.float32, 1e12, 25)],
)
@pytest.mark.parametrize("options", list(PAD_OPTIONS))
def test_issue11_defect11_predict_sums_to_the_mixture(dtype, sparsity, n_layers, options):
    # The Wiener filter had an absolute floor: float32 models below ~3e-10
    # (sparsity 1e10, 1e12, or frames at 1e-10 of the peak) and activations
    # that all underflowed (K = 25) gave estimates summing to a fraction of
    # the mixture, down to 0. Now they sum to the mixture whenever it is positive.
    X, Y = events(n=60, seed=13)
    X[::4] *= 1e-10
    Y[::4] *= 1e-10
    X, Y = X.astype(dtype), Y.astype(dtype)
    est = PhysicsAwareDeepNMF(**params(sparsity=sparsity, n_layers=n_layers, max_iter=4, **PAD_OPTIONS[options]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, Y)
    if n_layers == 25:
        assert np.all(est.transform(X) == 0)  # the case meant: every activation underflowed
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    for data in (X, X[::4]):  # every frame; the quiet ones alone
        pred = est.predict(data)
        assert pred.dtype == dtype and np.all(np.isfinite(pred)) and np.all(pred >= 0)
        total = pred.astype(np.float64).reshape(len(data), 2, F).sum(axis=1)
        assert_allclose(total, data[:, -F:].astype(np.float64), rtol=rtol, atol=0)


@pytest.mark.parametrize("dtype, s", [(np.float64, 2.0**40), (np.float64, 2.0**-40), (np.float32, 1e30)])
@pytest.mark.parametrize("options", [None, *PAD_OPTIONS])
def test_issue11_defect14_loss_curve_in_the_data_units(dtype, s, options):
    # PhysicsAwareDeepNMF reported loss_curve_ / loss_ of the rescaled problem.
    # With target_loss='frobenius' (and the squared-error penalty) the objective
    # of X * s is s**2 times that of X, as DeepNMF (options=None) reports it.
    X, Y = events(n=60, seed=14)
    X, Y = X.astype(dtype), Y.astype(dtype)
    Est = DeepNMF if options is None else PhysicsAwareDeepNMF
    kwargs = params(n_trained_layers=2) if options is None else params(**PAD_OPTIONS[options])
    ref = Est(**kwargs).fit(X, Y)
    big = Est(**kwargs).fit(X * dtype(s), Y * dtype(s))
    assert len(big.loss_curve_) == len(ref.loss_curve_) > 1
    assert_allclose(big.loss_curve_, np.asarray(ref.loss_curve_) * s**2, rtol=1e-6)
    assert_allclose(big.loss_, ref.loss_ * s**2, rtol=1e-6)


def interrupt_after(monkeypatch, k):
    """Make the trainer DeepNMF's fit calls raise KeyboardInterrupt at its (k+1)-th proposed update.

    ``deep_nmf.train_layers`` (what fit calls) is replaced by the real
    trainer with its multiplicative update counted; k = 0 interrupts before
    the first accepted update.
    """
    real_train, real_update = deep_nmf.train_layers, trainer.multiplicative_update
    proposals = {"n": 0}

    def counted_update(*args, **kwargs):
        proposals["n"] += 1
        if proposals["n"] > k:
            raise KeyboardInterrupt
        return real_update(*args, **kwargs)

    def train(*args, **kwargs):
        monkeypatch.setattr(trainer, "multiplicative_update", counted_update)
        try:
            return real_train(*args, **kwargs)
        finally:
            monkeypatch.setattr(trainer, "multiplicative_update", real_update)

    monkeypatch.setattr(deep_nmf, "train_layers", train)


@pytest.mark.parametrize("options", ["hankel+penalty", "dnmf+penalty"])
@pytest.mark.parametrize("where", ["at the call", "inside, before the first update"])
def test_issue11_defect3_interrupt_before_any_update_leaves_the_model(monkeypatch, options, where):
    # Ctrl-C before the first accepted update of a refit used to leave new
    # bases_ next to the old layers; now the fit raises and the model is the old one.
    X, Y = events(n=80, seed=15)
    est = PhysicsAwareDeepNMF(**params(**PAD_OPTIONS[options])).fit(X, Y)
    arrays = {name: getattr(est, name).copy() for name in ("bases_", "update_components_", "reconstruction_components_")}
    pred, state = est.predict(X), pickle.dumps(vars(est))
    if where == "at the call":

        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(deep_nmf, "train_layers", interrupted)
    else:
        interrupt_after(monkeypatch, 0)
    X2, Y2 = events(n=70, seed=16)
    with pytest.raises(KeyboardInterrupt):
        est.set_params(max_iter=20, sparsity=0.3).fit(X2, Y2)
    monkeypatch.undo()
    est.set_params(max_iter=8, sparsity=0.1)
    for name, value in arrays.items():
        assert_array_equal(getattr(est, name), value)
    assert_array_equal(est.predict(X), pred)
    assert pickle.dumps(vars(est)) == state


@pytest.mark.parametrize("options, k", [("hankel+penalty", 1), ("hankel+penalty", 3), ("dnmf+penalty", 2), ("dnmf+penalty", 10)])
def test_issue11_defect3_interrupt_after_k_updates_keeps_a_consistent_model(monkeypatch, options, k):
    # k = 10 with 'dnmf': pass 1 (8 updates of W^K) done, 2 updates of pass 2.
    X, Y = events(n=80, seed=15)
    est = PhysicsAwareDeepNMF(**params(**PAD_OPTIONS[options])).fit(X, Y)
    old_bases = est.bases_.copy()
    X2, Y2 = events(n=70, seed=16)
    interrupt_after(monkeypatch, k)
    with pytest.warns(FitInterruptedWarning, match="fit interrupted by the user"):
        est.set_params(max_iter=8, sparsity=0.3).fit(X2, Y2)
    monkeypatch.undo()
    assert est.n_iter_ == k and len(est.loss_curve_) == k + 1 and est.loss_ == est.loss_curve_[-1]
    assert est._spec_.sparsity == 0.3 and not np.array_equal(est.bases_, old_bases)
    assert np.all(np.diff(est.loss_curve_) <= 0)
    # The network given by its own attributes is what predict computes ...
    assert_allclose(est.predict(X2), ref_pad_forward(est, X2), rtol=1e-10)
    # ... and it is the fit stopped after k updates.
    stopped = PAD_OPTIONS[options] | dict(max_iter=k, sparsity=0.3)
    if options == "dnmf+penalty":
        # Pass 1 trains W^K alone for up to 8 updates; pass 2 the update layer with W^K fixed.
        first = PhysicsAwareDeepNMF(**params(**stopped | dict(max_iter=min(k, 8)))).fit(X2, Y2)
        assert_array_equal(est.reconstruction_components_, first.reconstruction_components_)
        assert est.loss_curve_[: min(k, 8) + 1] == first.loss_curve_[: min(k, 8) + 1]
        if k <= 8:  # interrupted in pass 1: pass 2 never ran, the update layer is at its start
            assert_array_equal(est.update_components_[0], est.bases_)
            return
        # Pass 2 is a fit with the W^K of pass 1 given.
        stopped = dict(stopped, reconstruction_bases=first.reconstruction_components_, max_iter=k - 8)
        reference = PhysicsAwareDeepNMF(**params(**stopped)).fit(X2, Y2)
        assert est.loss_curve_[8:] == reference.loss_curve_
        assert_array_equal(est.update_components_, reference.update_components_)
        return
    reference = PhysicsAwareDeepNMF(**params(**stopped)).fit(X2, Y2)
    for name in ("bases_", "update_components_", "reconstruction_components_"):
        assert_array_equal(getattr(est, name), getattr(reference, name))
    assert est.loss_curve_ == reference.loss_curve_
