"""DeepNMF and DiscriminativeNMF: sparse NMF inference unfolded into a network."""

import time
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    RegressorMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._divergences import _BETA_LOSS_NAMES, beta_loss_to_float, mm_exponent
from ._unfolded_nmf import (
    fixed_activations,
    frame_chunks,
    map_chunks,
    train_layers,
    trained_forward,
    wiener_forward,
)
from .metrics import magnitude_sdr, target_frames
from .sparse_nmf import SparseNMF, check_nmf_input

_BETA = [StrOptions(set(_BETA_LOSS_NAMES)), Interval(Real, 0, None, closed="left")]


class _BaseUnfoldedNMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, RegressorMixin, BaseEstimator):
    """Shared machinery of DeepNMF and DiscriminativeNMF (not public)."""

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "n_layers": [Interval(Integral, 1, None, closed="left")],
        "n_context": [Interval(Integral, 1, None, closed="left")],
        "sparsity": [Interval(Real, 0, None, closed="left")],
        "beta_loss": _BETA,
        "target_loss": _BETA,
        "source_weights": ["array-like", None],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "bases_max_iter": [Interval(Integral, 1, None, closed="left")],
        "bases": ["array-like", None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # ------------------------------------------------------------------ fit
    def _n_trained(self):
        raise NotImplementedError

    def _log(self, message):
        if self.verbose:
            print(f"[{type(self).__name__}] {message}", flush=True)

    def _validate_targets(self, X, Y):
        n_features = X.shape[1]
        if n_features % self.n_context:
            raise ValueError(
                f"X has {n_features} columns, which is not a multiple of n_context={self.n_context}: "
                "X must hold n_context stacked frames of n_frequencies each."
            )
        if Y.ndim != 2 or Y.shape[1] % n_features or Y.shape[1] // n_features < 2:
            raise ValueError(
                f"Y must have shape (n_samples, n_sources * {n_features}) with n_sources >= 2: each "
                f"source's magnitudes stacked with the same context as X; got Y of shape {Y.shape}."
            )
        n_sources = Y.shape[1] // n_features
        if self.source_weights is None:
            weights = np.zeros(n_sources)
            weights[0] = 1.0
        else:
            weights = np.asarray(self.source_weights, dtype=np.float64)
            if weights.shape != (n_sources,):
                raise ValueError(
                    f"source_weights must be a 1-D array with one weight per source; got shape "
                    f"{weights.shape} while Y holds {n_sources} sources."
                )
            if not np.all(np.isfinite(weights)) or np.any(weights < 0) or not np.any(weights > 0):
                raise ValueError("source_weights must be finite, non-negative and not all zero.")
        return n_sources, weights

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, Y):
        """Train sparse-NMF bases per source, then the last layers discriminatively.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_context * n_frequencies)
            Context-stacked mixture magnitudes: row t holds frames
            t - n_context + 1, ..., t, the target frame last.
        Y : array-like of shape (n_samples, n_sources * n_context * n_frequencies)
            The sources' magnitudes, each stacked exactly like X and placed
            side by side (source 0 first, e.g. speech, then noise). The
            context-stacked spectra train the fixed bases (paper sec. 5.4);
            the last frame of each source is the training target.

        Returns
        -------
        self : object
        """
        X, Y = validate_data(
            self, X, Y, multi_output=True, y_numeric=True, dtype=[np.float64, np.float32]
        )
        Y = check_array(Y, dtype=X.dtype, ensure_2d=False)
        n_layers, n_trained = self.n_layers, self._n_trained()
        if n_trained > n_layers:
            raise ValueError(
                f"n_trained_layers={n_trained} cannot exceed n_layers={n_layers}: the trained "
                "layers are the last ones of the unfolded network."
            )
        name = type(self).__name__
        beta1 = beta_loss_to_float(self.beta_loss)
        beta2 = beta_loss_to_float(self.target_loss)
        check_nmf_input(X, beta1, f"{name} (input X)")
        # Zeros in Y are fine unless a divergence with beta <= 0 meets them
        # (bases are trained on Y with beta1; the target loss uses beta2).
        check_nmf_input(Y, min(beta1, beta2), f"{name} (input Y)")
        n_sources, weights = self._validate_targets(X, Y)
        n_features = X.shape[1]
        n_freqs = n_features // self.n_context
        rng = check_random_state(self.random_state)
        start = time.perf_counter()

        # 1. Sparse NMF bases per source on its context-stacked spectra (sec. 5.3).
        if self.bases is not None:
            bases = [self._check_given_bases(n_sources, n_features, X.dtype)]
        else:
            bases = []
            for l in range(n_sources):
                snmf = SparseNMF(
                    n_components=self.n_components,
                    beta_loss=beta1,
                    sparsity=self.sparsity,
                    max_iter=self.bases_max_iter,
                    tol=1e-4,
                    init="exemplar",
                    random_state=rng.randint(np.iinfo(np.int32).max),
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    snmf.fit(Y[:, l * n_features : (l + 1) * n_features])
                bases.append(snmf.components_)
                self._log(
                    f"source {l}: sparse NMF bases after {snmf.n_iter_} iterations "
                    f"({time.perf_counter() - start:.1f} s)"
                )
        self.bases_ = np.vstack(bases).astype(X.dtype, copy=False)
        self.n_sources_ = n_sources
        self.n_frequencies_ = n_freqs
        self._weights = weights

        # 2. The trained layers start from the last frame of those bases.
        init = np.ascontiguousarray(self.bases_[:, -n_freqs:].T)
        layers = [init.copy() for _ in range(n_trained)]
        self.n_iter_ = 0
        self.loss_curve_ = []
        if n_trained:
            H_start = self._fixed_part(X)
            self._log(f"fixed layers computed ({time.perf_counter() - start:.1f} s)")
            M = X[:, -n_freqs:].T
            target = n_features - n_freqs
            sources = [Y[:, l * n_features + target : (l + 1) * n_features].T for l in range(n_sources)]
            layers, n_iter, loss_curve = train_layers(
                M,
                sources,
                H_start,
                layers,
                self._source_slices(),
                weights,
                beta1=beta1,
                beta2=beta2,
                mu=float(self.sparsity),
                exponent=mm_exponent(beta1),
                max_iter=self.max_iter,
                tol=self.tol,
                batch_size=self.batch_size,
                n_jobs=self.n_jobs,
                verbose=self.verbose,
                name=name,
            )
            self.n_iter_, self.loss_curve_ = n_iter, loss_curve
            if n_iter == self.max_iter and self.tol > 0 and self.max_iter > 0:
                warnings.warn(
                    f"{name}: maximum number of iterations {self.max_iter} reached; increase max_iter "
                    "to improve convergence.",
                    ConvergenceWarning,
                )
        self.trained_components_ = np.stack([W.T for W in layers]) if layers else np.empty((0, self.bases_.shape[0], n_freqs), X.dtype)
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else None
        self._log(f"done in {time.perf_counter() - start:.1f} s")
        return self

    def _check_given_bases(self, n_sources, n_features, dtype):
        bases = check_array(self.bases, dtype=dtype, copy=True)
        expected = (n_sources * self.n_components, n_features)
        if bases.shape != expected:
            raise ValueError(
                f"bases has shape {bases.shape}; expected {expected} = (n_sources * n_components, "
                "n_features_in), e.g. the bases_ of a DeepNMF fitted on the same kind of data."
            )
        check_nmf_input(bases, 1.0, f"{type(self).__name__} (bases)")
        return bases

    # ------------------------------------------------------------ inference
    def _source_slices(self):
        R = self.n_components
        return [slice(l * R, (l + 1) * R) for l in range(self.n_sources_)]

    def _n_fixed_iterations(self):
        # Iterations k = 1..K use W^(k-1); W^(K-C+1)..W^K are trained (W^K
        # being the reconstruction), so K - C + 1 iterations use the fixed
        # bases when C >= 1, all K when C = 0.
        C = self._n_trained()
        return self.n_layers - C + 1 if C else self.n_layers

    def _fixed_part(self, X):
        W_fixed = self.bases_.T.astype(X.dtype, copy=False)
        beta1 = beta_loss_to_float(self.beta_loss)
        chunks = frame_chunks(X.shape[0], self.batch_size)
        parts = map_chunks(
            lambda c: fixed_activations(
                X[c].T, W_fixed, self._n_fixed_iterations(), beta1, float(self.sparsity), mm_exponent(beta1)
            ),
            chunks,
            self.n_jobs,
        )
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def _layers(self, dtype):
        if self._n_trained():
            return [W.T.astype(dtype, copy=False) for W in self.trained_components_]
        return [np.ascontiguousarray(self.bases_[:, -self.n_frequencies_ :].T).astype(dtype, copy=False)]

    def _forward(self, X, output):
        """Run the network on X chunk by chunk; ``output`` is 'activations' or 'sources'."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        beta1 = beta_loss_to_float(self.beta_loss)
        check_nmf_input(X, beta1, f"{type(self).__name__} (input X)")
        mu, exponent = float(self.sparsity), mm_exponent(beta1)
        W_fixed = self.bases_.T.astype(X.dtype, copy=False)
        layers = self._layers(X.dtype)
        F = self.n_frequencies_
        n_fixed = self._n_fixed_iterations()
        slices = self._source_slices()

        def one(chunk):
            M_ctx = X[chunk].T
            M = M_ctx[-F:]
            H = fixed_activations(M_ctx, W_fixed, n_fixed, beta1, mu, exponent)
            H = trained_forward(M, H, layers, beta1, mu, exponent)
            if output == "activations":
                return H.T
            estimates, _, _ = wiener_forward(M, layers[-1], H, slices)
            return np.hstack([S.T for S in estimates])

        parts = map_chunks(one, frame_chunks(X.shape[0], self.batch_size), self.n_jobs)
        return np.ascontiguousarray(np.vstack(parts))

    def predict(self, X):
        """Source estimates by the Wiener-like filter of the last layer (eq. 34).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_context * n_frequencies)
            Context-stacked mixture magnitudes.

        Returns
        -------
        Y_pred : ndarray of shape (n_samples, n_sources * n_frequencies)
            Estimated magnitudes of each source's target frame, side by side
            (source 0 first). They sum to the mixture's target frame.
        """
        return self._forward(X, "sources")

    def transform(self, X):
        """Activations ``H^K`` of the last layer, one row per frame.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_context * n_frequencies)

        Returns
        -------
        H : ndarray of shape (n_samples, n_sources * n_components)
        """
        return self._forward(X, "activations")

    def fit_transform(self, X, Y):
        """Fit, then return ``transform(X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_context * n_frequencies)
        Y : array-like of shape (n_samples, n_sources * n_context * n_frequencies)

        Returns
        -------
        H : ndarray of shape (n_samples, n_sources * n_components)
        """
        return self.fit(X, Y).transform(X)

    def score(self, X, Y):
        """Magnitude-domain SDR (dB) of the target source (source 0).

        ``10 log10(||S||^2 / ||S - S_hat||^2)`` over all frames, for the first
        source (speech, in speech enhancement). Greater is better, so
        GridSearchCV can use it directly.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_context * n_frequencies)
        Y : array-like of shape (n_samples, n_sources * n_context * n_frequencies) \
                or (n_samples, n_sources * n_frequencies)
            True source magnitudes, with or without context.

        Returns
        -------
        sdr : float
        """
        Y_pred = self.predict(X)
        Y = check_array(Y, dtype=Y_pred.dtype)
        return magnitude_sdr(target_frames(Y, self.n_sources_, self.n_frequencies_), Y_pred, n_sources=self.n_sources_)

    @property
    def n_params_(self):
        """Number of parameters ``P = (T + C) F R`` and trained ones ``P_D = C F R``."""
        check_is_fitted(self)
        return {"total": int(self.bases_.size + self.trained_components_.size), "trained": int(self.trained_components_.size)}

    @property
    def _n_features_out(self):
        return self.bases_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        tags.target_tags.positive_only = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


_DOC_PARAMS_COMMON = """
    n_components : int, default=100
        Number of bases R per source.
    n_layers : int, default=25
        Number of unfolded multiplicative-update iterations K.
    {n_trained}n_context : int, default=9
        Number T of stacked frames in X (left context ending with the target frame).
    sparsity : float, default=1.0
        L1 weight mu of the inference objective (eq. 32), also used to train the
        bases. The paper uses 5 on its features; on the magnitudes of
        :mod:`sklearn_unfold.audio` (sqrt-Hann, 8 kHz, waveforms in [-1, 1]) 1
        separated best among 0.1, 1 and 5 in our speech benchmark.
    beta_loss : float or {{'kullback-leibler', 'frobenius', 'itakura-saito'}}, default='kullback-leibler'
        Divergence beta1 of the inference objective, i.e. of the layer updates
        (eq. 33). The paper uses KL (1).
    target_loss : float or {{'frobenius', 'kullback-leibler', 'itakura-saito'}}, default='frobenius'
        Divergence beta2 of the training objective (eq. 37). The paper uses 2.
    source_weights : array-like of shape (n_sources,), default=None
        Weights gamma_l of each source in the training objective. None trains
        for source 0 only (weights (1, 0, ...)), as the paper does for speech.
    max_iter : int, default=100
        Maximum number of multiplicative back-propagation updates.
    tol : float, default=1e-4
        Stop when an update lowers the training objective by less than ``tol``
        times its value.
    bases_max_iter : int, default=100
        Iterations of the sparse NMF that trains the fixed bases of each source.
    bases : array-like of shape (n_sources * n_components, n_context * n_frequencies), default=None
        Fixed bases to use instead of training them, e.g. the ``bases_`` of
        another fitted model: they do not depend on ``n_layers`` or
        ``n_trained_layers``, so a grid search over those can share them.
        Used as given (rows should have unit L2 norm, source 0 first).
    batch_size : int, default=4096
        Frames processed at once; bounds the memory of intermediates.
    n_jobs : int, default=None
        Threads that process chunks of frames in parallel (joblib; -1 uses all
        cores). Results do not depend on it.
    random_state : int, RandomState instance or None, default=None
        Seeds the exemplar initialization of the bases. An int gives
        bit-identical results.
    verbose : int, default=0
        Print progress of the base training and of every update.
