"""Unfolded mean-field and belief-propagation networks (paper sec. 3).

A pairwise binary Markov random field over hidden units ``h`` (the labels to
predict) with observed features ``v`` (the rows of ``X``),

.. math:: p(h | v) \\propto \\exp\\big(\\tfrac12 h^T A h + h^T b + h^T C v\\big)
    \\qquad \\text{(eq. 19)},

is turned into a K-layer network by unfolding K iterations of mean-field
inference (:class:`UnfoldedMeanField`, eq. 14-17, 20) or of generalized belief
propagation (:class:`UnfoldedBP`, eq. 22-27, 59-61), untying the parameters
across layers and training them discriminatively (cross-entropy of the
layer-K beliefs against the labels, hand-derived back-propagation, Adam).

How ``X`` reaches the hidden units is set by ``observation``: with
``"dense"`` every hidden unit sees all features through a per-layer matrix
``C^k`` (eq. 20); with ``"local"`` hidden unit ``i`` observes feature ``i``
only, through a per-layer weight ``w^k_i`` (``X`` must have one column per
label, e.g. a noisy pixel per clean pixel); ``"local+dense"`` uses both.

Hidden units need not all be labels: ``n_latent`` adds latent binary units
coupled to every label unit (an RBM-like layer inside the MRF).  Parameters
are untied per layer except those named in ``tied_params`` (by default the
couplings), which are shared across layers to keep the parameter count in
check.

The estimators are multi-label binary classifiers: ``y`` is an
``(n_samples, n_hidden)`` indicator matrix, or a 1-D binary target (then
``n_hidden = 1`` and ``predict_proba`` has sklearn's two-column shape).
``score`` is the mean per-label accuracy.
"""

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, logit
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from ._compat import Interval, Options, StrOptions, _fit_context
from ._fitting import transactional_fit, warn_not_converged
from ._mrf import training as _training
from ._mrf.graphs import GRAPH_NAMES, make_graph, with_latent_units
from ._mrf.network import NetworkSpec
from ._mrf.training import init_params, predict_log_odds

__all__ = ["UnfoldedBP", "UnfoldedMeanField"]

TIEABLE = ("coupling", "bias", "local", "dense", "schedule")

# Network parameter (see _mrf.network) -> the fitted attribute holding it.
_FITTED_NAMES = {
    "coupling": "coupling_",
    "bias": "bias_",
    "local": "local_coef_",
    "dense": "dense_coef_",
    "schedule": "schedule_",
    "lambda": "lambdas_",
}


def _encode_targets(y, dtype):
    """Binary indicator matrix from ``y`` and the fitted state that describes ``y``.

    Returns
    -------
    Y : ndarray of shape (n_samples, n_hidden)
    target : dict
        ``classes_``, ``n_outputs_``, ``_y_1d_`` (1-D target: ``predict``
        returns classes) and ``_y_dtype_`` (the dtype ``predict`` returns for
        an indicator ``y``).
    """
    if sp.issparse(y):
        y = y.toarray()
    y = np.asarray(y)
    check_classification_targets(y)
    y_type = type_of_target(y, input_name="y")
    if y.ndim == 1:
        if y_type != "binary":
            raise ValueError(
                "Only binary classification is supported. The type of the target "
                f"is {y_type}. For several binary labels pass y as a 2-D indicator "
                "matrix of shape (n_samples, n_hidden) with values in {0, 1}."
            )
        classes = np.unique(y)
        if classes.shape[0] < 2:
            raise ValueError(
                f"y contains only one class ({classes[0]!r}); a 1-D target needs "
                "two classes."
            )
        target = {"classes_": classes, "n_outputs_": 1, "_y_1d_": True, "_y_dtype_": y.dtype}
        return (y == classes[1]).astype(dtype).reshape(-1, 1), target
    values = np.unique(y)
    if not np.all(np.isin(values, [0, 1])):
        shown = values[:5].tolist()
        raise ValueError(
            "y must be binary: a 2-D y is a multi-label indicator matrix with "
            f"values in {{0, 1}}, got values {shown}{'...' if values.size > 5 else ''}."
        )
    target = {"classes_": np.array([0, 1]), "n_outputs_": y.shape[1], "_y_1d_": False, "_y_dtype_": y.dtype}
    return y.astype(dtype), target


