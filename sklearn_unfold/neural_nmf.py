"""NeuralNMF: hierarchical NMF trained end to end by back-propagation through NNLS.

The estimator only; the solver (forward pass, exact gradient, initialization,
training loop) is in ``sklearn_unfold._neural_nmf``.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_consistent_length,
    check_is_fitted,
    check_non_negative,
    column_or_1d,
    validate_data,
)

from ._compat import Interval, StrOptions, _fit_context
from ._fitting import transactional_fit, warn_not_converged
from ._neural_nmf import chain, forward, train_neural_nmf

__all__ = ["NeuralNMF"]


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
        (ranks[i-1], ranks[i]), in the poster's orientation. They have no
        units: see Notes.
    components_ : ndarray of shape (ranks[-1], n_features)
        ``(A_0 A_1 ... A_L).T``: the model of a sample is
        ``transform(x) @ components_``.
    label_factor_ : ndarray of shape (n_classes, ranks[-1]) or None
        The classifier B, in the inverse units of X; None when fitted
        without labels.
    classes_ : ndarray of shape (n_classes,) or None
        Class labels seen in fit (without the unlabeled marker -1); None
        when fitted without labels.
    reconstruction_err_ : float
        ``||X - transform(X) @ components_||_F`` on the training data, in
        the units of X.
    loss_curve_ : list of float
        The cost C at the start and after every iteration; non-increasing.
        C has no units.
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

    **Units of X.** The model does not depend on the units of the data.
    Fitting ``c * X`` instead of ``X``, for any ``c > 0``, gives the same
    ``factors_``, ``components_``, ``classes_``, ``loss_curve_`` and
    ``n_iter_``, ``label_factor_ / c`` and ``c * reconstruction_err_``. The
    fitted model's ``transform`` and ``transform_all`` are linear in the
    sample, ``transform(c * X) = c * transform(X)``, as is
    ``inverse_transform``; ``decision_function`` and ``predict`` are
    unchanged: ``predict(c * X)`` of the model fitted on ``c * X`` is
    ``predict(X)`` of the model fitted on ``X``. For ``c`` a power of two
    (with ``c * X`` neither overflowing nor subnormal in its dtype) all of this
    holds bit for bit. For other ``c``, ``c * X`` differs from ``c`` times X
    by rounding, and the equalities hold up to how much the descent
    amplifies a last-bit change of the data, as it would at a fixed scale:
    typically 1e-7 or less on the relative error, though in a nearly flat
    valley of the cost a long descent can end measurably elsewhere at the
    same cost. To this end the training solves the problem for ``X / s``,
    ``s`` a power of two set by the largest entry, so that float64 data
    anywhere from 1e-300 to 1e300 (float32 from 1e-30 to 1e35) trains like
    data at 1, and every tolerance and step size is relative to the data.

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
    @transactional_fit
    def fit(self, X, y=None):
        """Learn the factors (and the classifier, with labels) from X.

        The fit is all-or-nothing: if it raises (bad input, an error inside,
        Ctrl-C before the first completed iteration), the estimator is left
        exactly as it was. Ctrl-C later stops the descent and keeps the
        factors of the last completed iteration, with a
        :class:`~sklearn_unfold.exceptions.FitInterruptedWarning`.

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
        result = train_neural_nmf(
            X.T.astype(np.float64),
            ranks,
            Y,
            mask,
            init=self.init,
            random_state=self.random_state,
            label_weight=float(self.label_weight),
            max_iter=self.max_iter,
            tol=self.tol,
            step_size=self.step_size,
            verbose=self.verbose,
            stop_on_interrupt=True,
        )
        if not result.converged and result.n_iter == self.max_iter and self.tol > 0:
            warn_not_converged(type(self).__name__, self.max_iter)
        dtype = X.dtype
        self.factors_ = [A.astype(dtype) for A in result.factors]
        self.components_ = np.ascontiguousarray(chain(result.factors).T, dtype=dtype)
        self.label_factor_ = None if result.label_factor is None else result.label_factor.astype(dtype)
        self.classes_ = classes
        self.reconstruction_err_ = result.reconstruction_err
        self.loss_curve_ = result.loss_curve
        self.n_iter_ = result.n_iter
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
