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
from ._nmf_updates import frame_buffer, safe_scale, scale_power, scaled_sparsity
from ._unfolded_nmf import (
    fixed_activations,
    frame_chunks,
    imap_chunks,
    train_layers,
    train_step,
    trained_forward,
    wiener_forward,
)
from .metrics import magnitude_sdr, target_frames
from .sparse_nmf import SparseNMF, check_nmf_input, restore_on_interrupt

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

    def _check_fit_data(self, X, Y, reset):
        """Validated X, Y and what they imply: n_sources, weights, beta1, beta2."""
        X, Y = validate_data(
            self, X, Y, reset=reset, multi_output=True, y_numeric=True, dtype=[np.float64, np.float32]
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
        return X, Y, n_sources, weights, beta1, beta2

    def _train_bases(self, Y, n_sources, n_features, dtype, rng, start):
        """Stage 1: sparse NMF bases per source on its context-stacked spectra (sec. 5.3)."""
        if self.bases is not None:
            return self._check_given_bases(n_sources, n_features, dtype)
        bases = []
        for l in range(n_sources):
            snmf = SparseNMF(
                n_components=self.n_components,
                beta_loss=beta_loss_to_float(self.beta_loss),
                sparsity=self.sparsity,
                max_iter=self.bases_max_iter,
                tol=1e-4,
                init="exemplar",
                random_state=rng.randint(np.iinfo(np.int32).max),
                batch_size=self.batch_size,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                # An interrupt here must reach DeepNMF.fit (which then leaves
                # the estimator unfitted), not stop the bases halfway.
                snmf._fit(Y[:, l * n_features : (l + 1) * n_features], stop_on_interrupt=False)
            bases.append(snmf.components_)
            self._log(
                f"source {l}: sparse NMF bases after {snmf.n_iter_} iterations "
                f"({time.perf_counter() - start:.1f} s)"
            )
        return np.vstack(bases).astype(dtype, copy=False)

    def _scaled_problem(self, X, Y, n_sources, beta1):
        """The training problem on data divided by :func:`safe_scale` (1 for data in range).

        The network is scale-equivariant (eq. 33 and 34 with the sparsity
        rescaled, see ``safe_scale``), and the multiplicative updates of the
        trained layers only see ratios of gradient parts, which all scale
        alike: training on the rescaled data gives the same layers, without
        overflow or underflow at extreme scales.

        Returns
        -------
        scale : float
        M, sources : ndarray
            Target frames of the mixture and of the sources, divided by scale.
        mu : float
            The sparsity of the rescaled problem.
        """
        scale = safe_scale(X)
        M, sources = self._training_data(X, Y, n_sources)
        mu = scaled_sparsity(float(self.sparsity), beta1, scale, X.dtype)
        if scale != 1.0:
            M, sources = M / scale, [S / scale for S in sources]
        return scale, M, sources, mu

    def _training_data(self, X, Y, n_sources):
        """Mixture target frames M and source target frames, (n_frequencies, n_samples) views."""
        n_features = X.shape[1]
        n_freqs = n_features // self.n_context
        target = n_features - n_freqs
        sources = [Y[:, l * n_features + target : (l + 1) * n_features].T for l in range(n_sources)]
        return X[:, -n_freqs:].T, sources

    @_fit_context(prefer_skip_nested_validation=True)
    @restore_on_interrupt
    def fit(self, X, Y):
        """Train sparse-NMF bases per source, then the last layers discriminatively.

        Memory: X and Y may be ``numpy.memmap`` arrays; they are read
        ``batch_size`` frames at a time, and the state kept for every frame
        (sparse NMF activations, output of the fixed layers) then goes to a
        temporary file, so memory does not grow with the number of frames.

        Data far from unit scale (e.g. float32 at 1e30) is trained on as the
        equivalent problem on ``X / s``, ``s`` a power of two, as
        :class:`SparseNMF` does; predictions are mapped back exactly.

        Interrupting (``KeyboardInterrupt``) while the layers are trained
        stops with a warning and keeps the layers of the last accepted
        update, as scikit-learn's ``MLPClassifier`` does; an interrupt
        before (while the bases are learned) leaves the estimator as it was
        before the call.

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
        X, Y, n_sources, weights, beta1, beta2 = self._check_fit_data(X, Y, reset=True)
        n_trained = self._n_trained()
        name = type(self).__name__
        n_features = X.shape[1]
        n_freqs = n_features // self.n_context
        rng = check_random_state(self.random_state)
        start = time.perf_counter()

        # 1. Sparse NMF bases per source on its context-stacked spectra (sec. 5.3).
        self.bases_ = self._train_bases(Y, n_sources, n_features, X.dtype, rng, start)
        self.n_sources_ = n_sources
        self.n_frequencies_ = n_freqs
        self._weights = weights

        # 2. The trained layers start from the last frame of those bases.
        init = np.ascontiguousarray(self.bases_[:, -n_freqs:].T)
        layers = [init.copy() for _ in range(n_trained)]
        self.n_iter_ = 0
        self.loss_curve_ = []
        if n_trained:
            scale, M, sources, mu = self._scaled_problem(X, Y, n_sources, beta1)
            H_start = self._fixed_part(X, mu=mu, scale=scale)
            self._log(f"fixed layers computed ({time.perf_counter() - start:.1f} s)")
            layers, n_iter, loss_curve = train_layers(
                M,
                sources,
                H_start,
                layers,
                self._source_slices(),
                weights,
                beta1=beta1,
                beta2=beta2,
                mu=mu,
                exponent=mm_exponent(beta1),
                max_iter=self.max_iter,
                tol=self.tol,
                batch_size=self.batch_size,
                n_jobs=self.n_jobs,
                verbose=self.verbose,
                name=name,
                stop_on_interrupt=True,
            )
            # The training objective of X is scale**beta2 times that of X / scale.
            loss_curve = [loss * scale_power(scale, beta2) for loss in loss_curve]
            self.n_iter_, self.loss_curve_ = n_iter, loss_curve
            if n_iter == self.max_iter and self.tol > 0 and self.max_iter > 0:
                warnings.warn(
                    f"{name}: maximum number of iterations {self.max_iter} reached; increase max_iter "
                    "to improve convergence.",
                    ConvergenceWarning,
                )
        self.trained_components_ = np.stack([W.T for W in layers]) if layers else np.empty((0, self.bases_.shape[0], n_freqs), X.dtype)
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else None
        # A later partial_fit refines this fit from a full step.
        self.n_steps_ = 0
        self._partial_step = 1.0
        self._log(f"done in {time.perf_counter() - start:.1f} s")
        return self

    def _partial_fit(self, X, Y):
        """One mini-batch update; see DeepNMF.partial_fit."""
        first = not hasattr(self, "trained_components_")
        X, Y, n_sources, weights, beta1, beta2 = self._check_fit_data(X, Y, reset=first)
        n_features = X.shape[1]
        n_freqs = n_features // self.n_context
        if first:
            rng = check_random_state(self.random_state)
            bases = self._train_bases(Y, n_sources, n_features, X.dtype, rng, time.perf_counter())
            init = np.ascontiguousarray(bases[:, -n_freqs:].T)
            layers = [init.copy() for _ in range(self._n_trained())]
            step, n_iter, loss_curve, n_steps = 1.0, 0, [], 0
        else:
            if n_sources != self.n_sources_:
                raise ValueError(
                    f"Y holds {n_sources} sources but this {type(self).__name__} was fitted with "
                    f"{self.n_sources_}; every batch must have the same sources."
                )
            bases = self.bases_
            X, Y = X.astype(bases.dtype, copy=False), Y.astype(bases.dtype, copy=False)
            layers = [W.T for W in self.trained_components_]
            step = getattr(self, "_partial_step", 1.0)
            n_iter, loss_curve, n_steps = self.n_iter_, list(self.loss_curve_), getattr(self, "n_steps_", 0)
        if layers:
            scale, M, sources, mu = self._scaled_problem(X, Y, n_sources, beta1)
            layers, _, loss_after, used = train_step(
                M,
                sources,
                self._fixed_part(X, bases=bases, mu=mu, scale=scale),
                layers,
                self._source_slices(n_sources),
                weights,
                beta1=beta1,
                beta2=beta2,
                mu=mu,
                exponent=mm_exponent(beta1),
                batch_size=self.batch_size,
                step=step,
                n_jobs=self.n_jobs,
            )
            if used:
                # As in fit: the exponent grows back after an accepted update.
                n_iter, step = n_iter + 1, min(1.0, 2.0 * used)
            loss_curve.append(loss_after * scale_power(scale, beta2))
        # Everything is computed; only now does the estimator change.
        self.bases_ = bases
        self.n_sources_ = n_sources
        self.n_frequencies_ = n_freqs
        self._weights = weights
        self.trained_components_ = (
            np.stack([W.T for W in layers]) if layers else np.empty((0, bases.shape[0], n_freqs), bases.dtype)
        )
        self.n_iter_ = n_iter
        self.loss_curve_ = loss_curve
        self.loss_ = loss_curve[-1] if loss_curve else None
        self.n_steps_ = n_steps + 1
        self._partial_step = step
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
    def _source_slices(self, n_sources=None):
        R = self.n_components
        n_sources = self.n_sources_ if n_sources is None else n_sources
        return [slice(l * R, (l + 1) * R) for l in range(n_sources)]

    def _n_fixed_iterations(self):
        # Iterations k = 1..K use W^(k-1); W^(K-C+1)..W^K are trained (W^K
        # being the reconstruction), so K - C + 1 iterations use the fixed
        # bases when C >= 1, all K when C = 0.
        C = self._n_trained()
        return self.n_layers - C + 1 if C else self.n_layers

    def _fixed_part(self, X, bases=None, mu=None, scale=1.0):
        """Output of the fixed iterations for every frame, (n_sources * n_components, n_samples).

        Computed ``batch_size`` frames at a time into a :func:`frame_buffer`
        (a temporary file when X is memory mapped), on ``X / scale``.
        ``bases`` and ``mu`` default to ``bases_`` and ``sparsity``.
        """
        bases = self.bases_ if bases is None else bases
        W_fixed = bases.T.astype(X.dtype, copy=False)
        beta1 = beta_loss_to_float(self.beta_loss)
        mu = float(self.sparsity) if mu is None else mu
        n_fixed, exponent = self._n_fixed_iterations(), mm_exponent(beta1)
        chunks = frame_chunks(X.shape[0], self.batch_size)
        H_start = frame_buffer(X.shape[0], W_fixed.shape[1], X.dtype, like=X)

        def one(chunk):
            M_ctx = X[chunk].T if scale == 1.0 else X[chunk].T / scale
            return fixed_activations(M_ctx, W_fixed, n_fixed, beta1, mu, exponent)

        parts = imap_chunks(one, chunks, self.n_jobs)
        for chunk, part in zip(chunks, parts):
            H_start[:, chunk] = part
        return H_start

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
        # Extreme scales: the same network on X / scale (see _scaled_problem).
        scale = safe_scale(X)
        mu, exponent = scaled_sparsity(float(self.sparsity), beta1, scale, X.dtype), mm_exponent(beta1)
        W_fixed = self.bases_.T.astype(X.dtype, copy=False)
        layers = self._layers(X.dtype)
        F = self.n_frequencies_
        n_fixed = self._n_fixed_iterations()
        slices = self._source_slices()

        def one(chunk):
            M_ctx = X[chunk].T if scale == 1.0 else X[chunk].T / scale
            M = M_ctx[-F:]
            H = fixed_activations(M_ctx, W_fixed, n_fixed, beta1, mu, exponent)
            H = trained_forward(M, H, layers, beta1, mu, exponent)
            if output == "activations":
                out = H.T
            else:
                estimates, _, _ = wiener_forward(M, layers[-1], H, slices)
                out = np.hstack([S.T for S in estimates])
            return out if scale == 1.0 else out * scale

        chunks = frame_chunks(X.shape[0], self.batch_size)
        width = self.bases_.shape[0] if output == "activations" else self.n_sources_ * F
        out = np.empty((X.shape[0], width), dtype=X.dtype)
        for chunk, part in zip(chunks, imap_chunks(one, chunks, self.n_jobs)):
            out[chunk] = part
        return out

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


_PARTIAL_FIT_DOC = """Update the trained layers with one mini-batch (mini-batch multiplicative back-propagation).

        For training sets that do not fit in memory or arrive as a stream:
        call it on consecutive batches of frames.

        - The first call sets the network up from its batch exactly as
          :meth:`fit` does: the fixed bases are ``bases`` when given,
          otherwise sparse NMF bases learned on this batch's source spectra
          (so make it a large, representative batch, or learn the bases
          beforehand, e.g. with ``SparseNMF.partial_fit`` per source, and pass
          them as ``bases``); the trained layers start from them.
        - Every call (the first included) then takes one multiplicative
          back-propagation update of the trained layers,
          ``W <- W * ([grad]_- / [grad]_+) ** step`` (eq. 38), with the
          positive and negative gradient parts of this batch's frames only
          (summed ``batch_size`` frames at a time). The update is kept only
          if it does not increase the batch's objective; otherwise ``step``
          is halved and the update retried, and after an accepted update
          the next call starts from twice the accepted ``step`` (at most 1),
          as in fit. ``max_iter`` and ``tol`` are not used.

        One call on all the data equals ``fit`` with ``max_iter=1``; ``k``
        calls on the same data equal ``fit`` with ``max_iter=k, tol=0`` as
        long as every update is accepted. After :meth:`fit`, calls refine the
        fitted layers. ``n_iter_`` counts the accepted updates and
        ``loss_curve_`` gets the objective per frame of each batch after its
        update (different batches, so it need not decrease). An interrupt
        leaves the estimator as it was before the call.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_context * n_frequencies)
            Context-stacked mixture magnitudes of the batch.
        Y : array-like of shape (n_samples, n_sources * n_context * n_frequencies)
            The batch's source magnitudes, stacked like X, source 0 first;
            the same sources in every batch.

        Returns
        -------
        self : object
        """


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
        Frames processed at once, in fit, partial_fit and inference, also by
        the sparse NMF of the bases; bounds the memory of intermediates.
        Results do not depend on it (up to rounding).
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
    n_steps_ : int
        Number of :meth:`partial_fit` calls since the last fit (0 after fit).
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

    @_fit_context(prefer_skip_nested_validation=True)
    @restore_on_interrupt
    def partial_fit(self, X, Y):
        return self._partial_fit(X, Y)

    partial_fit.__doc__ = _PARTIAL_FIT_DOC


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

    @_fit_context(prefer_skip_nested_validation=True)
    @restore_on_interrupt
    def partial_fit(self, X, Y):
        return self._partial_fit(X, Y)

    partial_fit.__doc__ = _PARTIAL_FIT_DOC
