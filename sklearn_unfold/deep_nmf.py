"""DeepNMF and DiscriminativeNMF: sparse NMF inference unfolded into a network.

The estimators validate, delegate to :mod:`._nmf` and set their fitted
attributes at the very end; :class:`~sklearn_unfold.PhysicsAwareDeepNMF`
reuses everything here and only adds its options.
"""

import time
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, RegressorMixin, TransformerMixin
from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit
from sklearn.utils import check_array, check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _array_api as aa
from ._compat import Interval, StrOptions, _fit_context
from ._docstrings import fill_doc
from ._fitting import N_JOBS_CONSTRAINT, transactional_fit, warn_not_converged
from ._nmf import layout
from ._nmf.divergences import _BETA_LOSS_NAMES, beta_loss_to_float
from ._nmf.network import NetworkSpec, fixed_part, run_network
from ._nmf.scaling import data_level, relative_sparsity, safe_scale, scale_power
from ._nmf.trainer import TrainingProblem, train_layers, train_step
from ._nmf.updates import learn_sparse_nmf
from ._nmf.validation import check_given_matrix, check_nmf_input, check_source_weights
from .metrics import magnitude_sdr

__all__ = ["DeepNMF", "DiscriminativeNMF"]

_BETA = [StrOptions(set(_BETA_LOSS_NAMES)), Interval(Real, 0, None, closed="left")]