"""

_DOC_ATTRIBUTES = """
    Attributes
    ----------
    bases_ : ndarray of shape (n_sources * n_components, n_context * n_frequencies)
        Fixed sparse NMF bases (rows, unit L2 norm), source 0 first, used by
        the first layers on the context-stacked mixture.
    trained_components_ : ndarray of shape (n_trained_layers, n_sources * n_components, n_frequencies)
        Discriminatively trained single-frame bases, bottom layer first; the
        last one is the reconstruction (Wiener filter) layer.
    n_sources_ : int
        Number of sources found in Y.
    n_frequencies_ : int
        Frequencies F per frame.
    n_iter_ : int
        Number of accepted multiplicative back-propagation updates.
    loss_curve_ : list of float
        Training objective per frame at the start and after each update;
        non-increasing.
    loss_ : float or None
        Final training objective per frame (None when nothing is trained).
    n_params_ : dict
        Total and discriminatively trained parameter counts (P and P_D).
    n_features_in_ : int
        Number of columns of X seen in fit.
"""

_DOC_REFERENCES = """
    References
    ----------
    .. [1] J. R. Hershey, J. Le Roux, F. Weninger, "Deep unfolding: model-based
       inspiration of novel deep architectures", 2014, sec. 4, 5.4, appendix D.
    .. [2] F. Weninger, J. Le Roux, J. R. Hershey, S. Watanabe, "Discriminative
       NMF and its application to single-channel source separation",
       Interspeech 2014.
