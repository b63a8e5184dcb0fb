"""Sparse NMF with unit-norm bases learned by normalization-aware updates."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_array, check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _array_api as aa
from ._compat import Interval, StrOptions, _fit_context
from ._fitting import transactional_fit, warn_not_converged
from ._nmf.chunks import frame_chunks
from ._nmf.divergences import _BETA_LOSS_NAMES, beta_loss_to_float, eps_for
from ._nmf.scaling import safe_scale, scale_power, scaled_sparsity
from ._nmf.updates import (
    bases_gradient_parts,
    infer_activations_batched,
    init_bases,
    learn_sparse_nmf,
    normalized_bases_step,
)
from ._nmf.validation import check_nmf_input

__all__ = ["SparseNMF"]


class SparseNMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Sparse non-negative matrix factorization with unit-norm bases.

    Finds a dictionary ``components_`` whose rows have unit L2 norm and
    non-negative activations so that ``X ~ transform(X) @ components_``,
    minimizing (paper eq. 32/43)

        D_beta(X | H W~) + sparsity * ||H||_1

    Because the bases are normalized, the L1 penalty cannot be dodged by
    shrinking the activations and growing the bases. The bases are learned
    with the normalization-aware multiplicative update of Le Roux, Weninger &
    Hershey (2015), which differentiates the objective through the
    normalization; activations use the multiplicative update of eq. 33 with
    the majorization-minimization exponent of Févotte & Idier (2011).

    Parameters
    ----------
    n_components : int, default=None
        Number of bases R. None uses ``n_features``.
    beta_loss : float or {'frobenius', 'kullback-leibler', 'itakura-saito'}, \
            default='kullback-leibler'
        Beta-divergence to minimize: 2 is half the squared error, 1 the
        generalized KL divergence (the paper's choice for spectra), 0 the
        Itakura-Saito divergence. With ``beta_loss <= 0`` the data must be
        strictly positive.
    sparsity : float, default=0.0
        L1 weight ``mu`` on the activations.
    max_iter : int, default=200
        Maximum number of iterations, in fit and in transform.
    tol : float, default=1e-4
        Stop when one iteration lowers the objective by at most ``tol`` times
        its current value; in transform each frame stops on its own.
    init : {'exemplar', 'random'}, default='exemplar'
        Starting bases: random frames of X (as the paper does) or uniform noise.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialization. An int gives bit-identical results.
    verbose : int, default=0
        Print the objective after the first and every 10th iteration of fit.
    batch_size : int, default=None
        Frames processed at once by fit, transform and partial_fit; bounds
        the memory of intermediates (e.g. for a ``numpy.memmap`` X). fit runs
        the same full-batch algorithm whatever the value (the basis update
        sums the chunks' gradient parts), so results only change by
        rounding. None processes all frames at once.
    forget_factor : float, default=0.7
        Weight of the past in :meth:`partial_fit`: each call multiplies the
        basis-gradient statistics accumulated so far by it before adding the
        new batch's (as ``sklearn.decomposition.MiniBatchNMF`` does). 0 uses
        the current batch only, 1 weighs every batch seen equally. Not used
        by fit.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The bases, one per row, with unit L2 norm.
    n_components_ : int
        Number of bases.
    reconstruction_err_ : float
        Full training objective at the end of fit: divergence plus penalty.
    loss_curve_ : list of float
        Training objective at the start and after every iteration;
        non-increasing.
    n_iter_ : int
        Number of iterations run by fit.
    n_steps_ : int
        Number of mini-batches processed by :meth:`partial_fit` since the
        last fit (0 after fit).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string column names.

    Notes
    -----
    The objective is scale-equivariant: with ``X = s X'`` the solution is
    ``H = s H'`` for the sparsity ``sparsity * s**(1 - beta)``. Data whose
    largest value is far from 1 (outside ``[2**-16, 2**16]`` in float32,
    ``[2**-128, 2**128]`` in float64) is therefore solved on ``X / s`` with
    ``s`` a power of two and mapped back, exactly, so that float32 spectra
    at 1e30 or 1e-30 neither overflow nor sink under the division guards.

    See Also
    --------
    sklearn.decomposition.NMF : NMF without normalized bases.
    DeepNMF : sparse NMF inference unfolded into a trainable network.

    References
    ----------
    .. [1] J. R. Hershey, J. Le Roux, F. Weninger, "Deep unfolding: model-based
       inspiration of novel deep architectures", 2014, sec. 4 and 5.3.
    .. [2] J. Le Roux, F. Weninger, J. R. Hershey, "Sparse NMF - half-baked or
       well done?", MERL TR2015-023, 2015.
    .. [3] C. Févotte, J. Idier, "Algorithms for nonnegative matrix
       factorization with the beta-divergence", Neural Computation, 2011.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold import SparseNMF
    >>> X = np.random.default_rng(0).random((50, 8))
    >>> model = SparseNMF(n_components=3, sparsity=0.1, random_state=0)
    >>> H = model.fit_transform(X)
    >>> H.shape, model.components_.shape
    ((50, 3), (3, 8))
    >>> bool(np.allclose(np.linalg.norm(model.components_, axis=1), 1.0))
    True
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "beta_loss": [StrOptions(set(_BETA_LOSS_NAMES)), Interval(Real, 0, None, closed="left")],
        "sparsity": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "init": [StrOptions({"exemplar", "random"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "forget_factor": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(
        self,
        n_components=None,
        *,
        beta_loss="kullback-leibler",
        sparsity=0.0,
        max_iter=200,
        tol=1e-4,
        init="exemplar",
        random_state=None,
        verbose=0,
        batch_size=None,
        forget_factor=0.7,
    ):
        self.n_components = n_components
        self.beta_loss = beta_loss
        self.sparsity = sparsity
        self.max_iter = max_iter
        self.tol = tol
        self.init = init
        self.random_state = random_state
        self.verbose = verbose
        self.batch_size = batch_size
        self.forget_factor = forget_factor

    def _check_X(self, X, reset):
        xp = aa.get_namespace(X)
        X = validate_data(self, X, reset=reset, dtype=[xp.float64, xp.float32])
        check_nmf_input(X, beta_loss_to_float(self.beta_loss), f"{type(self).__name__} (input X)")
        return X

    @_fit_context(prefer_skip_nested_validation=True)
    @transactional_fit
    def fit(self, X, y=None):
        """Learn the bases from X.

        A ``KeyboardInterrupt`` during the iterations stops training with a
        :class:`~sklearn_unfold.exceptions.FitInterruptedWarning` and keeps
        the bases of the last completed iteration (as scikit-learn's
        ``MLPClassifier`` does); one before the first iteration is complete,
        or any exception, leaves the estimator exactly as it was before the
        call.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Non-negative data, e.g. magnitude spectra (one frame per row).
            A ``numpy.memmap`` is read ``batch_size`` frames at a time.
        y : Ignored

        Returns
        -------
        self : SparseNMF
        """
        X = self._check_X(X, reset=True)
        beta = beta_loss_to_float(self.beta_loss)
        n_components = X.shape[1] if self.n_components is None else self.n_components
        W, n_iter, loss_curve = learn_sparse_nmf(
            X,
            n_components,
            beta=beta,
            sparsity=self.sparsity,
            init=self.init,
            random_state=self.random_state,
            max_iter=self.max_iter,
            tol=self.tol,
            batch_size=self.batch_size,
            verbose=self.verbose,
            stop_on_interrupt=True,
        )
        if n_iter == self.max_iter and self.tol > 0:
            warn_not_converged(type(self).__name__, self.max_iter)
        self.components_ = aa.ascontiguous(W.T, aa.get_namespace(W))
        self.n_components_ = n_components
        self.n_iter_ = n_iter
        self.loss_curve_ = loss_curve
        self.reconstruction_err_ = loss_curve[-1]
        # A later partial_fit refines these bases, without older statistics.
        self.n_steps_ = 0
        self._bases_stats_ = None
        self._inference_ = self._inference_settings()
        return self

    def _inference_settings(self):
        """The model transform infers with, fixed at fit (set_params without a refit does not change it).

        The solver's settings ``max_iter``, ``tol`` and ``batch_size`` are read
        when transform runs, as ``sklearn.decomposition.NMF`` does.
        """
        return {"beta": beta_loss_to_float(self.beta_loss), "sparsity": float(self.sparsity)}

    @_fit_context(prefer_skip_nested_validation=True)
    @transactional_fit(reset=False)
    def partial_fit(self, X, y=None):
        """Update the bases with one mini-batch of frames (online sparse NMF).

        For out-of-core or streaming training, call it on consecutive
        batches. In the spirit of ``sklearn.decomposition.MiniBatchNMF``
        (Lefèvre, Bach & Févotte 2011): the batch's activations are inferred
        with the current bases (as :meth:`transform` does), the negative and
        positive parts of the gradient of the divergence in the bases are
        added to the statistics of the previous batches, weighted by
        ``forget_factor``, and the bases take one normalization-aware
        multiplicative step (Le Roux et al. 2015) with those statistics:

            A <- forget_factor * A + (X Lam^(beta-2)) H^T,
            B <- forget_factor * B + Lam^(beta-1) H^T,
            W <- normalize(W * [A + W 1 1^T (W * B)] / [B + W 1 1^T (W * A)]).

        With ``forget_factor=0`` and all the data as one batch this is one
        iteration of fit with the activations solved to convergence first.
        Unlike fit, no step is checked against the objective: the mini-batch
        objective is noisy, as in MiniBatchNMF.

        The first call initializes the bases from the batch (``init``,
        ``random_state``); after :meth:`fit`, calls refine the fitted bases.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Non-negative data, one frame per row.
        y : Ignored

        Returns
        -------
        self : SparseNMF
        """
        first = not hasattr(self, "components_")
        if not first:
            aa.check_same_namespace(X, self.components_, self, "partial_fit")
        X = self._check_X(X, reset=first)
        beta = beta_loss_to_float(self.beta_loss)
        mu = float(self.sparsity)
        if first:
            n_components = X.shape[1] if self.n_components is None else self.n_components
            W = init_bases(X.T, n_components, self.init, check_random_state(self.random_state))
            n_steps = 0
        else:
            n_components, n_steps = self.n_components_, getattr(self, "n_steps_", 0)
            W = self.components_.T
        xp = aa.get_namespace(X)
        M = aa.astype(X.T, W.dtype, xp)
        scale = safe_scale(M)
        mu = scaled_sparsity(mu, beta, scale, M.dtype)
        on = {} if aa.is_numpy(xp) else {"device": aa.device(W)}
        neg, pos = xp.zeros(W.shape, dtype=xp.float64, **on), xp.zeros(W.shape, dtype=xp.float64, **on)
        for chunk in frame_chunks(M.shape[1], self.batch_size):
            M_c = M[:, chunk] if scale == 1.0 else M[:, chunk] / scale
            H_c = infer_activations_batched(M_c, W, beta=beta, mu=mu, max_iter=self.max_iter, tol=self.tol)
            n_c, p_c = bases_gradient_parts(M_c, W, H_c, beta)
            neg += n_c
            pos += p_c
        # Statistics are kept as (neg, pos, u) meaning (neg, pos) * 2**u, so
        # that batches at any scale combine without overflow: the parts of X
        # are scale**beta times those of X / scale.
        unit = float(np.log2(scale)) * beta
        previous = getattr(self, "_bases_stats_", None)
        if previous is not None and previous[0].shape == W.shape:
            old_neg, old_pos, old_unit = previous if len(previous) == 3 else (*previous, 0.0)
            top = max(unit, old_unit)
            new_weight, old_weight = scale_power(2.0, unit - top), self.forget_factor * scale_power(2.0, old_unit - top)
            neg, pos, unit = new_weight * neg + old_weight * old_neg, new_weight * pos + old_weight * old_pos, top
        W = aa.astype(normalized_bases_step(W, neg, pos, eps_for(W.dtype)), W.dtype, xp)
        self.components_ = aa.ascontiguous(W.T, xp)
        self.n_components_ = n_components
        self.n_steps_ = n_steps + 1
        self._bases_stats_ = (neg, pos, unit)
        self._inference_ = self._inference_settings()
        return self

    def fit_transform(self, X, y=None):
        """Learn the bases from X and return its activations.

        Equal to ``fit(X).transform(X)``: the activations are re-inferred with
        the final bases from the same starting point transform uses, so that
        both give the same numbers for the same data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Non-negative data.
        y : Ignored

        Returns
        -------
        H : ndarray of shape (n_samples, n_components)
        """
        return self.fit(X).transform(X)

    def transform(self, X):
        """Infer activations of X with the bases frozen (eq. 32).

        Every frame starts from the same deterministic point, so a frame's
        activations do not depend on the other frames passed with it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Non-negative data.

        Returns
        -------
        H : ndarray of shape (n_samples, n_components)
        """
        check_is_fitted(self)
        aa.check_same_namespace(X, self.components_, self, "transform")
        settings = self._inference_
        beta = settings["beta"]
        xp = aa.get_namespace(X)
        X = validate_data(self, X, reset=False, dtype=[xp.float64, xp.float32])
        check_nmf_input(X, beta, f"{type(self).__name__} (input X)")
        scale = safe_scale(X)
        M = X.T if scale == 1.0 else X.T / scale
        W = aa.astype(self.components_.T, X.dtype, xp)
        H = infer_activations_batched(
            M,
            W,
            beta=beta,
            mu=scaled_sparsity(settings["sparsity"], beta, scale, X.dtype),
            max_iter=self.max_iter,
            tol=self.tol,
            batch_size=self.batch_size,
        )
        H = aa.ascontiguous(H.T, xp)
        if scale != 1.0:
            H *= scale
        return H

    def inverse_transform(self, X):
        """Map activations back to data space: ``X @ components_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Activations.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        aa.check_same_namespace(X, self.components_, self, "inverse_transform")
        xp = aa.get_namespace(X)
        H = check_array(X, dtype=[xp.float64, xp.float32])
        if H.shape[1] != self.n_components_:
            raise ValueError(
                f"X has {H.shape[1]} columns but this SparseNMF has {self.n_components_} components."
            )
        return H @ aa.astype(self.components_, H.dtype, xp)

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.array_api_support = True
        return tags