# Shared docstring entries (see _docstrings.fill_doc).
DOCS = {
    "n_components": """
n_components : int, default=100
    Number of bases R per source.""",
    "n_layers": """
n_layers : int, default=25
    Number of unfolded multiplicative-update iterations K.""",
    "n_trained_layers": """
n_trained_layers : int, default=2
    Number C of trained layers, counting the reconstruction layer;
    0 <= C <= K. The matrices W^(K-C+1), ..., W^K of eq. 62-63 are trained.""",
    "common_params": """
n_context : int, default=9
    Number T of stacked frames in X (left context ending with the target frame).
sparsity : float, default=3.0
    L1 weight of the inference objective (eq. 32), also used to train the
    bases, relative to the level of the data so that it means the same for
    any data scale: the weight used is
    ``mu = sparsity * data_level_ ** (beta_loss - 1)``, with ``data_level_``
    the mean of X in fit. Scaling X and y by any factor then scales the
    predictions by that factor, and a search over ``sparsity`` chooses the
    same value. For the default Kullback-Leibler divergence (beta = 1) the
    objective is scale-equivariant by itself and ``mu = sparsity``. The
    default 3 was chosen among 0.3, 1, 3, 10 and 30 by 3-fold
    ``GroupKFold`` cross-validation on the training utterances of
    ``benchmarks/speech_enhancement.py`` (K = 25, C = 1, R = 100); the
    paper uses 5 on its features.
beta_loss : float or {'kullback-leibler', 'frobenius', 'itakura-saito'}, default='kullback-leibler'
    Divergence beta1 of the inference objective, i.e. of the layer updates
    (eq. 33). The paper uses KL (1).
target_loss : float or {'frobenius', 'kullback-leibler', 'itakura-saito'}, default='frobenius'
    Divergence beta2 of the training objective (eq. 37). The paper uses 2.
source_weights : array-like of shape (n_sources,), default=None
    Weights gamma_l of each source in the training objective. None trains
    for source 0 only (weights (1, 0, ...)), as the paper does for speech.
max_iter : int, default=2000
    Maximum number of multiplicative back-propagation updates. Enough for
    the fits of the speech benchmark to stop by ``tol`` (K = 25, R = 100,
    10 000 frames, sparsity 3: C = 2 after 1 156 updates, C = 3 after 764;
    C = 1 at sparsity 1 after 77); ``early_stopping`` usually stops sooner.
tol : float, default=1e-4
    Stop when an update lowers the training objective by less than ``tol``
    times its value; with ``early_stopping``, the relative improvement of
    the held-out objective that counts as an improvement.
early_stopping : bool, default=False
    Hold out ``validation_fraction`` of the frames (whole utterances when
    ``groups`` is passed to :meth:`fit`) and stop training the layers when
    their objective on these frames has not improved by ``tol`` for
    ``n_iter_no_change`` updates; the layers with the best held-out
    objective are kept. The bases are learned on the other frames only.
    Not used by :meth:`partial_fit`.
validation_fraction : float, default=0.1
    Fraction of the frames (or of the groups) held out for early stopping.
n_iter_no_change : int, default=10
    Updates without improvement of the held-out objective before stopping
    (early stopping only).
bases_max_iter : int, default=100
    Iterations of the sparse NMF that trains the fixed bases of each source.
bases : array-like of shape (n_sources * n_components, n_context * n_frequencies), default=None
    Fixed bases to use instead of training them, e.g. the ``bases_`` of
    another fitted model: they do not depend on ``n_layers`` or
    ``n_trained_layers``, so a grid search over those can share them.
    Used as given (rows should have unit L2 norm, source 0 first).""",
    "runtime_params": """
batch_size : int, default=1024
    Frames processed at once, in fit, partial_fit and inference, also by
    the sparse NMF of the bases; bounds the memory of intermediates.
    Results do not depend on it (up to rounding). Read at call time by
    predict and transform, like ``n_jobs``. The default keeps a chunk's
    per-frequency arrays in a core's cache: on the paper's topology (one
    thread, ``benchmarks/bench_training.py --batch-size``) a training epoch
    takes 14 % less time than with 4096 frames, inference 4 % less.
n_jobs : int, default=None
    Threads that process chunks of frames in parallel (joblib; -1 uses all
    cores; 0 is refused). Results do not depend on it.
random_state : int, RandomState instance or None, default=None
    Seeds the exemplar initialization of the bases. An int gives
    bit-identical results.
verbose : int, default=0
    Print progress of the base training and of every update.""",
    "attributes": """
bases_ : ndarray of shape (n_sources * n_components, n_context * n_frequencies)
    Fixed sparse NMF bases (rows, unit L2 norm), source 0 first, used by
    the first layers on the context-stacked mixture.
n_sources_ : int
    Number of sources found in y.
n_frequencies_ : int
    Frequencies F per frame.
n_iter_ : int
    Number of accepted multiplicative back-propagation updates (with
    early stopping, all of them, including those after the kept layers).
loss_curve_ : list of float
    Training objective per frame, in the units of the data, at the start
    and after each update; non-increasing.
loss_ : float or None
    Final training objective per frame (None when nothing is trained).
n_params_ : dict
    Total and discriminatively trained parameter counts (P and P_D).
n_steps_ : int
    Number of :meth:`partial_fit` calls since the last fit (0 after fit).
data_level_ : float
    Mean of X in fit (of the first batch for :meth:`partial_fit`): the
    level ``sparsity`` is relative to.
validation_loss_curve_ : list of float or None
    With ``early_stopping``: the objective per frame on the held-out frames
    at the start and after each update; None otherwise.
best_validation_loss_ : float or None
    With ``early_stopping``: the best held-out objective per frame, that
    of the kept layers; None otherwise.
n_features_in_ : int
    Number of columns of X seen in fit.""",
    "fit_params": """
X : array-like of shape (n_samples, n_context * n_frequencies)
    Context-stacked mixture magnitudes: row t holds frames
    t - n_context + 1, ..., t, the target frame last.
y : array-like of shape (n_samples, n_sources * n_context * n_frequencies)
    The sources' magnitudes, each stacked exactly like X and placed side
    by side (source 0 first, e.g. speech, then noise). The context-stacked
    spectra train the fixed bases (paper sec. 5.4); the last frame of each
    source is the training target.""",
    "references": """
.. [1] J. R. Hershey, J. Le Roux, F. Weninger, "Deep unfolding: model-based
   inspiration of novel deep architectures", 2014, sec. 4, 5.4, appendix D.
.. [2] F. Weninger, J. Le Roux, J. R. Hershey, S. Watanabe, "Discriminative
   NMF and its application to single-channel source separation",
   Interspeech 2014.""",
}