class _BaseUnfoldedMRF(
    ClassNamePrefixFeaturesOutMixin, ClassifierMixin, TransformerMixin, BaseEstimator
):
    """Shared validation, training and prediction; subclasses fix the messages."""

    _kind = None

    _parameter_constraints: dict = {
        "n_layers": [Interval(Integral, 1, None, closed="left")],
        "graph": [None, StrOptions(set(GRAPH_NAMES)), "array-like", "sparse matrix"],
        "image_shape": [None, "array-like"],
        "n_latent": [Interval(Integral, 0, None, closed="left")],
        "observation": [StrOptions({"auto", "dense", "local", "local+dense"})],
        "schedule": [StrOptions({"none", "layer", "edge"})],
        "coupling": [StrOptions({"symmetric", "directed"})],
        "tied_params": ["array-like"],
        "l2_regularization": [Interval(Real, 0, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # -- hooks for the subclasses (read at fit only) ----------------------------
    def _kappa(self):
        return 1.0

    def _initial_lambdas(self):
        return None

    def _trainable(self, params):
        return [key for key in params if key != "lambda"]

    # -- fit --------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    @transactional_fit
    def fit(self, X, y):
        """Train the unfolded network.

        A fit is all-or-nothing: if it raises (or is interrupted before its
        first complete epoch), the estimator is left exactly as it was.
        ``KeyboardInterrupt`` after a complete epoch stops training, keeps
        the parameters of the last complete epoch and warns with
        :class:`~sklearn_unfold.exceptions.FitInterruptedWarning`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Observed features ``v``.  With ``observation="local"`` or
            ``"local+dense"``, ``n_features`` must equal the number of labels.
        y : array-like of shape (n_samples, n_hidden) or (n_samples,)
            Binary indicator matrix (one column per hidden unit), or a 1-D
            target with two classes.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        # Everything is computed into locals; _store_fit sets the fitted
        # attributes at the end (transactional_fit undoes a partial fit).
        self._check_graph()
        tied = self._check_tied_params()
        lambdas = self._initial_lambdas()
        X, y = validate_data(
            self,
            X,
            y,
            multi_output=True,
            dtype=[np.float64, np.float32],
            accept_sparse=False,
            y_numeric=False,
        )
        Y, target = _encode_targets(y, X.dtype)
        n_hidden = Y.shape[1]
        observation = self.observation
        if observation == "auto":
            observation = "local" if X.shape[1] == n_hidden else "dense"
        if observation != "dense" and X.shape[1] != n_hidden:
            raise ValueError(
                f"observation={observation!r} connects hidden unit i to feature i, "
                f"so X needs one column per label: X has {X.shape[1]} features, y has "
                f"{n_hidden} labels. Use observation='dense' otherwise."
            )
        graph = with_latent_units(
            make_graph(self.graph, n_hidden, self.image_shape), self.n_latent
        )
        spec = NetworkSpec(
            graph,
            self.n_layers,
            kind=self._kind,
            kappa=self._kappa(),
            symmetric=self.coupling == "symmetric",
        )
        rng = check_random_state(self.random_state)
        params = init_params(
            spec,
            X.shape[1],
            observation=observation,
            schedule=self.schedule,
            lambdas=lambdas,
            tied=tied,
            dtype=X.dtype,
            random_state=rng,
        )
        trainable = self._trainable(params)
        batch_size = min(100, X.shape[0]) if self.batch_size == "auto" else self.batch_size
        info = _training.fit_network(
            params,
            spec,
            X,
            Y,
            trainable=trainable,
            l2=self.l2_regularization,
            learning_rate=self.learning_rate_init,
            max_iter=self.max_iter,
            tol=self.tol,
            n_iter_no_change=self.n_iter_no_change,
            batch_size=batch_size,
            shuffle=self.shuffle,
            early_stopping=self.early_stopping,
            validation_fraction=self.validation_fraction,
            random_state=rng,
            verbose=self.verbose,
            stop_on_interrupt=True,
            name=type(self).__name__,
        )
        if not (info["converged"] or info["interrupted"]):
            warn_not_converged(type(self).__name__, self.max_iter)
        target["observation_"] = observation
        self._store_fit(spec, params, trainable, info, target)
        return self

    def _check_graph(self):
        if self.graph is None:
            raise ValueError(
                f"{type(self).__name__} needs graph: the edges between the labels are "
                "the model, and no choice suits every problem (a complete graph has "
                "n_hidden * (n_hidden - 1) / 2 couplings and overfits images; a grid "
                "means nothing for unordered labels). Pass graph='4-grid' or '8-grid' "
                "(images, with image_shape if not square), 'chain' (sequences), "
                "'full' (a few labels), 'empty' (independent labels) or an adjacency "
                "matrix."
            )

    def _check_tied_params(self):
        tied = tuple(np.asarray(self.tied_params, dtype=object).ravel().tolist())
        unknown = sorted(set(tied) - set(TIEABLE), key=str)
        if unknown:
            raise ValueError(f"tied_params must name parameters among {TIEABLE}, got {unknown}.")
        return tied

    def _store_fit(self, spec, params, trainable, info, target):
        """Set every fitted attribute from a finished training run (the last step of fit)."""
        K = spec.n_layers
        n_hidden = target["n_outputs_"]

        def untied(a):
            return np.broadcast_to(a, (K,) + a.shape[1:]).copy()

        fitted = dict(target)
        for key, value in params.items():
            value = untied(value)
            fitted[_FITTED_NAMES[key]] = expit(value) if key == "schedule" else value
        fitted.update(
            # What prediction needs besides the parameters: the network's
            # structure and which parameters it has.
            _spec_=spec,
            _network_keys_=tuple(params),
            edges_=spec.graph.edges.copy(),
            n_trainable_params_=int(sum(params[key].size for key in trainable)),
            _n_features_out=n_hidden,
            n_iter_=info["n_iter"],
            loss_curve_=info["loss_curve"],
            best_loss_=info["best_loss"],
        )
        if info["best_validation_loss"] is not None:
            fitted.update(
                validation_loss_curve_=info["validation_loss_curve"],
                best_validation_loss_=info["best_validation_loss"],
                validation_scores_=info["validation_scores"],
                best_validation_score_=info["best_validation_score"],
            )
        for name, value in fitted.items():
            setattr(self, name, value)

    # -- prediction: fitted state only, never the constructor parameters ---------
    def __sklearn_is_fitted__(self):
        # ``lambda_`` is a constructor parameter, so "has an attribute ending
        # in _" does not mean fitted here.
        return hasattr(self, "n_iter_")

    def _network_params(self, dtype):
        params = {}
        for key in self._network_keys_:
            value = getattr(self, _FITTED_NAMES[key])
            params[key] = logit(value) if key == "schedule" else value
        return {key: np.asarray(value, dtype=dtype) for key, value in params.items()}

    def _log_odds(self, X):
        check_is_fitted(self)
        X = validate_data(
            self, X, reset=False, dtype=[np.float64, np.float32], accept_sparse=False
        )
        eta = predict_log_odds(self._network_params(X.dtype), self._spec_, X)
        return eta[:, : self.n_outputs_]

    def transform(self, X):
        """Layer-K beliefs ``mu^K = q^K(h = 1)`` as features.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        beliefs : ndarray of shape (n_samples, n_hidden)
        """
        return expit(self._log_odds(X))

    def predict_proba(self, X):
        """Layer-K beliefs as probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_hidden) or (n_samples, 2)
            ``q^K(h_i = 1)`` for each hidden unit; for a 1-D target the two
            columns are the probabilities of ``classes_``.
        """
        eta = self._log_odds(X)
        if self._y_1d_:
            return np.column_stack([expit(-eta[:, 0]), expit(eta[:, 0])])
        return expit(eta)

    def predict(self, X):
        """Labels: each hidden unit is on where its belief exceeds 1/2.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples, n_hidden) or (n_samples,)
            Same dtype as the ``y`` given to ``fit``.
        """
        on = self._log_odds(X) > 0
        if self._y_1d_:
            return self.classes_[on[:, 0].astype(np.intp)]
        return on.astype(self._y_dtype_)

    def score(self, X, y, sample_weight=None):
        """Mean per-label accuracy (1 - Hamming loss).

        Unlike :meth:`sklearn.base.ClassifierMixin.score`, which for a
        multi-label ``y`` counts a sample as correct only if all its labels are,
        this averages the accuracy of every label, e.g. ``1 - pixel error`` for
        image denoising.  For a 1-D target it is the ordinary accuracy.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples, n_hidden) or (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        y_pred = self.predict(X)
        y = y.toarray() if sp.issparse(y) else np.asarray(y)
        if y.shape != y_pred.shape:
            raise ValueError(
                f"y has shape {y.shape} but the predictions have shape {y_pred.shape}."
            )
        correct = (y == y_pred).reshape(y.shape[0], -1).mean(axis=1)
        return float(np.average(correct, weights=sample_weight))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.classifier_tags.multi_label = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


_COMMON_PARAMS_DOC = """
    n_layers : int, default=5
        Number ``K`` of unfolded inference iterations (layers).  Fit and
        predict time grow linearly with ``K``.
    graph : {"4-grid", "8-grid", "chain", "full", "empty"}, array-like or \
sparse matrix
        **Required** (the default ``None`` raises at fit).  Hidden-hidden
        edges: a name, or a symmetric ``(n_hidden, n_hidden)`` adjacency
        matrix with a zero diagonal (its nonzero pattern is used).  The grids
        number pixels in row-major order (``image.ravel()``).  No default is
        safe: the graph is the problem's structure (a grid for images, a chain
        for sequences), and the complete graph, the only one that fits any
        labels, has ``n_hidden (n_hidden - 1) / 2`` couplings, so its cost is
        quadratic in the labels and it overfits images (issue 15: 5.94 %
        against 4.86 % pixel error for the 4-grid on 16x16 glyphs).
    image_shape : tuple of int (n_rows, n_cols), default=None
        Image shape for the grid graphs; ``None`` means square.
    n_latent : int, default=16
        Number of latent hidden units: MRF variables that are not predicted,
        each connected to every output unit (not to each other), like the
        hidden layer of an RBM.  They give the network global, nonlinear
        features.  They are nodes ``n_hidden ... n_hidden + n_latent - 1`` in
        the fitted attributes; with local observation they see no feature.
        Default: on the training split of the digits denoising benchmark
        (``benchmarks/mrf_denoising.py``, p = 0.2, K = 5, a 70/30 validation
        split of the training images), 16 latent units gave 10.14 % (mean
        field) and 10.12 % (BP) validation pixel error against 11.48 % and
        11.43 % without.
        **Cost**: each latent unit adds ``n_hidden`` edges, and fit and
        predict time of ``UnfoldedBP`` grow about linearly with the number
        of edges (mean field's less): on the 8x8 digits (112 grid edges,
        K = 5, one thread) the 16 default units add 1024 edges and made fit
        about 2x (mean field) and 6x (BP) slower than ``n_latent=0``,
        prediction 2x and 9x.  On 16x16 images with K = 10, ``UnfoldedBP``
        with 16 latent units predicts about 4 000-4 700 images/s on one
        thread (``benchmarks/mrf_denoising.py``).  Set ``n_latent=0`` for
        speed, or when the labels have no global structure.
    observation : {"auto", "dense", "local", "local+dense"}, default="auto"
        How ``X`` enters the field of hidden unit ``i`` at layer ``k``:
        ``"dense"``: ``(C^k v)_i`` with a full ``(n_hidden, n_features)``
        matrix (eq. 20); ``"local"``: ``w^k_i v_i`` (needs
        ``n_features == n_hidden``); ``"local+dense"``: both.  A bias ``b^k_i``
        is always added.  ``"auto"`` is ``"local"`` when ``X`` has one column
        per label (a noisy pixel per clean pixel: the usual case, where dense
        weights add ``n_hidden * n_features`` parameters per layer and
        overfit, issue 15), ``"dense"`` otherwise; ``observation_`` says
        which was used.
    schedule : {"none", "layer", "edge"}, default="none"
        Message schedule ``alpha`` (eq. 15/17, geometric mean of the new and the
        previous message, ``alpha = sigmoid(z)`` trained): ``"none"`` is the
        synchronous ``alpha = 1``; ``"layer"`` trains one ``alpha^k`` per layer;
        ``"edge"`` one ``alpha^k_{j->i}`` per layer and directed edge.
    coupling : {"symmetric", "directed"}, default="symmetric"
        One coupling ``a^k_ij = a^k_ji`` per edge and layer (an MRF), or one per
        directed edge (each message gets its own weight).
    tied_params : tuple of str, default=("coupling",)
        Parameter groups shared by all layers instead of untied per layer, any
        of ``"coupling"``, ``"bias"``, ``"local"`` (observation weights ``w``),
        ``"dense"`` (``C``) and ``"schedule"``.  Tying keeps the parameter count
        in check (paper sec. 3.3); tying all of them gives the original,
        un-unfolded model (K inference iterations) trained discriminatively.
        Default: tying the couplings keeps the graph's parameter count
        independent of ``K``; on the digits training split (as for
        ``n_latent``) untied couplings gave 10.74 % validation error against
        10.14 % tied (mean field, 16 latent units), and 11.66 % against
        11.43 % (BP, no latent unit).  Biases and observation weights stay
        per layer.
    l2_regularization : float, default=0.0
        Strength of the L2 penalty on couplings and observation weights.
    learning_rate_init : float, default=0.03
        Adam step size.  Default: with 0.01 (and batches of 200) fits on the
        digits training split ran into ``max_iter`` and reached 11.61 %
        validation error against 11.48 % with 0.03 (mean field, no latent
        unit).
    max_iter : int, default=200
        Maximum number of epochs.
    tol : float, default=1e-4
        Training stops when the loss (with ``early_stopping``, the validation
        loss) has not dropped by ``tol`` for ``n_iter_no_change`` epochs.
    n_iter_no_change : int, default=10
        See ``tol``.
    batch_size : int or "auto", default="auto"
        Mini-batch size; ``"auto"`` is ``min(100, n_samples)`` (twice the
        updates an epoch of the former 200, which ran into ``max_iter`` on
        the digits training split).
    shuffle : bool, default=True
        Whether to shuffle the samples every epoch.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the training data, stop when its
        loss (the cross-entropy that training minimizes) has not dropped for
        ``n_iter_no_change`` epochs and keep the parameters of the epoch with
        the lowest validation loss.  On by default: without it the digits
        and glyph benchmarks overfit (0.1-0.25 % training against ~5 % test
        pixel error, issue 15) and end on ``max_iter``.  The loss, not the
        accuracy, is watched: the accuracy of a small validation set moves in
        steps and stalls for tens of epochs while the model still improves,
        which stopped some fits after about 20 epochs.  With fewer than two
        samples nothing is held out.
    validation_fraction : float, default=0.1
        See ``early_stopping``.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialization, the shuffling and the validation split.
    verbose : int, default=0
        Print the loss after each epoch."""

_COMMON_ATTRS_DOC = """
    classes_ : ndarray
        The two classes of a 1-D target, or ``[0, 1]`` for an indicator ``y``.
    n_outputs_ : int
        Number of predicted hidden units (labels), ``n_hidden``.
    edges_ : ndarray of shape (n_edges, 2)
        Hidden-hidden edges ``(i, j)``, ``i < j``, including those to latent
        units.
    coupling_ : ndarray of shape (n_layers, n_edges) or (n_layers, 2 * n_edges)
        Per-layer couplings ``a^k_ij`` (``2 * n_edges`` with
        ``coupling="directed"``: edges ``i -> j`` first, then ``j -> i``).
    bias_ : ndarray of shape (n_layers, n_hidden + n_latent)
        Per-layer biases ``b^k``.  Tied parameters (``tied_params``) are
        repeated along the first axis of these attributes.
    local_coef_ : ndarray of shape (n_layers, n_hidden)
        Per-layer observation weights ``w^k`` (local observation only).
    dense_coef_ : ndarray of shape (n_layers, n_hidden + n_latent, n_features)
        Per-layer observation matrices ``C^k`` (dense observation only).
    schedule_ : ndarray of shape (n_layers, 1) or (n_layers, 2 * n_edges)
        Trained ``alpha^k`` (only when ``schedule != "none"``).
    n_trainable_params_ : int
        Number of trained scalars (a tied parameter counts once).
    n_iter_ : int
        Number of epochs run.
    loss_curve_ : list of float
        Training loss after each epoch.
    best_loss_ : float
        Lowest training loss.
    observation_ : str
        The observation mode used: ``observation``, with ``"auto"`` resolved.
    validation_loss_curve_ : list of float
        Validation cross-entropy (mean over samples, sum over labels) after
        each epoch (early stopping only).
    best_validation_loss_ : float
        Lowest validation loss: that epoch's parameters are kept (early
        stopping only).
    validation_scores_ : list of float
        Per-label validation accuracy after each epoch (early stopping only).
    best_validation_score_ : float
        Validation accuracy of the kept epoch (early stopping only).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features, when ``X`` has string column names."""


class UnfoldedMeanField(_BaseUnfoldedMRF):
    __doc__ = """Unfolded mean-field inference in a binary MRF: a structured sigmoid network.

    Layer ``k`` updates the beliefs ``mu^k = q^k(h = 1)`` with mean-field
    messages ``a^k_ij mu^(k-1)_j`` (eq. 13/16), optionally scheduled (eq. 17);
    with ``schedule="none"`` this is exactly the sigmoid network of eq. (20),
    ``mu^k = logistic(A^k mu^(k-1) + b^k + C^k v)``, with ``A^k`` restricted to
    the graph and ``mu^0 = logistic(b^1 + C^1 v)``.  With ``n_layers=1`` and
    ``graph="empty"`` it is logistic regression for each label.
    Parameters are untied across layers and trained by back-propagation.

    Parameters
    ----------""" + _COMMON_PARAMS_DOC + """

    Attributes
    ----------""" + _COMMON_ATTRS_DOC + """

    See Also
    --------
    UnfoldedBP : The same network with belief-propagation messages.

    References
    ----------
    J. R. Hershey, J. Le Roux and F. Weninger, "Deep unfolding: model-based
    inspiration of novel deep architectures", arXiv:1409.2574, 2014, sec. 3.1,
    eq. (14)-(17), (20), appendix A.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.unfolded_mrf import UnfoldedMeanField
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(60, 3)
    >>> Y = (X[:, :2] + 0.5 * rng.randn(60, 2) > 0).astype(int)  # two labels
    >>> est = UnfoldedMeanField(n_layers=2, graph="chain", learning_rate_init=0.05,
    ...                         max_iter=1000, random_state=0).fit(X, Y)
    >>> est.predict_proba(X[:2]).shape
    (2, 2)
    >>> est.score(X, Y) > 0.85  # mean per-label accuracy
    True
    """

    _kind = "mf"

    def __init__(
        self,
        n_layers=5,
        *,
        graph=None,
        image_shape=None,
        n_latent=16,
        observation="auto",
        schedule="none",
        coupling="symmetric",
        tied_params=("coupling",),
        l2_regularization=0.0,
        learning_rate_init=0.03,
        max_iter=200,
        tol=1e-4,
        n_iter_no_change=10,
        batch_size="auto",
        shuffle=True,
        early_stopping=True,
        validation_fraction=0.1,
        random_state=None,
        verbose=0,
    ):
        self.n_layers = n_layers
        self.graph = graph
        self.image_shape = image_shape
        self.n_latent = n_latent
        self.observation = observation
        self.schedule = schedule
        self.coupling = coupling
        self.tied_params = tied_params
        self.l2_regularization = l2_regularization
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.verbose = verbose


class UnfoldedBP(_BaseUnfoldedMRF):
    __doc__ = """Unfolded generalized belief propagation in a binary MRF.

    Layer ``k`` computes, for every directed edge ``j -> i``, the power-mean
    message of eq. (61) (appendix C) from the previous beliefs and the reverse
    message, all in the log domain, then the beliefs (eq. 23).  ``lambda_ = 1``
    and ``kappa = 1`` give sum-product BP (eq. 22/24); ``lambda_ -> 0`` gives
    mean field (eq. 28, evaluated stably through 0); ``kappa -> inf`` gives
    max-product BP (eq. 30).  With tied parameters on a tree and enough layers
    the beliefs are the exact marginals (max-marginals for ``kappa = inf``).
    Parameters are untied across layers and trained by back-propagation
    through the messages.

    Parameters
    ----------
    n_layers : int, default=5
        Number ``K`` of unfolded inference iterations (layers).
    lambda_ : float or array-like of shape (n_layers,), default=1.0
        Power-mean exponent ``lambda`` (eq. 27/59): a float is tied across
        layers, an array gives one value per layer.  Must be >= 0.
    kappa : float or np.inf, default=1.0
        Sum-product (1) to max-product (``np.inf``) exponent (eq. 60/61).
    train_lambda : bool, default=False
        Whether ``lambda`` is trained (keeping the tied / per-layer structure
        of ``lambda_``).""" + _COMMON_PARAMS_DOC.replace(
        """
    n_layers : int, default=5
        Number ``K`` of unfolded inference iterations (layers).""",
        "",
    ) + """

    Attributes
    ----------""" + _COMMON_ATTRS_DOC + """
    lambdas_ : ndarray of shape (n_layers,)
        ``lambda^k`` used by each layer (trained if ``train_lambda``).

    See Also
    --------
    UnfoldedMeanField : The same network with mean-field messages.

    References
    ----------
    J. R. Hershey, J. Le Roux and F. Weninger, "Deep unfolding: model-based
    inspiration of novel deep architectures", arXiv:1409.2574, 2014, sec.
    3.2-3.3, eq. (21)-(30), appendices B and C, eq. (56)-(61).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.unfolded_mrf import UnfoldedBP
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(60, 3)
    >>> Y = (X[:, :2] + 0.5 * rng.randn(60, 2) > 0).astype(int)  # two labels
    >>> est = UnfoldedBP(n_layers=2, graph="chain", lambda_=0.5, learning_rate_init=0.05,
    ...                  max_iter=1000, random_state=0)
    >>> est.fit(X, Y).predict(X[:3]).shape
    (3, 2)
    >>> est.score(X, Y) > 0.85  # mean per-label accuracy
    True
    """

    _kind = "bp"

    _parameter_constraints: dict = {
        **_BaseUnfoldedMRF._parameter_constraints,
        "lambda_": [Interval(Real, 0, None, closed="left"), "array-like"],
        "kappa": [Interval(Real, 0, None, closed="neither"), Options(Real, {np.inf})],
        "train_lambda": ["boolean"],
    }

    def __init__(
        self,
        n_layers=5,
        *,
        lambda_=1.0,
        kappa=1.0,
        train_lambda=False,
        graph=None,
        image_shape=None,
        n_latent=16,
        observation="auto",
        schedule="none",
        coupling="symmetric",
        tied_params=("coupling",),
        l2_regularization=0.0,
        learning_rate_init=0.03,
        max_iter=200,
        tol=1e-4,
        n_iter_no_change=10,
        batch_size="auto",
        shuffle=True,
        early_stopping=True,
        validation_fraction=0.1,
        random_state=None,
        verbose=0,
    ):
        self.n_layers = n_layers
        self.lambda_ = lambda_
        self.kappa = kappa
        self.train_lambda = train_lambda
        self.graph = graph
        self.image_shape = image_shape
        self.n_latent = n_latent
        self.observation = observation
        self.schedule = schedule
        self.coupling = coupling
        self.tied_params = tied_params
        self.l2_regularization = l2_regularization
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.verbose = verbose

    def _kappa(self):
        return float(self.kappa)

    def _initial_lambdas(self):
        lam = np.asarray(self.lambda_, dtype=float)
        if lam.ndim == 0:
            lam = lam.reshape(1)
        elif lam.ndim != 1 or lam.shape[0] != self.n_layers:
            raise ValueError(
                "lambda_ must be a float or an array of length n_layers="
                f"{self.n_layers}, got shape {lam.shape}."
            )
        if not np.all(np.isfinite(lam)) or np.any(lam < 0):
            raise ValueError(f"lambda_ must be finite and >= 0, got {lam.tolist()}.")
        return lam

    def _trainable(self, params):
        return [key for key in params if key != "lambda" or self.train_lambda]
