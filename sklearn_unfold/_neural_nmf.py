"""NeuralNMF's solver: forward pass, cost, exact gradient, initialization, training.

The model (Gao, Haddock, Molitor, Needell, Sadovnik, Will, Zhang, poster
"Neural NMF"; Will et al. 2023) stacks NMF layers

    X ~ A_0 A_1 ... A_L S_L,    S_0 = q(X, A_0),    S_i = q(S_(i-1), A_i),

where ``q(X, A) = argmin_{S >= 0} ||X - A S||_F`` (see ``_nnls``). The S are
not free variables: they are functions of the A, so the cost is a function of
the A alone, differentiable wherever the NNLS passive sets do not change. All
A (and the classifier B of the supervised cost) are updated together by
projected gradient descent, with Barzilai-Borwein step lengths per block and
a backtracking (Armijo) line search that keeps the cost decreasing.

Orientation: the poster's columns are samples. With scikit-learn's
``X`` of shape (n_samples, n_features), the poster's X is ``X.T``; the
functions of this module take the poster's orientation and the estimator
(:class:`sklearn_unfold.neural_nmf.NeuralNMF`) transposes at the boundary.

Units: with the cost normalized by ``||X||^2``, the problem for ``c X`` is the
problem for X with every ``S_i`` times c and B divided by c. Every step of
the solver respects this (step sizes in units of each block's curvature,
relative tolerances); :func:`train_neural_nmf` also solves on X divided by a
power of two chosen from the data (exact) and maps the answer back, so that
no intermediate overflows or underflows for any scale of the data.

The module is layered bottom-up: the forward pass, cost and gradient; the
initialization; the training loop; the whole fit in the data's units.
"""

import itertools
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from ._fitting import run_interruptible
from ._nnls import nnls, nnls_backward, power_of_two_exponent

# Armijo constant of the projected line search, and its backtracking factor.
_ARMIJO = 1e-4
_SHRINK = 0.5
# Number of iterations over which the stopping rule averages the decrease.
_WINDOW = 5
_MAX_BACKTRACKS = 40


# --------------------------------------------------------------------------
# Forward pass, cost and gradient (poster orientation: columns are samples)
# --------------------------------------------------------------------------


def forward(X, factors, passives=None):
    """Propagate X through the NNLS layers (poster, Method 1, ForwardPropagation).

    Parameters
    ----------
    X : ndarray of shape (n_features, n_samples)
    factors : list of ndarray
        ``A_0`` of shape (n_features, k_0), then ``A_i`` of shape (k_(i-1), k_i).
    passives : list of ndarray of bool, default=None
        Warm-start passive sets for the NNLS solver, one per layer. They only
        change the work, not the result.

    Returns
    -------
    S : list of ndarray
        ``S_i`` of shape (k_i, n_samples).
    passives : list of ndarray of bool
        The passive sets ``S_i > 0``, for :func:`gradient` and warm starts.
    """
    S, P = [], []
    inp = X
    for i, A in enumerate(factors):
        s, p = nnls(A, inp, passive=None if passives is None else passives[i])
        S.append(s)
        P.append(p)
        inp = s
    return S, P


def chain(factors):
    """The product ``A_0 A_1 ... A_L``, of shape (n_features, k_L)."""
    out = factors[0]
    for A in factors[1:]:
        out = out @ A
    return out


def cost(X, factors, S_last, B, Y, mask, weights):
    """Training cost of NeuralNMF.

    ``w_x ||X - A_0...A_L S_L||^2 / 2 + w_y ||mask * (Y - B S_L)||^2 / 2``;
    the second term is the semi-supervised NMF classification term (poster,
    "label indicator"), dropped when ``B`` is None.
    """
    w_x, w_y = weights
    R = X - chain(factors) @ S_last
    value = 0.5 * w_x * np.vdot(R, R)
    if B is not None:
        E = mask * (Y - B @ S_last)
        value += 0.5 * w_y * np.vdot(E, E)
    return float(value)


