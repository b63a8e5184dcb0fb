"""PhysicsAwareDeepNMF: DeepNMF with the physics-aware options of PAD-NMF."""

import inspect
import time
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._divergences import beta_loss_to_float, mm_exponent
from ._nmf_updates import safe_scale, scaled_sparsity
from ._pad_nmf import BlockHankel, fit_hankel_sparse_nmf, init_hankel_generators, train_pad_layers
from ._unfolded_nmf import fixed_activations, frame_chunks, map_chunks, trained_forward, wiener_forward
from .deep_nmf import _DOC_PARAMS_COMMON, _DOC_REFERENCES, DeepNMF, _BaseUnfoldedNMF
from .sparse_nmf import SparseNMF, check_nmf_input, init_training_activations

# DeepNMF's defaults, so that PhysicsAwareDeepNMF() with the options off is DeepNMF().
_DEEP_DEFAULTS = {name: p.default for name, p in inspect.signature(DeepNMF).parameters.items()}


class PhysicsAwareDeepNMF(_BaseUnfoldedNMF):
    __doc__ = (
        """Deep NMF with the physics-aware options of PAD-NMF (Chinellato & Marcuzzi).

    :class:`DeepNMF` (K unfolded sparse-NMF iterations, the last C layers
    trained by multiplicative back-propagation) plus three options meant for
    signals produced by a physical model, whose clean component has a strong
    time structure [3]_:

    - ``reconstruction_bases``: an *optimal discriminative dictionary*, the
      reconstruction bases ``W^K`` given or learned once and then not
      modified by back-propagation;
    - ``hankel_size``: *block-Hankel weights*: the update layers see the
      context-stacked mixture and every group of ``hankel_size`` consecutive
      atoms is block-Hankel (atom ``j`` is the group's pattern seen ``j``
      frames later), in the fixed bases (learned by a block-Hankel sparse NMF)
      and in the trained layers, kept exactly by projection in the forward
      pass and in the multiplicative back-propagation;
    - ``reconstruction_penalty``: the loss
      ``E = ||S - F o X||^2 + gamma ||S - W_S^K H_S^K||^2``, the Wiener-filter
      error plus ``gamma`` times the direct reconstruction error of the
      target source's part of the last layer.

    With every option off it computes exactly what :class:`DeepNMF` computes.
    See :mod:`sklearn_unfold._pad_nmf` for how the block-Hankel structure is
    read from the slides and the authors' code.

    Parameters
    ----------"""
        + _DOC_PARAMS_COMMON.format(
            n_trained="""n_trained_layers : int, default=2
        Number C of untied layers at the top of the network, counting the
        reconstruction layer W^K; 0 <= C <= K. W^(K-C+1), ..., W^(K-1) are
        trained, and W^K too unless ``reconstruction_bases`` fixes it.
    """
        )
        + """    reconstruction_bases : {'snmf', 'dnmf'} or array-like of shape \
(n_sources * n_components, n_frequencies), default=None
        The discriminative dictionary W^K of the Wiener-like reconstruction
        (eq. 34), excluded from back-propagation. None trains it with the
        other layers (DeepNMF). ``'snmf'``: the last frame of the fixed sparse
        NMF bases (the reconstruction of sparse NMF separation). ``'dnmf'``:
        learned once by a first back-propagation pass that trains W^K alone
        (the other layers at their starting values, i.e. discriminative NMF),
        then kept while the other C - 1 layers are trained in a second pass of
        up to ``max_iter`` updates. An array: these bases, one row per atom,
        source 0 first (e.g. a physically derived dictionary).
    hankel_size : int, default=None
        Number r of consecutive atoms per block-Hankel group (must divide
        ``n_components``); None leaves the weights unstructured. With r set,
        the fixed bases are learned by a block-Hankel sparse NMF (given
        ``bases`` are projected onto the structure) and the trained update
        layers are context layers initialized from them. r = 1 constrains
        nothing.
    context_layers : bool, default=None
        Whether the trained update layers W^(K-C+1), ..., W^(K-1) see the
        context-stacked mixture (weights of n_context * n_frequencies rows,
        the authors' "Context" propagation) instead of the target frame
        alone (DeepNMF). None means True when ``hankel_size`` is set, else
        False; block-Hankel weights need context layers. The reconstruction
        layer W^K always acts on the target frame.
    reconstruction_penalty : float, default=0.0
        Weight gamma of the reconstruction term
        ``gamma sum_l w_l D_2(S_l | W_l^K H_l^K)`` added to the Wiener-filter
        objective (``w_l`` = ``source_weights``, ``D_2`` half the squared
        Euclidean distance, like the default ``target_loss``).
"""
        + """
    Attributes
    ----------
    bases_ : ndarray of shape (n_sources * n_components, n_context * n_frequencies)
        Fixed bases of the first layers (rows), source 0 first: sparse NMF
        bases with unit L2 norm, or, with ``hankel_size``, block-Hankel bases
        whose groups have unit root-mean-square atom norm.
    update_components_ : ndarray of shape (n_trained_layers - 1, n_sources * n_components, n_layer_features)
        Trained update layers W^(K-C+1), ..., W^(K-1) (rows are atoms),
        bottom first; ``n_layer_features`` is n_context * n_frequencies for
        context layers, n_frequencies otherwise. Empty when C <= 1.
    reconstruction_components_ : ndarray of shape (n_sources * n_components, n_frequencies)
        Reconstruction bases W^K of the Wiener-like filter.
    reconstruction_fixed_ : bool
        Whether W^K was excluded from back-propagation.
    context_layers_ : bool
        Whether the update layers are context layers.
    n_sources_ : int
        Number of sources found in Y.
    n_frequencies_ : int
        Frequencies F per frame.
    n_iter_ : int
        Number of accepted multiplicative back-propagation updates (both
        passes with ``reconstruction_bases='dnmf'``).
    loss_curve_ : list of float
        Training objective per frame (Wiener term plus reconstruction
        penalty) at the start and after each update; non-increasing.
    loss_ : float or None
        Final training objective per frame (None when nothing is trained).
    n_params_ : dict
        Free parameters in all the network's matrices (``'total'``; a
        block-Hankel group counts its generator only) and in the trained ones
        (``'trained'``).
    n_features_in_ : int
        Number of columns of X seen in fit.

    See Also
    --------
    DeepNMF : the network without the physics-aware options.
    DiscriminativeNMF : one trained layer.
"""
        + _DOC_REFERENCES
        + """    .. [3] E. Chinellato, F. Marcuzzi, "Physics-Aware Deep Nonnegative Matrix
       Factorization (PAD-NMF)", slides, University of Padova, February 2024;
       MATLAB code: github.com/ErikChinellato/PhD, folder DNMF.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.audio import stack_context
    >>> from sklearn_unfold.pad_nmf import PhysicsAwareDeepNMF
    >>> rng = np.random.default_rng(0)
    >>> S1, S2 = rng.random((200, 6)), rng.random((200, 6))
    >>> X = stack_context(S1 + S2, 3)
    >>> Y = np.hstack([stack_context(S1, 3), stack_context(S2, 3)])
    >>> model = PhysicsAwareDeepNMF(n_components=4, n_layers=4, n_context=3, hankel_size=2,
    ...                             reconstruction_bases="snmf", reconstruction_penalty=0.5,
    ...                             max_iter=10, tol=0.0, bases_max_iter=20, random_state=0).fit(X, Y)
    >>> model.predict(X).shape
    (200, 12)
    >>> model.update_components_.shape
    (1, 8, 18)
    """
    )

    _parameter_constraints: dict = {
        **DeepNMF._parameter_constraints,
        "reconstruction_bases": [StrOptions({"snmf", "dnmf"}), "array-like", None],
        "hankel_size": [Interval(Integral, 1, None, closed="left"), None],
        "context_layers": ["boolean", None],
        "reconstruction_penalty": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_components=_DEEP_DEFAULTS["n_components"],
        *,
        n_layers=_DEEP_DEFAULTS["n_layers"],
        n_trained_layers=_DEEP_DEFAULTS["n_trained_layers"],
        n_context=_DEEP_DEFAULTS["n_context"],
        sparsity=_DEEP_DEFAULTS["sparsity"],
        beta_loss=_DEEP_DEFAULTS["beta_loss"],
        target_loss=_DEEP_DEFAULTS["target_loss"],
        source_weights=None,
        max_iter=_DEEP_DEFAULTS["max_iter"],
        tol=_DEEP_DEFAULTS["tol"],
        bases_max_iter=_DEEP_DEFAULTS["bases_max_iter"],
        bases=None,
        reconstruction_bases=None,
        hankel_size=None,
        context_layers=None,
        reconstruction_penalty=0.0,
        batch_size=_DEEP_DEFAULTS["batch_size"],
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
        self.reconstruction_bases = reconstruction_bases
        self.hankel_size = hankel_size
        self.context_layers = context_layers
        self.reconstruction_penalty = reconstruction_penalty
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def _n_trained(self):
        return self.n_trained_layers

    # ------------------------------------------------------------------ fit
    def _check_options(self):
        """Option combinations the parameter constraints cannot express."""
        if self.hankel_size is not None:
            if self.n_components % self.hankel_size:
                raise ValueError(
                    f"hankel_size={self.hankel_size} must divide n_components={self.n_components}: "
                    "each source's atoms are split into block-Hankel groups of hankel_size atoms."
                )
            if self.context_layers is False:
                raise ValueError(
                    "hankel_size needs context_layers=True (or None): block-Hankel weights relate the "
                    "context frames of an atom, which single-frame layers do not have."
                )
        return self.hankel_size is not None if self.context_layers is None else bool(self.context_layers)

    def _hankel(self, n_freqs):
        return None if self.hankel_size is None else BlockHankel(self.n_context, n_freqs, self.hankel_size)

    def _learn_bases(self, Y, n_sources, n_features, n_freqs, beta1, rng, start, mu):
        """Fixed bases per source: sparse NMF, or block-Hankel sparse NMF."""
        hankel = self._hankel(n_freqs)
        if self.bases is not None:
            bases = self._check_given_bases(n_sources, n_features, Y.dtype)
            if hankel is not None:
                bases = hankel.project(np.ascontiguousarray(bases.T)).T
            return np.ascontiguousarray(bases)
        bases = []
        for l in range(n_sources):
            seed = rng.randint(np.iinfo(np.int32).max)
            V = Y[:, l * n_features : (l + 1) * n_features]
            if hankel is None:
                snmf = SparseNMF(
                    n_components=self.n_components,
                    beta_loss=beta1,
                    sparsity=mu,
                    max_iter=self.bases_max_iter,
                    tol=1e-4,
                    init="exemplar",
                    random_state=seed,
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    snmf.fit(V)
                bases.append(snmf.components_)
                n_iter = snmf.n_iter_
            else:
                source_rng = check_random_state(seed)
                M = np.ascontiguousarray(V.T)
                gen = init_hankel_generators(hankel, M, self.n_components, source_rng)
                H = init_training_activations(M, hankel.expand(gen), source_rng)
                gen, _, n_iter, _ = fit_hankel_sparse_nmf(
                    hankel, M, gen, H, beta=beta1, mu=mu, max_iter=self.bases_max_iter, tol=1e-4
                )
                bases.append(hankel.expand(gen).T)
            self._log(f"source {l}: bases after {n_iter} iterations ({time.perf_counter() - start:.1f} s)")
        return np.ascontiguousarray(np.vstack(bases))

    def _given_reconstruction(self, n_sources, n_freqs, dtype):
        W = check_array(self.reconstruction_bases, dtype=dtype, copy=True, input_name="reconstruction_bases")
        expected = (n_sources * self.n_components, n_freqs)
        if W.shape != expected:
            raise ValueError(
                f"reconstruction_bases has shape {W.shape}; expected {expected} = (n_sources * "
                "n_components, n_frequencies): one row per reconstruction atom, source 0 first."
            )
        check_nmf_input(W, 1.0, f"{type(self).__name__} (reconstruction_bases)")
        return W


    def _training_passes(self, n_trained):
        """Which layers each back-propagation pass trains (update layers..., W^K)."""
        n_update = max(n_trained - 1, 0)
        option = self.reconstruction_bases
        if isinstance(option, str) and option == "dnmf":
            first = [(False,) * n_update + (True,)]
            return first + ([(True,) * n_update + (False,)] if n_update else [])
        if option is not None:
            return [(True,) * n_update + (False,)] if n_update else []
        return [(True,) * n_trained] if n_trained else []

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, Y):
        """Learn the fixed bases per source, then train the untied layers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_context * n_frequencies)
            Context-stacked mixture magnitudes: row t holds frames
            t - n_context + 1, ..., t, the target frame last.
        Y : array-like of shape (n_samples, n_sources * n_context * n_frequencies)
            The sources' magnitudes, each stacked exactly like X and placed
            side by side (source 0 first). The context-stacked spectra train
            the fixed bases; the last frame of each source is the target.

        Returns
        -------
        self : object
        """
        X, Y = validate_data(self, X, Y, multi_output=True, y_numeric=True, dtype=[np.float64, np.float32])
        Y = check_array(Y, dtype=X.dtype, ensure_2d=False)
        C = self.n_trained_layers
        if C > self.n_layers:
            raise ValueError(
                f"n_trained_layers={C} cannot exceed n_layers={self.n_layers}: the trained "
                "layers are the last ones of the unfolded network."
            )
        name = type(self).__name__
        beta1 = beta_loss_to_float(self.beta_loss)
        beta2 = beta_loss_to_float(self.target_loss)
        check_nmf_input(X, beta1, f"{name} (input X)")
        check_nmf_input(Y, min(beta1, beta2), f"{name} (input Y)")
        n_sources, weights = self._validate_targets(X, Y)
        context = self._check_options()
        # Extreme scales: train the same network on X / scale (as DeepNMF does;
        # see _nmf_updates.safe_scale). The layers do not depend on the scale.
        scale = safe_scale(X)
        mu = scaled_sparsity(float(self.sparsity), beta1, scale, X.dtype)
        if scale != 1.0:
            X, Y = X / scale, Y / scale
        n_features = X.shape[1]
        F = n_features // self.n_context
        option = self.reconstruction_bases
        given_out = None
        if option is not None and not isinstance(option, str):
            given_out = self._given_reconstruction(n_sources, F, X.dtype)
        rng = check_random_state(self.random_state)
        start = time.perf_counter()

        # 1. Fixed bases of the first layers (sparse NMF or block-Hankel sparse NMF).
        self.bases_ = self._learn_bases(Y, n_sources, n_features, F, beta1, rng, start, mu).astype(X.dtype, copy=False)
        self.n_sources_ = n_sources
        self.n_frequencies_ = F
        self.context_layers_ = context
        self.reconstruction_fixed_ = option is not None
        self._weights = weights

        # 2. Untied layers start from the bases (all their frames for context layers).
        start_update = np.ascontiguousarray((self.bases_ if context else self.bases_[:, -F:]).T)
        updates = [start_update.copy() for _ in range(max(C - 1, 0))]
        W_out = np.ascontiguousarray(self.bases_[:, -F:].T) if given_out is None else np.ascontiguousarray(given_out.T)
        self.n_iter_ = 0
        self.loss_curve_ = []
        passes = self._training_passes(C)
        if passes:
            H_start = self._fixed_part(X, mu=mu)
            self._log(f"fixed layers computed ({time.perf_counter() - start:.1f} s)")
            M = X[:, -F:].T
            target = n_features - F
            sources = [Y[:, l * n_features + target : (l + 1) * n_features].T for l in range(n_sources)]
            hankel = self._hankel(F)
            structures = [hankel] * len(updates) + [None]
            for trainable in passes:
                layers, n_iter, loss_curve = train_pad_layers(
                    X.T if context else M,
                    M,
                    sources,
                    H_start,
                    updates + [W_out],
                    self._source_slices(),
                    weights,
                    trainable=trainable,
                    structures=structures,
                    gamma=float(self.reconstruction_penalty),
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
                )
                updates, W_out = layers[:-1], layers[-1]
                self.n_iter_ += n_iter
                # A later pass starts where the previous one ended.
                self.loss_curve_ += loss_curve[1:] if self.loss_curve_ else loss_curve
            if n_iter == self.max_iter and self.tol > 0 and self.max_iter > 0:
                warnings.warn(
                    f"{name}: maximum number of iterations {self.max_iter} reached; increase max_iter "
                    "to improve convergence.",
                    ConvergenceWarning,
                )
        n_rows = n_features if context else F
        if updates:
            self.update_components_ = np.ascontiguousarray(np.stack([W.T for W in updates]))
        else:
            self.update_components_ = np.empty((0, self.bases_.shape[0], n_rows), X.dtype)
        self.reconstruction_components_ = np.ascontiguousarray(W_out.T)
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else None
        self._log(f"done in {time.perf_counter() - start:.1f} s")
        return self

    # ------------------------------------------------------------ inference
    def _forward(self, X, output):
        """Run the network on X chunk by chunk.

        ``output`` is 'activations' (H^K), 'sources' (Wiener filter, eq. 34)
        or 'reconstruction' (W_l^K H_l^K).
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        beta1 = beta_loss_to_float(self.beta_loss)
        check_nmf_input(X, beta1, f"{type(self).__name__} (input X)")
        scale = safe_scale(X)
        mu, exponent = scaled_sparsity(float(self.sparsity), beta1, scale, X.dtype), mm_exponent(beta1)
        W_fixed = self.bases_.T.astype(X.dtype, copy=False)
        # Same memory layout as in training, so that the products round the same way.
        layers = [np.ascontiguousarray(W.T, dtype=X.dtype) for W in self.update_components_]
        layers.append(np.ascontiguousarray(self.reconstruction_components_.T, dtype=X.dtype))
        F = self.n_frequencies_
        n_fixed = self._n_fixed_iterations()
        slices = self._source_slices()
        context = self.context_layers_

        def one(chunk):
            M_ctx = X[chunk].T if scale == 1.0 else X[chunk].T / scale
            M = M_ctx[-F:]
            H = fixed_activations(M_ctx, W_fixed, n_fixed, beta1, mu, exponent)
            H = trained_forward(M_ctx if context else M, H, layers, beta1, mu, exponent)
            if output == "activations":
                out = H.T
            elif output == "sources":
                out = np.hstack([S.T for S in wiener_forward(M, layers[-1], H, slices)[0]])
            else:
                out = np.hstack([(layers[-1][:, sl] @ H[sl]).T for sl in slices])
            return out if scale == 1.0 else out * scale

        parts = map_chunks(one, frame_chunks(X.shape[0], self.batch_size), self.n_jobs)
        return np.ascontiguousarray(np.vstack(parts))

    def reconstruct(self, X):
        """Direct reconstructions ``W_l^K H_l^K`` of each source's target frame.

        The quantity the reconstruction penalty trains (not constrained to sum
        to the mixture, unlike :meth:`predict`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_context * n_frequencies)

        Returns
        -------
        Y_rec : ndarray of shape (n_samples, n_sources * n_frequencies)
        """
        return self._forward(X, "reconstruction")

    @property
    def n_params_(self):
        """Free parameters of the network and of its trained part (see Attributes)."""
        check_is_fitted(self)
        hankel = self._hankel(self.n_frequencies_)

        def free(W):
            if hankel is None or W.shape[-1] != hankel.n_context * hankel.n_freqs:
                return W.size
            return hankel.n_groups(W.shape[0]) * hankel.n_lags * hankel.n_freqs

        option = self.reconstruction_bases
        is_str = isinstance(option, str)
        updates = sum(free(W) for W in self.update_components_)
        # W^K is the bases' last frame (no parameters of its own) for C = 0 and for 'snmf'.
        own_out = not ((option is None and self.n_trained_layers == 0) or (is_str and option == "snmf"))
        trained_out = (option is None and self.n_trained_layers > 0) or (is_str and option == "dnmf")
        out = self.reconstruction_components_.size
        return {
            "total": int(free(self.bases_) + updates + (out if own_out else 0)),
            "trained": int(updates + (out if trained_out else 0)),
        }