"""


class DeepNMF(_BaseUnfoldedNMF):
    __doc__ = (
        """Deep NMF: K unfolded sparse-NMF iterations with the last C layers trained.

    Inference of sparse NMF activations (eq. 32) by K multiplicative updates
    (eq. 33), followed by the Wiener-like reconstruction of eq. 34, is
    unfolded into a K-layer non-negative network. The first layers use fixed
    sparse NMF bases learned per source on context-stacked spectra; the last
    C layers (counting the reconstruction layer) have their own single-frame
    bases, trained to minimize ``sum_l gamma_l D_beta2(S_l | S_hat_l)``
    (eq. 37) with multiplicative back-propagation (eq. 38-42, appendix D):
    ``W <- W * [grad]_- / [grad]_+``, which keeps them non-negative without
    any projection. An update that would increase the objective is retried
    with a smaller exponent, so ``loss_curve_`` never increases.

    ``n_trained_layers=0`` is sparse NMF separation, ``n_trained_layers=1``
    is discriminative NMF (see :class:`DiscriminativeNMF`).

    Parameters
    ----------"""
        + _DOC_PARAMS_COMMON.format(
            n_trained="""n_trained_layers : int, default=2
        Number C of trained layers, counting the reconstruction layer;
        0 <= C <= K. The matrices W^(K-C+1), ..., W^K of eq. 62-63 are trained.
    """
        )
        + _DOC_ATTRIBUTES
        + """
    See Also
    --------
    DiscriminativeNMF : the special case of one trained layer.
    SparseNMF : the model whose inference is unfolded.