def gradient(X, factors, S, passives, B, Y, mask, weights):
    """Exact gradient of :func:`cost` with respect to every ``A_i`` and ``B``.

    The cost depends on ``A_i`` directly, through the product
    ``A_0...A_L``, and through ``S_i, ..., S_L``; the second path is
    back-propagated layer by layer through the NNLS solutions with
    :func:`~sklearn_unfold._nnls.nnls_backward` (poster, "Neural NMF
    Backpropagation": differentiate q and apply the chain rule).

    Returns
    -------
    grads : list of ndarray
        One per factor, same shapes.
    grad_B : ndarray or None
    """
    w_x, w_y = weights
    L = len(factors)
    # Q[i] = A_(i+1) ... A_L S_L, so that the model is A_0 ... A_i Q[i].
    Q = [None] * L
    Q[-1] = S[-1]
    for i in range(L - 1, 0, -1):
        Q[i - 1] = factors[i] @ Q[i]
    # T[i] = (A_0 ... A_(i-1))^T dC/d(model), i.e. minus the scaled residual
    # seen from layer i's input space.
    T = [-w_x * (X - factors[0] @ Q[0])]
    for A in factors:
        T.append(A.T @ T[-1])
    grads = [T[i] @ Q[i].T for i in range(L)]
    grad_S = T[L]
    grad_B = None
    if B is not None:
        E = mask * (Y - B @ S[-1])
        grad_S = grad_S - w_y * (B.T @ E)
        grad_B = -w_y * (E @ S[-1].T)
    for i in range(L - 1, -1, -1):
        inp = X if i == 0 else S[i - 1]
        grad_S, grad_A = nnls_backward(factors[i], inp, S[i], passives[i], grad_S)
        grads[i] += grad_A
    return grads, grad_B


def _sq_norm2(M):
    """Squared spectral norm, from the smaller Gram matrix."""
    if M.size == 0:
        return 0.0
    G = M.T @ M if M.shape[0] >= M.shape[1] else M @ M.T
    return float(np.linalg.eigvalsh(G)[-1])


def step_scales(factors, S_last, mask, weights, with_B):
    """Curvature of the cost along each block, for per-block step sizes.

    With the S held fixed, the cost is quadratic in ``A_i`` with curvature
    ``w_x ||A_0...A_(i-1)||_2^2 ||A_(i+1)...A_L S_L||_2^2`` (and in B with
    ``w_y ||S_L[:, labeled]||_2^2``). Dividing each block's gradient by it
    makes the step invariant to the rescalings ``A_i D, D^-1 A_(i+1)`` the
    model cannot see, and to the units of X; the line search absorbs what
    the NNLS layers add.
    """
    w_x, w_y = weights
    L = len(factors)
    right = [None] * L
    right[-1] = S_last
    for i in range(L - 1, 0, -1):
        right[i - 1] = factors[i] @ right[i]
    scales = []
    left = None
    for i in range(L):
        left_norm = 1.0 if left is None else _sq_norm2(left)
        scales.append(w_x * left_norm * _sq_norm2(right[i]))
        left = factors[i] if left is None else left @ factors[i]
    scale_B = w_y * _sq_norm2(S_last[:, mask]) if with_B else None
    tiny = np.finfo(np.float64).tiny
    return [max(s, tiny) for s in scales], (max(scale_B, tiny) if with_B else None)


# --------------------------------------------------------------------------
# Initialization
# --------------------------------------------------------------------------