def _partial_fit_available(estimator):
    return estimator._supports_partial_fit()


@fill_doc(DOCS)
class DeepNMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, RegressorMixin, BaseEstimator):
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

    A fit is a transaction: an exception or an interrupt before training
    leaves the estimator exactly as it was; Ctrl-C during the training of
    the layers keeps the last accepted update with a
    :class:`~sklearn_unfold.exceptions.FitInterruptedWarning`.

    Parameters
    ----------
    %(n_components)s
    %(n_layers)s
    %(n_trained_layers)s
    %(common_params)s
    %(runtime_params)s

    Attributes
    ----------
    %(attributes)s
    trained_components_ : ndarray of shape (n_trained_layers, n_sources * n_components, n_frequencies)
        Discriminatively trained single-frame bases, bottom layer first; the
        last one is the reconstruction (Wiener filter) layer.

    See Also
    --------
    DiscriminativeNMF : the special case of one trained layer.
    PhysicsAwareDeepNMF : with the options of PAD-NMF.
    SparseNMF : the model whose inference is unfolded.

    References
    ----------
    %(references)s

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold import DeepNMF
    >>> rng = np.random.default_rng(0)
    >>> S1, S2 = rng.random((200, 6)), rng.random((200, 6))
    >>> X, y = S1 + S2, np.hstack([S1, S2])
    >>> model = DeepNMF(n_components=3, n_layers=4, n_trained_layers=2, n_context=1,
    ...                 sparsity=0.0, max_iter=20, random_state=0).fit(X, y)
    >>> model.predict(X).shape
    (200, 12)
    >>> bool(model.loss_curve_[-1] <= model.loss_curve_[0])
    True
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "n_layers": [Interval(Integral, 1, None, closed="left")],
        "n_trained_layers": [Interval(Integral, 0, None, closed="left")],
        "n_context": [Interval(Integral, 1, None, closed="left")],
        "sparsity": [Interval(Real, 0, None, closed="left")],
        "beta_loss": _BETA,
        "target_loss": _BETA,
        "source_weights": ["array-like", None],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "bases_max_iter": [Interval(Integral, 1, None, closed="left")],
        "bases": ["array-like", None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": N_JOBS_CONSTRAINT,
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_components=100,
        *,
        n_layers=25,
        n_trained_layers=2,
        n_context=9,
        sparsity=3.0,
        beta_loss="kullback-leibler",
        target_loss="frobenius",
        source_weights=None,
        max_iter=2000,
        tol=1e-4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        bases_max_iter=100,
        bases=None,
        batch_size=1024,
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
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.bases_max_iter = bases_max_iter
        self.bases = bases
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------- hooks of subclasses
    def _check_options(self, n_sources, n_frequencies, dtype):
        """Option combinations the parameter constraints cannot express; the options to fit with."""
        return {"context_layers": False}

    def _learn_bases(self, y, spec, n_features, dtype, rng, options):
        """Stage 1: sparse NMF bases per source on its context-stacked spectra (sec. 5.3)."""
        if self.bases is not None:
            return self._given_bases(spec, n_features, dtype, like=y)
        start = time.perf_counter()
        bases = []
        for l in range(spec.n_sources):
            W, n_iter, _ = learn_sparse_nmf(
                layout.source_block(y, n_features, l),
                spec.n_components,
                beta=spec.beta,
                sparsity=spec.sparsity,
                init="exemplar",
                random_state=rng.randint(np.iinfo(np.int32).max),
                max_iter=self.bases_max_iter,
                tol=1e-4,
                batch_size=self.batch_size,
            )
            bases.append(W.T)
            self._log(f"source {l}: sparse NMF bases after {n_iter} iterations ({time.perf_counter() - start:.1f} s)")
        xp = aa.get_namespace(y)
        return aa.ascontiguous(aa.vstack(bases, xp), xp, dtype=dtype)

    def _layer_plan(self, bases, spec, options):
        """Starting layers, the training passes (which layers each trains) and their structures."""
        xp = aa.get_namespace(bases)
        init = aa.ascontiguous(bases[:, -spec.n_frequencies :].T, xp)
        if spec.n_trained == 0:
            return [init], [], [None]
        layers = [aa.copy(init, xp) for _ in range(spec.n_trained)]
        return layers, [[True] * spec.n_trained], [None] * spec.n_trained

    def _fitted_layers(self, layers, spec, options):
        """Fitted attributes holding the layers (set at the end of fit)."""
        xp = aa.get_namespace(layers[0])
        if spec.n_trained == 0:
            shape = (0, spec.n_sources * spec.n_components, spec.n_frequencies)
            trained = np.empty(shape, layers[0].dtype) if aa.is_numpy(xp) else (
                xp.empty(shape, dtype=layers[0].dtype, device=aa.device(layers[0]))
            )
        else:
            trained = xp.stack([W.T for W in layers])
        return {"trained_components_": trained}

    def _inference_layers(self):
        """The layers for inference, read from the fitted attributes only."""
        xp = aa.get_namespace(self.bases_)
        if self.trained_components_.shape[0]:
            return [aa.ascontiguous(self.trained_components_[i, ...].T, xp) for i in range(self.trained_components_.shape[0])]
        return [aa.ascontiguous(self.bases_[:, -self.n_frequencies_ :].T, xp)]

    def _supports_partial_fit(self):
        return True

    # ----------------------------------------------------------------- fit
    def _log(self, message):
        if self.verbose:
            print(f"[{type(self).__name__}] {message}", flush=True)

    def _given_bases(self, spec, n_features, dtype, like=None):
        return check_given_matrix(
            self.bases,
            (spec.n_sources * spec.n_components, n_features),
            dtype,
            name="bases",
            meaning="(n_sources * n_components, n_features_in), e.g. the bases_ of a model fitted on the same "
            "kind of data",
            whom=type(self).__name__,
            like=like,
        )

    def _check_fit_data(self, X, y, reset):
        """Validated X, y and what they define: the network spec, source weights, target beta, options."""
        xp = aa.get_namespace(X, y)
        X, y = validate_data(self, X, y, reset=reset, multi_output=True, y_numeric=True, dtype=[xp.float64, xp.float32])
        y = check_array(y, dtype=X.dtype, ensure_2d=False, input_name="y")
        if self.n_trained_layers > self.n_layers:
            raise ValueError(
                f"n_trained_layers={self.n_trained_layers} cannot exceed n_layers={self.n_layers}: the "
                "trained layers are the last ones of the unfolded network."
            )
        name = type(self).__name__
        beta1 = beta_loss_to_float(self.beta_loss)
        beta2 = beta_loss_to_float(self.target_loss)
        check_nmf_input(X, beta1, f"{name} (input X)")
        # Zeros in y are fine unless a divergence with beta <= 0 meets them
        # (bases are trained on y with beta1; the target loss uses beta2).
        check_nmf_input(y, min(beta1, beta2), f"{name} (input y)")
        n_features = X.shape[1]
        n_freqs = layout.n_frequencies_of(n_features, self.n_context)
        n_sources = layout.n_sources_of(y, n_features)
        weights = check_source_weights(self.source_weights, n_sources)
        options = self._check_options(n_sources, n_freqs, X.dtype)
        options["data_level"] = level = data_level(X)
        spec = NetworkSpec(
            n_layers=int(self.n_layers),
            n_trained=int(self.n_trained_layers),
            n_context=int(self.n_context),
            n_frequencies=n_freqs,
            n_components=int(self.n_components),
            n_sources=n_sources,
            beta=beta1,
            sparsity=relative_sparsity(self.sparsity, beta1, level, X.dtype),
            context_layers=options["context_layers"],
        )
        return X, y, spec, weights, beta2, options

    def _training_problem(self, X, y, bases, spec, weights, target_beta, options):
        """The training problem on data divided by :func:`~._nmf.scaling.safe_scale` (1 in range).

        The network is scale-equivariant (eq. 33 and 34 with the sparsity
        rescaled), and the multiplicative updates of the trained layers only
        see ratios of gradient parts, which all scale alike: training on the
        rescaled data gives the same layers, without overflow or underflow
        at extreme scales. Returns the problem and the scale.
        """
        scale = safe_scale(X)
        n_features = X.shape[1]
        F = spec.n_frequencies
        H_start = fixed_part(spec, bases.T, X, scale=scale, batch_size=self.batch_size, n_jobs=self.n_jobs)
        M = layout.mixture_targets(X, F, contiguous=True)
        sources = layout.source_targets(y, n_features, F, spec.n_sources, contiguous=True)
        # Context layers see the whole context-stacked mixture, the others its target frames.
        context = layout.mixture_targets(X, n_features, contiguous=True) if spec.context_layers else None
        if scale != 1.0:
            M, sources = M / scale, [S / scale for S in sources]
            context = None if context is None else context / scale
        M_layers = M if context is None else context
        problem = TrainingProblem(
            spec=spec,
            M_layers=M_layers,
            M=M,
            sources=sources,
            H_start=H_start,
            mu=spec.mu(scale, X.dtype),
            weights=weights,
            target_beta=target_beta,
            gamma=float(options.get("reconstruction_penalty", 0.0)),
        )
        return problem, scale

    @fill_doc(DOCS)
    @_fit_context(prefer_skip_nested_validation=True)
    @transactional_fit
    def fit(self, X, y, groups=None):
        """Train sparse-NMF bases per source, then the last layers discriminatively.

        Memory: X and y may be ``numpy.memmap`` arrays; they are read
        ``batch_size`` frames at a time, and the state kept for every frame
        (sparse NMF activations, output of the fixed layers) then goes to a
        temporary file, so memory does not grow with the number of frames.

        Data far from unit scale (e.g. float32 at 1e30) is trained on as the
        equivalent problem on ``X / s``, ``s`` a power of two, as
        :class:`SparseNMF` does; predictions are mapped back exactly.

        The fit is a transaction. Interrupting (``KeyboardInterrupt``) while
        the layers are trained stops with a
        :class:`~sklearn_unfold.exceptions.FitInterruptedWarning` and keeps
        the layers of the last accepted update, as scikit-learn's
        ``MLPClassifier`` does; an interrupt before (while the bases are
        learned), or any exception, leaves the estimator exactly as it was
        before the call.

        Parameters
        ----------
        %(fit_params)s
        groups : array-like of shape (n_samples,), default=None
            Group (e.g. utterance) of each frame; with ``early_stopping``,
            whole groups are held out, so that frames of one utterance are
            not on both sides. Not used otherwise. Under scikit-learn's
            metadata routing, request it with ``set_fit_request(groups=True)``
            to receive the groups a ``GroupKFold`` search splits by.

        Returns
        -------
        self : object
        """
        X, y, spec, weights, target_beta, options = self._check_fit_data(X, y, reset=True)
        name = type(self).__name__
        rng = check_random_state(self.random_state)
        start = time.perf_counter()
        validation_rows = None
        if self.early_stopping and self.max_iter > 0:
            train_rows, validation_rows = self._validation_split(X.shape[0], groups, rng)
            bases = self._learn_bases(aa.take(y, train_rows, axis=0), spec, X.shape[1], X.dtype, rng, options)
        else:
            bases = self._learn_bases(y, spec, X.shape[1], X.dtype, rng, options)
        layers, passes, structures = self._layer_plan(bases, spec, options)
        n_iter, loss_curve, validation_curve = 0, [], None
        if passes:
            problem, scale = self._training_problem(X, y, bases, spec, weights, target_beta, options)
            validation = None
            if validation_rows is not None:
                problem, validation = problem.frames(train_rows), problem.frames(validation_rows)
            self._log(f"fixed layers computed ({time.perf_counter() - start:.1f} s)")
            for trainable in passes:
                layers, pass_iter, curve, interrupted, pass_validation, _ = train_layers(
                    problem,
                    layers,
                    trainable=trainable,
                    structures=structures,
                    max_iter=self.max_iter,
                    tol=self.tol,
                    batch_size=self.batch_size,
                    n_jobs=self.n_jobs,
                    verbose=self.verbose,
                    name=name,
                    stop_on_interrupt=True,
                    validation=validation,
                    n_iter_no_change=self.n_iter_no_change,
                )
                n_iter += pass_iter
                # A later pass starts where the previous one ended (with the kept layers).
                loss_curve += curve[1:] if loss_curve else curve
                if validation is not None:
                    validation_curve = validation_curve + pass_validation[1:] if validation_curve else pass_validation
                if interrupted:
                    break
            stops_itself = self.tol > 0 or validation is not None
            if not interrupted and pass_iter == self.max_iter and self.max_iter > 0 and stops_itself:
                warn_not_converged(name, self.max_iter)
            # The objectives of X are scale**beta2 times those of X / scale.
            factor = scale_power(scale, target_beta)
            loss_curve = [loss * factor for loss in loss_curve]
            if validation_curve is not None:
                validation_curve = [loss * factor for loss in validation_curve]
        # Everything is computed; only now does the estimator change.
        self._set_fitted(
            bases, layers, spec, weights, options, n_iter, loss_curve, n_steps=0, step=1.0,
            validation_curve=validation_curve,
        )
        self._log(f"done in {time.perf_counter() - start:.1f} s")
        return self

    def _validation_split(self, n_samples, groups, rng):
        """Training and held-out rows for early stopping (whole groups held out when given)."""
        seed = rng.randint(np.iinfo(np.int32).max)
        fraction = self.validation_fraction
        if groups is None:
            if n_samples < 2:
                raise ValueError(f"early_stopping needs at least 2 frames to hold some out; got {n_samples}.")
            splitter, split_groups = ShuffleSplit(1, test_size=fraction, random_state=seed), None
        else:
            split_groups = check_array(groups, ensure_2d=False, dtype=None, input_name="groups")
            if split_groups.ndim != 1 or split_groups.shape[0] != n_samples:
                raise ValueError(
                    f"groups must have one entry per frame, shape ({n_samples},); got shape {split_groups.shape}."
                )
            n_groups = np.unique(split_groups).shape[0]
            if n_groups < 2:
                raise ValueError(
                    f"early_stopping holds out whole groups and needs at least 2 of them; groups has {n_groups}."
                )
            splitter = GroupShuffleSplit(1, test_size=fraction, random_state=seed)
        train, held_out = next(splitter.split(np.empty((n_samples, 1)), groups=split_groups))
        if train.size == 0 or held_out.size == 0:
            raise ValueError(
                f"validation_fraction={fraction} leaves {'no training' if train.size == 0 else 'no held-out'} "
                "frames; change validation_fraction or pass more data."
            )
        return np.sort(train), np.sort(held_out)

    def _set_fitted(
        self, bases, layers, spec, weights, options, n_iter, loss_curve, *, n_steps, step, validation_curve=None
    ):
        fitted = {
            "bases_": aa.ascontiguous(bases, aa.get_namespace(bases)),
            "n_sources_": spec.n_sources,
            "n_frequencies_": spec.n_frequencies,
            "n_iter_": n_iter,
            "loss_curve_": loss_curve,
            "loss_": loss_curve[-1] if loss_curve else None,
            "n_steps_": n_steps,
            "data_level_": options["data_level"],
            "validation_loss_curve_": validation_curve,
            "best_validation_loss_": None if validation_curve is None else min(validation_curve),
            **self._fitted_layers(layers, spec, options),
            # Private fitted state: what inference and partial_fit need.
            "_spec_": spec,
            "_weights_": weights,
            "_options_": options,
            "_partial_step_": step,
        }
        for key, value in fitted.items():
            setattr(self, key, value)

    @available_if(_partial_fit_available)
    @_fit_context(prefer_skip_nested_validation=True)
    @transactional_fit(reset=False)
    def partial_fit(self, X, y):
        """Update the trained layers with one mini-batch (mini-batch multiplicative back-propagation).

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
        fitted layers; the network (K, C, sparsity, ...) stays the fitted
        one. ``n_iter_`` counts the accepted updates and ``loss_curve_`` gets
        the objective per frame of each batch after its update (different
        batches, so it need not decrease). An exception or interrupt leaves
        the estimator exactly as it was before the call.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_context * n_frequencies)
            Context-stacked mixture magnitudes of the batch.
        y : array-like of shape (n_samples, n_sources * n_context * n_frequencies)
            The batch's source magnitudes, stacked like X, source 0 first;
            the same sources in every batch.

        Returns
        -------
        self : object
        """
        first = not hasattr(self, "_spec_")
        if first:
            X, y, spec, weights, target_beta, options = self._check_fit_data(X, y, reset=True)
            bases = self._learn_bases(y, spec, X.shape[1], X.dtype, check_random_state(self.random_state), options)
            layers, passes, structures = self._layer_plan(bases, spec, options)
            step, n_iter, loss_curve, n_steps = 1.0, 0, [], 0
        else:
            spec, weights, options = self._spec_, self._weights_, self._options_
            aa.check_same_namespace(X, self.bases_, self, "partial_fit")
            xp = aa.get_namespace(X, y)
            X = validate_data(self, X, reset=False, dtype=[xp.float64, xp.float32])
            y = check_array(y, dtype=X.dtype, input_name="y")
            target_beta = beta_loss_to_float(self.target_loss)
            check_nmf_input(X, spec.beta, f"{type(self).__name__} (input X)")
            check_nmf_input(y, min(spec.beta, target_beta), f"{type(self).__name__} (input y)")
            n_sources = layout.n_sources_of(y, X.shape[1])
            if n_sources != spec.n_sources:
                raise ValueError(
                    f"y holds {n_sources} sources but this {type(self).__name__} was fitted with "
                    f"{spec.n_sources}; every batch must have the same sources."
                )
            bases = self.bases_
            X, y = aa.astype(X, bases.dtype, xp), aa.astype(y, bases.dtype, xp)
            layers = self._inference_layers()
            _, passes, structures = self._layer_plan(bases, spec, options)
            step, n_iter, loss_curve, n_steps = self._partial_step_, self.n_iter_, list(self.loss_curve_), self.n_steps_
        if passes:
            problem, scale = self._training_problem(X, y, bases, spec, weights, target_beta, options)
            layers, _, loss_after, used = train_step(
                problem,
                layers,
                trainable=passes[-1],
                structures=structures,
                step=step,
                batch_size=self.batch_size,
                n_jobs=self.n_jobs,
            )
            if used:
                # As in fit: the exponent grows back after an accepted update.
                n_iter, step = n_iter + 1, min(1.0, 2.0 * used)
            loss_curve.append(loss_after * scale_power(scale, target_beta))
        self._set_fitted(bases, layers, spec, weights, options, n_iter, loss_curve, n_steps=n_steps + 1, step=step)
        return self

    # ------------------------------------------------------------ inference
    def _forward(self, X, output):
        """Run the fitted network on X; reads fitted state only."""
        check_is_fitted(self)
        aa.check_same_namespace(X, self.bases_, self, "predict" if output == "sources" else "transform")
        xp = aa.get_namespace(X)
        X = validate_data(self, X, reset=False, dtype=[xp.float64, xp.float32])
        spec = self._spec_
        check_nmf_input(X, spec.beta, f"{type(self).__name__} (input X)")
        return run_network(
            spec,
            self.bases_.T,
            self._inference_layers(),
            X,
            output=output,
            batch_size=self.batch_size,
            n_jobs=self.n_jobs,
        )

    def predict(self, X):
        """Source estimates by the Wiener-like filter of the last layer (eq. 34).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_context * n_frequencies)
            Context-stacked mixture magnitudes.

        Returns
        -------
        y_pred : ndarray of shape (n_samples, n_sources * n_frequencies)
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

    @fill_doc(DOCS)
    def fit_transform(self, X, y):
        """Fit, then return ``transform(X)``.

        Parameters
        ----------
        %(fit_params)s

        Returns
        -------
        H : ndarray of shape (n_samples, n_sources * n_components)
        """
        return self.fit(X, y).transform(X)

    def score(self, X, y):
        """Magnitude-domain SDR (dB) of the target source (source 0).

        ``10 log10(||S||^2 / ||S - S_hat||^2)`` over all frames, for the first
        source (speech, in speech enhancement). Greater is better, so
        GridSearchCV can use it directly.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_context * n_frequencies)
        y : array-like of shape (n_samples, n_sources * n_context * n_frequencies) \
                or (n_samples, n_sources * n_frequencies)
            True source magnitudes, laid out as in :meth:`fit`, or only
            their target frames (refused as ambiguous when n_context equals
            n_sources: that width is also one context-stacked source).

        Returns
        -------
        sdr : float
        """
        y_pred = self.predict(X)
        y = check_array(y, dtype=y_pred.dtype, ensure_2d=False, input_name="y")
        spec = self._spec_
        targets = layout.scoring_targets(y, y_pred.shape[0], spec.n_context, spec.n_frequencies, spec.n_sources)
        # The metric is numpy code: one transfer of two arrays, a float comes out.
        return magnitude_sdr(aa.to_numpy(targets), aa.to_numpy(y_pred), n_sources=spec.n_sources)

    @property
    def n_params_(self):
        """Number of parameters ``P = (T + C) F R`` and trained ones ``P_D = C F R``."""
        check_is_fitted(self)
        return {
            "total": int(aa.size(self.bases_) + aa.size(self.trained_components_)),
            "trained": int(aa.size(self.trained_components_)),
        }

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
        tags.array_api_support = True
        return tags


@fill_doc(DOCS)
class DiscriminativeNMF(DeepNMF):
    """Discriminative NMF: sparse NMF with trained reconstruction bases.

    Activations are inferred with K multiplicative updates using fixed sparse
    NMF analysis bases (eq. 32-33); separate reconstruction bases, used by the
    Wiener-like filter of eq. 34, are trained discriminatively to minimize
    eq. 37 (Weninger et al. 2014). This is :class:`DeepNMF` with
    ``n_trained_layers=1`` fixed, the way ``Lasso`` is ``ElasticNet`` with
    ``l1_ratio=1``: the analysis and reconstruction bases are untied and only
    the reconstruction layer is learned.

    Parameters
    ----------
    %(n_components)s
    %(n_layers)s
    %(common_params)s
    %(runtime_params)s

    Attributes
    ----------
    %(attributes)s
    trained_components_ : ndarray of shape (1, n_sources * n_components, n_frequencies)
        The discriminatively trained reconstruction (Wiener filter) bases.

    See Also
    --------
    DeepNMF : trains more than the last layer.

    References
    ----------
    %(references)s
    """

    _parameter_constraints: dict = {
        key: value for key, value in DeepNMF._parameter_constraints.items() if key != "n_trained_layers"
    }

    def __init__(
        self,
        n_components=100,
        *,
        n_layers=25,
        n_context=9,
        sparsity=3.0,
        beta_loss="kullback-leibler",
        target_loss="frobenius",
        source_weights=None,
        max_iter=2000,
        tol=1e-4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        bases_max_iter=100,
        bases=None,
        batch_size=1024,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        super().__init__(
            n_components=n_components,
            n_layers=n_layers,
            n_trained_layers=1,
            n_context=n_context,
            sparsity=sparsity,
            beta_loss=beta_loss,
            target_loss=target_loss,
            source_weights=source_weights,
            max_iter=max_iter,
            tol=tol,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            bases_max_iter=bases_max_iter,
            bases=bases,
            batch_size=batch_size,
            n_jobs=n_jobs,
            random_state=random_state,
            verbose=verbose,
        )