"""
        + _DOC_REFERENCES
        + """
    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold import DeepNMF
    >>> rng = np.random.default_rng(0)
    >>> S1, S2 = rng.random((200, 6)), rng.random((200, 6))
    >>> X, Y = S1 + S2, np.hstack([S1, S2])
    >>> model = DeepNMF(n_components=3, n_layers=4, n_trained_layers=2, n_context=1,
    ...                 sparsity=0.0, max_iter=20, random_state=0).fit(X, Y)
    >>> model.predict(X).shape
    (200, 12)
    >>> bool(model.loss_curve_[-1] <= model.loss_curve_[0])
    True
    """
    )

    _parameter_constraints: dict = {
        **_BaseUnfoldedNMF._parameter_constraints,
        "n_trained_layers": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_components=100,
        *,
        n_layers=25,
        n_trained_layers=2,
        n_context=9,
        sparsity=1.0,
        beta_loss="kullback-leibler",
        target_loss="frobenius",
        source_weights=None,
        max_iter=100,
        tol=1e-4,
        bases_max_iter=100,
        bases=None,
        batch_size=4096,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.n_layers = n_layers
        self.n_trained_layers = n_trained_layers
        self.n_context = n_context
        self.sparsity = sparsity
        self.beta_loss = beta_loss
        self.target_loss = target_loss
        self.source_weights = source_weights
        self.max_iter = max_iter
        self.tol = tol
        self.bases_max_iter = bases_max_iter
        self.bases = bases
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def _n_trained(self):
        return self.n_trained_layers


class DiscriminativeNMF(_BaseUnfoldedNMF):
    __doc__ = (
        """Discriminative NMF: sparse NMF with trained reconstruction bases.

    Activations are inferred with K multiplicative updates using fixed sparse
    NMF analysis bases (eq. 32-33); separate reconstruction bases, used by the
    Wiener-like filter of eq. 34, are trained discriminatively to minimize
    eq. 37 (Weninger et al. 2014). This is :class:`DeepNMF` with
    ``n_trained_layers=1``: the analysis and reconstruction bases are untied
    and only the reconstruction layer is learned.

    Parameters
    ----------"""
        + _DOC_PARAMS_COMMON.format(n_trained="")
        + _DOC_ATTRIBUTES
        + """
    See Also
    --------
    DeepNMF : trains more than the last layer.
"""
        + _DOC_REFERENCES
    )

    def __init__(
        self,
        n_components=100,
        *,
        n_layers=25,
        n_context=9,
        sparsity=1.0,
        beta_loss="kullback-leibler",
        target_loss="frobenius",
        source_weights=None,
        max_iter=100,
        tol=1e-4,
        bases_max_iter=100,
        bases=None,
        batch_size=4096,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.n_layers = n_layers
        self.n_context = n_context
        self.sparsity = sparsity
        self.beta_loss = beta_loss
        self.target_loss = target_loss
        self.source_weights = source_weights
        self.max_iter = max_iter
        self.tol = tol
        self.bases_max_iter = bases_max_iter
        self.bases = bases
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def _n_trained(self):
        return 1