def init_factors(X, ranks, init, random_state):
    """Starting factors ``A_0, ..., A_L`` (poster orientation), independent of the units of X.

    ``'hierarchical'`` runs scikit-learn's NMF layer by layer (X ~ A_0 S_0,
    then S_0 ~ A_1 S_1, ...), the hierarchical NMF that NeuralNMF refines;
    ``'random'`` draws uniform entries in [0.1, 1).

    scikit-learn's NMF is not scale-equivariant (its NNDSVD start zeroes
    entries under an absolute 1e-6 and fills zeros with the data mean), so
    each layer's input is divided by its largest entry before the call
    (data in [0, 1]): the factors then depend on X only up to rounding, not
    on its units.
    """
    rng = check_random_state(random_state)
    factors = []
    if init == "random":
        sizes = [X.shape[0], *ranks]
        for rows, cols in itertools.pairwise(sizes):
            factors.append(rng.uniform(0.1, 1.0, size=(rows, cols)))
        return factors
    inp = X.T  # scikit-learn orientation: samples are rows.
    for k in ranks:
        seed = rng.randint(np.iinfo(np.int32).max)
        largest = float(inp.max()) if inp.size else 0.0
        if largest > 0 and np.isfinite(largest):
            inp = inp / largest
        # NNDSVD needs k <= rank of the data; on rank-deficient data it can
        # return NaN, so fall back to a random start for that layer.
        inits = ["nndsvda", "random"] if k <= min(inp.shape) else ["random"]
        for layer_init in inits:
            nmf = NMF(n_components=k, init=layer_init, max_iter=400, random_state=seed)
            with warnings.catch_warnings():
                # A not fully converged start is fine; the descent refines it.
                warnings.simplefilter("ignore", ConvergenceWarning)
                W = nmf.fit_transform(inp)
            if np.all(np.isfinite(W)) and np.all(np.isfinite(nmf.components_)):
                break
        factors.append(nmf.components_.T.copy())
        inp = W
    return factors


def init_label_factor(S_last, Y, mask):
    """Non-negative least-squares classifier ``B = argmin_{B>=0} ||Y - B S_L||`` on labeled columns."""
    Bt, _ = nnls(S_last[:, mask].T, Y[:, mask].T)
    return Bt.T


# --------------------------------------------------------------------------
# Training loop
# --------------------------------------------------------------------------


def _bb_steps(prev_blocks, blocks, prev_grads, grads, fallback):
    """Barzilai-Borwein step lengths ``<s, s> / <s, y>``, one per block.

    ``s`` is the change of a block over the last iteration and ``y`` the change
    of its gradient. Where ``<s, y> <= 0`` (no curvature seen) the block keeps
    its fallback step. So does a block that hardly moved: all blocks move
    together, so its ``y`` is then the other blocks' doing and ``<s, s>`` is
    rounding noise (a classifier started at its optimum moves by 1e-16 and
    would get a step of 1e-14 that freezes it for good, or not, depending on
    the last bit of the data). "Hardly" is relative: ``||s|| <= sqrt(eps)``
    times the block's size.
    """
    eps = np.finfo(np.float64).eps
    steps = []
    for P0, P1, g0, g1, f in zip(prev_blocks, blocks, prev_grads, grads, fallback, strict=True):
        s, y = P1 - P0, g1 - g0
        ss, sy = np.vdot(s, s), np.vdot(s, y)
        moved = ss > eps * max(np.vdot(P0, P0), np.vdot(P1, P1))
        steps.append(ss / sy if moved and sy > 0 else f)
    return steps


