"""NeuralNMF: hierarchical NMF trained end to end by back-propagation through NNLS.

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
transposes at the boundary.

The module is layered bottom-up: the forward pass, cost and gradient; the
initialization; the training loop; the estimator.
"""

import itertools
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_consistent_length,
    check_is_fitted,
    check_non_negative,
    column_or_1d,
    validate_data,
)

from ._nnls import nnls, nnls_backward

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
    model cannot see; the line search absorbs what the NNLS layers add.
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
    """Starting factors ``A_0, ..., A_L`` (poster orientation).

    ``'hierarchical'`` runs scikit-learn's NMF layer by layer (X ~ A_0 S_0,
    then S_0 ~ A_1 S_1, ...), the hierarchical NMF that NeuralNMF refines;
    ``'random'`` draws uniform entries in [0.1, 1).
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
    its fallback step.
    """
    steps = []
    for P0, P1, g0, g1, f in zip(prev_blocks, blocks, prev_grads, grads, fallback, strict=True):
        s, y = P1 - P0, g1 - g0
        sy = np.vdot(s, y)
        steps.append(np.vdot(s, s) / sy if sy > 0 else f)
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

    Returns
    -------
    factors : list of ndarray
    B : ndarray or None
    loss_curve : list of float
        The cost at the start and after every iteration.
    n_iter : int
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
    weights = (1.0 / x_sq if x_sq > 0 else 1.0, label_weight / n_labeled)

    def evaluate(blocks, passives=None):
        factors, B = blocks[:n_layers], (blocks[n_layers] if with_B else None)
        S, P = forward(X, factors, passives)
        return S, P, cost(X, factors, S[-1], B, Y, mask, weights)

    def grad(blocks, S, P):
        factors, B = blocks[:n_layers], (blocks[n_layers] if with_B else None)
        grads, grad_B = gradient(X, factors, S, P, B, Y, mask, weights)
        return grads + ([grad_B] if with_B else [])

    S, P, value = evaluate(blocks)
    loss_curve = [value]
    grads = grad(blocks, S, P)
    scales, scale_B = step_scales(blocks[:n_layers], S[-1], mask, weights, with_B)
    steps = [step_size / c for c in scales + ([scale_B] if with_B else [])]
    n_iter = 0
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
            loss_curve.append(value)
            break
        new_grads = grad(new, new_S, new_P)
        steps = _bb_steps(blocks, new, grads, new_grads, [t * a for a in steps])
        blocks, grads, S, P, value = new, new_grads, new_S, new_P, new_value
        loss_curve.append(value)
        if verbose and (verbose > 1 or n_iter % 10 == 0 or n_iter == 1):
            print(f"NeuralNMF: iteration {n_iter}, cost {value:.6g}, line-search factor {t:.3g}")
        if len(loss_curve) > _WINDOW:
            # Average relative decrease over the last iterations: a single
            # short (backtracked) step must not stop the descent.
            past = loss_curve[-1 - _WINDOW]
            if past - value < _WINDOW * tol * abs(past):
                break
    if verbose:
        print(f"NeuralNMF: stopped after {n_iter} iterations, cost {value:.6g}")
    return blocks[:n_layers], (blocks[n_layers] if with_B else None), loss_curve, n_iter


# --------------------------------------------------------------------------
# Estimator
# --------------------------------------------------------------------------


class NeuralNMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Hierarchical NMF trained by back-propagation through NNLS layers.

    Factorizes non-negative data in layers (poster orientation, columns are
    samples: the poster's X is ``X.T`` here)

        X.T ~ A_0 A_1 ... A_L S_L,   S_0 = q(X.T, A_0),   S_i = q(S_(i-1), A_i),

    where ``q(X, A) = argmin_{S >= 0} ||X - A S||_F`` is solved exactly for all
    samples at once by an active-set method. The S are functions of the A,
    so all A are trained together by gradient descent on

        C = ||X.T - A_0...A_L S_L||_F^2 / (2 ||X||_F^2)
            + label_weight / (2 n_labeled) * ||M * (Y - B S_L)||_F^2,

    with exact derivatives through the NNLS solutions (on each sample's
    support J, ``s_J = (A_J^T A_J)^-1 A_J^T x``), each step followed by a
    projection onto the non-negative orthant. The second term is the
    semi-supervised NMF classification term: ``Y`` holds one-hot labels, the
    mask ``M`` zeroes the unlabeled samples and the non-negative classifier
    ``B`` is learned with the A. Without labels only the first term is used
    (unsupervised); with some samples labeled ``-1`` it is semi-supervised;
    with all labeled, supervised.

    Relative to the poster's cost, the reconstruction term is divided by
    ``||X||_F^2`` and the classification term by the number of labeled
    samples, so that ``label_weight`` means the same for any data scale:
    the poster's lambda is ``label_weight * ||X||_F^2 / n_labeled``.

    Parameters
    ----------
    ranks : int or sequence of int, default=(9, 4, 2)
        Ranks ``k_0, ..., k_L`` of the layers, from the data side; an int is
        a single layer. ``transform`` returns ``k_L`` features.
    label_weight : float, default=1.0
        Weight of the classification term (see above). With 0 the labels
        passed to ``fit`` are ignored and the model is unsupervised, e.g. as
        a feature extractor in a supervised pipeline.
    max_iter : int, default=200
        Maximum number of gradient steps.
    tol : float, default=1e-4
        Stop when the cost decreased by less than ``tol`` times its value per
        iteration, on average over the last 5 iterations.
    step_size : float, default=1.0
        First step, in units of each layer's inverse curvature with the S
        held fixed (1 is the natural scale). Later steps are each layer's
        Barzilai-Borwein length, shortened by backtracking until the cost
        decreases enough (projected Armijo rule), so the cost never increases.
    init : {'hierarchical', 'random'}, default='hierarchical'
        Starting factors: scikit-learn's NMF layer by layer (hierarchical NMF,
        which the back-propagation then refines) or uniform random entries.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialization. An int gives bit-identical results.
    verbose : int, default=0
        1 prints the cost every 10 iterations, 2 at every iteration.

    Attributes
    ----------
    factors_ : list of ndarray
        ``A_0`` of shape (n_features, ranks[0]), then ``A_i`` of shape
        (ranks[i-1], ranks[i]), in the poster's orientation.
    components_ : ndarray of shape (ranks[-1], n_features)
        ``(A_0 A_1 ... A_L).T``: the model of a sample is
        ``transform(x) @ components_``.
    label_factor_ : ndarray of shape (n_classes, ranks[-1]) or None
        The classifier B; None when fitted without labels.
    classes_ : ndarray of shape (n_classes,) or None
        Class labels seen in fit (without the unlabeled marker -1); None
        when fitted without labels.
    reconstruction_err_ : float
        ``||X - transform(X) @ components_||_F`` on the training data.
    loss_curve_ : list of float
        The cost C at the start and after every iteration; non-increasing.
    n_iter_ : int
        Number of gradient steps taken.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    sklearn.decomposition.NMF : One layer, factors fitted by alternating updates.

    Notes
    -----
    ``fit(X, y)`` reads ``y`` as class labels with ``-1`` for unlabeled
    samples, as in :mod:`sklearn.semi_supervised` (with non-numeric labels,
    every sample is labeled). ``y=None`` or ``label_weight=0`` trains
    without labels, and then ``predict`` is unavailable.

    The cost is differentiable wherever the NNLS supports do not change,
    which is almost everywhere; the gradient used is the exact one of the
    current supports.

    References
    ----------
    .. [1] M. Gao, J. Haddock, D. Molitor, D. Needell, E. Sadovnik, T. Will,
       R. Zhang, "Neural Nonnegative Matrix Factorization for Hierarchical
       Multilayer Topic Modeling", poster: definition of q, Method 1
       (forward propagation and projected gradient descent), Table 1.
    .. [2] T. Will, R. Zhang, E. Sadovnik, M. Gao, J. Vendrow, J. Haddock,
       D. Molitor, D. Needell, same title, arXiv:2303.00058, 2023.
    .. [3] H. Lee, J. Yoo, S. Choi, "Semi-supervised nonnegative matrix
       factorization", IEEE Signal Processing Letters 17(1), 2010 (the
       masked classification term).
    .. [4] C. Lawson, R. Hanson, "Solving Least Squares Problems", SIAM,
       1995, ch. 23 (the NNLS active-set method).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.neural_nmf import NeuralNMF
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((60, 12))
    >>> y = (X[:, 0] > 0.5).astype(int)
    >>> model = NeuralNMF(ranks=[6, 3], random_state=0).fit(X, y)
    >>> model.transform(X).shape
    (60, 3)
    >>> [S.shape for S in model.transform_all(X)]
    [(60, 6), (60, 3)]
    >>> model.predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints: dict = {
        "ranks": [Interval(Integral, 1, None, closed="left"), "array-like"],
        "label_weight": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "step_size": [Interval(Real, 0, None, closed="neither")],
        "init": [StrOptions({"hierarchical", "random"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        ranks=(9, 4, 2),
        *,
        label_weight=1.0,
        max_iter=200,
        tol=1e-4,
        step_size=1.0,
        init="hierarchical",
        random_state=None,
        verbose=0,
    ):
        self.ranks = ranks
        self.label_weight = label_weight
        self.max_iter = max_iter
        self.tol = tol
        self.step_size = step_size
        self.init = init
        self.random_state = random_state
        self.verbose = verbose

    def _check_ranks(self):
        ranks = np.atleast_1d(np.asarray(self.ranks))
        if ranks.ndim != 1 or ranks.size == 0 or ranks.dtype.kind not in "iu" or np.any(ranks < 1):
            raise ValueError(
                f"ranks must be a positive int or a non-empty sequence of positive ints, got {self.ranks!r}."
            )
        return [int(k) for k in ranks]

    def _check_X(self, X, reset):
        X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
        check_non_negative(X, f"{type(self).__name__} (input X)")
        return X

    def _check_labels(self, X, y):
        """One-hot labels (n_classes, n_samples) and the labeled mask, or Nones."""
        if y is None or self.label_weight == 0:
            return None, None, None
        y = column_or_1d(check_array(y, ensure_2d=False, dtype=None), warn=True)
        check_consistent_length(X, y)
        if y.dtype.kind in "iuf":
            labeled = y != -1
        else:
            labeled = np.ones(y.shape, dtype=bool)
        if not labeled.any():
            raise ValueError("y has no labeled sample (all are -1); pass y=None to fit without labels.")
        check_classification_targets(y[labeled])
        classes, codes = np.unique(y[labeled], return_inverse=True)
        Y = np.zeros((classes.size, y.size))
        Y[codes, np.flatnonzero(labeled)] = 1.0
        return classes, Y, labeled

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the factors (and the classifier, with labels) from X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Non-negative data, one sample per row.
        y : array-like of shape (n_samples,), default=None
            Class labels, ``-1`` marking unlabeled samples; None for
            unsupervised training.

        Returns
        -------
        self : NeuralNMF
        """
        X = self._check_X(X, reset=True)
        ranks = self._check_ranks()
        classes, Y, mask = self._check_labels(X, y)
        Xp = X.T.astype(np.float64)
        factors = init_factors(Xp, ranks, self.init, self.random_state)
        B = None
        if Y is not None:
            S, _ = forward(Xp, factors)
            B = init_label_factor(S[-1], Y, mask)
        factors, B, loss_curve, n_iter = fit_neural_nmf(
            Xp,
            factors,
            B,
            Y,
            mask,
            label_weight=float(self.label_weight),
            max_iter=self.max_iter,
            tol=self.tol,
            step_size=self.step_size,
            verbose=self.verbose,
        )
        if n_iter == self.max_iter and self.tol > 0:
            warnings.warn(
                f"Maximum number of iterations {self.max_iter} reached. Increase it to improve convergence.",
                ConvergenceWarning,
            )
        dtype = X.dtype
        self.factors_ = [A.astype(dtype) for A in factors]
        self.components_ = np.ascontiguousarray(chain(factors).T, dtype=dtype)
        self.label_factor_ = None if B is None else B.astype(dtype)
        self.classes_ = classes
        S, _ = forward(Xp, factors)
        R = Xp - chain(factors) @ S[-1]
        self.reconstruction_err_ = float(np.sqrt(np.vdot(R, R)))
        self.loss_curve_ = loss_curve
        self.n_iter_ = n_iter
        return self

    def fit_transform(self, X, y=None):
        """Fit, then return the last layer's representation of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            Class labels, ``-1`` for unlabeled; see :meth:`fit`.

        Returns
        -------
        S : ndarray of shape (n_samples, ranks[-1])
        """
        return self.fit(X, y).transform(X)

    def _forward(self, X):
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        S, _ = forward(X.T.astype(np.float64), [A.astype(np.float64) for A in self.factors_])
        return [np.ascontiguousarray(s.T, dtype=X.dtype) for s in S]

    def transform(self, X):
        """The last layer's representation ``S_L.T`` of X (exact NNLS, layer by layer).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Non-negative data.

        Returns
        -------
        S : ndarray of shape (n_samples, ranks[-1])
        """
        return self._forward(X)[-1]

    def transform_all(self, X):
        """Every layer's representation ``S_0.T, ..., S_L.T`` of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Non-negative data.

        Returns
        -------
        S : list of ndarray
            ``S[i]`` has shape (n_samples, ranks[i]).
        """
        return self._forward(X)

    def inverse_transform(self, X):
        """Map last-layer representations back to data space: ``X @ components_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, ranks[-1])

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        S = check_array(X, dtype=[np.float64, np.float32])
        if S.shape[1] != self.components_.shape[0]:
            raise ValueError(
                f"X has {S.shape[1]} columns but this NeuralNMF's last layer has rank {self.components_.shape[0]}."
            )
        return S @ self.components_.astype(S.dtype, copy=False)

    def decision_function(self, X):
        """Class scores ``(B S_L).T``; the predicted class has the largest.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        if self.label_factor_ is None:
            raise ValueError(
                "This NeuralNMF was fitted without labels (y=None or label_weight=0), "
                "so it has no classifier; fit it with class labels y to predict."
            )
        S = self.transform(X)
        return S @ self.label_factor_.T.astype(S.dtype, copy=False)

    def predict(self, X):
        """Predict class labels: the argmax of ``B S_L`` (semi-supervised NMF classifier).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        scores = self.decision_function(X)
        return self.classes_[np.argmax(scores, axis=1)]

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