def fit_neural_nmf(
    X,
    factors,
    B=None,
    Y=None,
    mask=None,
    *,
    label_weight=1.0,
    max_iter=200,
    tol=1e-4,
    step_size=1.0,
    verbose=0,
    stop_on_interrupt=False,
):
    """Train all factors jointly by projected gradient descent (poster, Method 1).

    Every iteration moves all blocks (the ``A_i`` and B) at once,
    ``A_i <- max(0, A_i - t a_i grad_i)``, then re-runs the forward pass.
    The block step ``a_i`` is the Barzilai-Borwein length of that block (the
    first iteration uses ``step_size`` over the block's curvature, see
    :func:`step_scales`), and the common factor ``t`` starts at 1 and is
    halved until the projected Armijo condition
    ``C(new) <= C(old) - 1e-4 * sum_i <grad_i, A_i - A_i_new>`` holds, so the
    cost never increases (spectral projected gradient).

    Parameters
    ----------
    X : ndarray of shape (n_features, n_samples)
    factors : list of ndarray
        Starting factors; not modified.
    B : ndarray of shape (n_classes, k_L), default=None
        Starting classifier; None trains without labels.
    Y : ndarray of shape (n_classes, n_samples), default=None
        One-hot labels (any value in unlabeled columns).
    mask : ndarray of shape (n_samples,), dtype=bool, default=None
        Labeled columns.
    label_weight : float, default=1.0
        Weight lambda of the classification term.
    max_iter : int, default=200
    tol : float, default=1e-4
        Stop when the cost decreased by less than ``tol`` times its value per
        iteration, on average over the last 5 iterations.
    step_size : float, default=1.0
        First iteration's step, in units of each block's inverse curvature.
    verbose : int, default=0
    stop_on_interrupt : bool, default=False
        On ``KeyboardInterrupt`` after at least one completed iteration, stop
        and return the factors of the last completed iteration with a
        :class:`~sklearn_unfold.exceptions.FitInterruptedWarning` (instead of
        propagating it).

    Returns
    -------
    factors : list of ndarray
    B : ndarray or None
    loss_curve : list of float
        The cost at the start and after every iteration.
    n_iter : int
    converged : bool
        Whether the descent stopped by its own rule (the decrease fell under
        ``tol``, or no step lowers the cost), not by ``max_iter`` or an
        interrupt.
    """
    blocks = [np.array(A, dtype=np.float64) for A in factors]
    n_layers = len(blocks)
    with_B = B is not None
    if with_B:
        blocks.append(np.array(B, dtype=np.float64))
        n_labeled = max(int(mask.sum()), 1)
    else:
        n_labeled = 1
    x_sq = float(np.vdot(X, X))
    # Relative weights: the cost, and so every tolerance on it, has no units.
    weights = (1.0 / x_sq if x_sq > 0 else 1.0, label_weight / n_labeled)

    def evaluate(blocks, passives=None):
        factors, B = blocks[:n_layers], (blocks[n_layers] if with_B else None)
        S, P = forward(X, factors, passives)
        return S, P, cost(X, factors, S[-1], B, Y, mask, weights)

    def grad(blocks, S, P):
        factors, B = blocks[:n_layers], (blocks[n_layers] if with_B else None)
        grads, grad_B = gradient(X, factors, S, P, B, Y, mask, weights)
        return grads + ([grad_B] if with_B else [])

    S0, P0, value0 = evaluate(blocks)
    # The last completed iteration; rebound by one statement per iteration, so
    # an interrupt sees the old or the new state, never a mix.
    state = {"blocks": blocks, "loss_curve": [value0], "converged": False}

    def loop():
        blocks, S, P, value = state["blocks"], S0, P0, value0
        grads = grad(blocks, S, P)
        scales, scale_B = step_scales(blocks[:n_layers], S[-1], mask, weights, with_B)
        steps = [step_size / c for c in scales + ([scale_B] if with_B else [])]
        for n_iter in range(1, max_iter + 1):
            t = 1.0
            for _ in range(_MAX_BACKTRACKS):
                new = [np.maximum(V - (t * a) * g, 0.0) for V, g, a in zip(blocks, grads, steps, strict=True)]
                decrease = sum(np.vdot(g, V - Vn) for g, V, Vn in zip(grads, blocks, new, strict=True))
                new_S, new_P, new_value = evaluate(new, P)
                if new_value <= value - _ARMIJO * decrease:
                    break
                t *= _SHRINK
            else:
                # No step lowers the cost: a stationary point up to rounding.
                if verbose:
                    print(f"NeuralNMF: iteration {n_iter}, line search found no decrease; stopping.")
                state.update(loss_curve=state["loss_curve"] + [value], converged=True)
                return
            new_grads = grad(new, new_S, new_P)
            steps = _bb_steps(blocks, new, grads, new_grads, [t * a for a in steps])
            blocks, grads, S, P, value = new, new_grads, new_S, new_P, new_value
            state.update(blocks=blocks, loss_curve=state["loss_curve"] + [value])
            if verbose and (verbose > 1 or n_iter % 10 == 0 or n_iter == 1):
                print(f"NeuralNMF: iteration {n_iter}, cost {value:.6g}, line-search factor {t:.3g}")
            loss_curve = state["loss_curve"]
            if len(loss_curve) > _WINDOW:
                # Average relative decrease over the last iterations: a single
                # short (backtracked) step must not stop the descent.
                past = loss_curve[-1 - _WINDOW]
                if past - value < _WINDOW * tol * abs(past):
                    state["converged"] = True
                    return

    run_interruptible(
        loop,
        lambda: len(state["loss_curve"]) - 1,
        name="NeuralNMF",
        stop_on_interrupt=stop_on_interrupt,
        what="iteration",
    )
    blocks, loss_curve = state["blocks"], state["loss_curve"]
    n_iter = len(loss_curve) - 1
    if verbose:
        print(f"NeuralNMF: stopped after {n_iter} iterations, cost {loss_curve[-1]:.6g}")
    return blocks[:n_layers], (blocks[n_layers] if with_B else None), loss_curve, n_iter, state["converged"]


# --------------------------------------------------------------------------
# The whole fit, in the data's units
# --------------------------------------------------------------------------


@dataclass
class NeuralNMFFit:
    """What :func:`train_neural_nmf` returns, in the units of the data it was given."""

    factors: list  # unit-free: the same for X and c X
    label_factor: np.ndarray | None  # scales as 1 / X
    reconstruction_err: float  # ||X - A_0...A_L S_L||_F, scales as X
    loss_curve: list  # the normalized cost, unit-free
    n_iter: int
    converged: bool


def train_neural_nmf(
    X,
    ranks,
    Y=None,
    mask=None,
    *,
    init="hierarchical",
    random_state=None,
    label_weight=1.0,
    max_iter=200,
    tol=1e-4,
    step_size=1.0,
    verbose=0,
    stop_on_interrupt=False,
):
    """Initialize and train NeuralNMF on X at any scale (poster orientation).

    The problem is solved for ``X / s``, ``s`` the power of two that brings
    the largest entry into [1, 2) (exact, :func:`~sklearn_unfold._nnls.power_of_two_exponent`),
    and mapped back: the factors have no units, the classifier is divided by
    ``s`` and the reconstruction error multiplied by it. Data at 1e-300 or
    1e300 then trains like data at 1, and a power-of-two change of units
    gives the same model bit for bit.

    Parameters
    ----------
    X : ndarray of shape (n_features, n_samples), dtype=float64
        Non-negative data.
    ranks : list of int
    Y, mask : ndarray or None
        One-hot labels (n_classes, n_samples) and the labeled columns, or None.
    init : {'hierarchical', 'random'}
    random_state : int, RandomState instance or None
    label_weight, max_iter, tol, step_size, verbose, stop_on_interrupt
        As in :func:`fit_neural_nmf`.

    Returns
    -------
    fit : NeuralNMFFit
    """
    exponent = power_of_two_exponent(X)
    X = np.ldexp(X, -exponent)
    factors = init_factors(X, ranks, init, random_state)
    B = None
    if Y is not None:
        S, _ = forward(X, factors)
        B = init_label_factor(S[-1], Y, mask)
    factors, B, loss_curve, n_iter, converged = fit_neural_nmf(
        X,
        factors,
        B,
        Y,
        mask,
        label_weight=label_weight,
        max_iter=max_iter,
        tol=tol,
        step_size=step_size,
        verbose=verbose,
        stop_on_interrupt=stop_on_interrupt,
    )
    S, _ = forward(X, factors)
    R = X - chain(factors) @ S[-1]
    return NeuralNMFFit(
        factors=factors,
        label_factor=None if B is None else np.ldexp(B, -exponent),
        reconstruction_err=float(np.ldexp(np.linalg.norm(R), exponent)),
        loss_curve=loss_curve,
        n_iter=n_iter,
        converged=converged,
    )
