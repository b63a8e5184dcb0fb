"""PhysicsAwareDeepNMF: DeepNMF with the physics-aware options of PAD-NMF.

Only the options live here; validation, scaling, the network, its training
and inference are :class:`~sklearn_unfold.DeepNMF`'s.
"""

import time
from numbers import Integral, Real

import numpy as np
from sklearn.utils.validation import check_is_fitted

from . import _array_api as aa
from ._compat import Interval, StrOptions
from ._docstrings import fill_doc
from ._nmf import layout
from ._nmf.hankel import BlockHankel, learn_hankel_bases
from ._nmf.validation import check_given_matrix
from .deep_nmf import DOCS, DeepNMF

__all__ = ["PhysicsAwareDeepNMF"]


@fill_doc(DOCS)
class PhysicsAwareDeepNMF(DeepNMF):
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
    See :mod:`sklearn_unfold._nmf.hankel` for how the block-Hankel structure is
    read from the slides and the authors' code.

    Parameters
    ----------
    %(n_components)s
    %(n_layers)s
    n_trained_layers : int, default=2
        Number C of untied layers at the top of the network, counting the
        reconstruction layer W^K; 0 <= C <= K. W^(K-C+1), ..., W^(K-1) are
        trained, and W^K too unless ``reconstruction_bases`` fixes it.
    %(common_params)s
    reconstruction_bases : {'snmf', 'dnmf'} or array-like of shape \
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
    %(runtime_params)s

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

    n_steps_ : int
        Number of :meth:`partial_fit` calls since the last fit (0 after fit);
        partial_fit is available unless ``reconstruction_bases='dnmf'``.

    See Also
    --------
    DeepNMF : the network without the physics-aware options.
    DiscriminativeNMF : one trained layer.

    References
    ----------
    %(references)s
    .. [3] E. Chinellato, F. Marcuzzi, "Physics-Aware Deep Nonnegative Matrix
       Factorization (PAD-NMF)", slides, University of Padova, February 2024;
       MATLAB code: github.com/ErikChinellato/PhD, folder DNMF.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.audio import stack_context
    >>> from sklearn_unfold import PhysicsAwareDeepNMF
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

    _parameter_constraints: dict = {
        **DeepNMF._parameter_constraints,
        "reconstruction_bases": [StrOptions({"snmf", "dnmf"}), "array-like", None],
        "hankel_size": [Interval(Integral, 1, None, closed="left"), None],
        "context_layers": ["boolean", None],
        "reconstruction_penalty": [Interval(Real, 0, None, closed="left")],
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
        reconstruction_bases=None,
        hankel_size=None,
        context_layers=None,
        reconstruction_penalty=0.0,
        batch_size=1024,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        super().__init__(
            n_components=n_components,
            n_layers=n_layers,
            n_trained_layers=n_trained_layers,
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
        self.reconstruction_bases = reconstruction_bases
        self.hankel_size = hankel_size
        self.context_layers = context_layers
        self.reconstruction_penalty = reconstruction_penalty

    # ------------------------------------------------- DeepNMF's hooks
    def _check_options(self, n_sources, n_frequencies, dtype):
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
        context = self.hankel_size is not None if self.context_layers is None else bool(self.context_layers)
        option = self.reconstruction_bases
        given = None
        if option is not None and not isinstance(option, str):
            given = check_given_matrix(
                option,
                (n_sources * self.n_components, n_frequencies),
                dtype,
                name="reconstruction_bases",
                meaning="(n_sources * n_components, n_frequencies): one row per reconstruction atom, source 0 first",
                whom=type(self).__name__,
            )
            option = "given"
        hankel = None if self.hankel_size is None else BlockHankel(self.n_context, n_frequencies, self.hankel_size)
        return {
            "context_layers": context,
            "hankel": hankel,
            "reconstruction": option,
            "given_reconstruction": given,
            "reconstruction_penalty": float(self.reconstruction_penalty),
        }

    def _learn_bases(self, y, spec, n_features, dtype, rng, options):
        """Fixed bases per source: sparse NMF, or block-Hankel sparse NMF."""
        hankel = options["hankel"]
        if hankel is None:
            return super()._learn_bases(y, spec, n_features, dtype, rng, options)
        if self.bases is not None:
            xp = aa.get_namespace(y)
            bases = self._given_bases(spec, n_features, dtype, like=y)
            return aa.ascontiguous(hankel.project(aa.ascontiguous(bases.T, xp)).T, xp)
        start = time.perf_counter()
        bases = []
        for l in range(spec.n_sources):
            W, n_iter, _ = learn_hankel_bases(
                hankel,
                layout.source_block(y, n_features, l),
                spec.n_components,
                beta=spec.beta,
                sparsity=spec.sparsity,
                random_state=rng.randint(np.iinfo(np.int32).max),
                max_iter=self.bases_max_iter,
                tol=1e-4,
            )
            bases.append(W.T)
            self._log(f"source {l}: block-Hankel bases after {n_iter} iterations ({time.perf_counter() - start:.1f} s)")
        xp = aa.get_namespace(y)
        return aa.ascontiguous(aa.vstack(bases, xp), xp, dtype=dtype)

    def _layer_plan(self, bases, spec, options):
        """Untied layers start from the bases (all their frames for context layers).

        Passes: ``reconstruction_bases='dnmf'`` trains W^K alone first, then
        the update layers with W^K fixed; a given or 'snmf' W^K is never
        trained; None trains every untied layer together (DeepNMF).
        """
        F = spec.n_frequencies
        xp = aa.get_namespace(bases)
        start_update = aa.ascontiguous((bases if spec.context_layers else bases[:, -F:]).T, xp)
        n_update = max(spec.n_trained - 1, 0)
        updates = [aa.copy(start_update, xp) for _ in range(n_update)]
        given = options["given_reconstruction"]
        W_out = aa.ascontiguous((bases[:, -F:] if given is None else given).T, xp)
        structures = [options["hankel"]] * n_update + [None]
        option = options["reconstruction"]
        if option == "dnmf":
            passes = [[False] * n_update + [True]] + ([[True] * n_update + [False]] if n_update else [])
        elif option is not None:
            passes = [[True] * n_update + [False]] if n_update else []
        else:
            passes = [[True] * spec.n_trained] if spec.n_trained else []
        return updates + [W_out], passes, structures

    def _fitted_layers(self, layers, spec, options):
        n_rows = spec.n_context * spec.n_frequencies if spec.context_layers else spec.n_frequencies
        updates = layers[:-1]
        xp = aa.get_namespace(layers[-1])
        if updates:
            update_components = aa.ascontiguous(xp.stack([W.T for W in updates]), xp)
        elif aa.is_numpy(xp):
            update_components = np.empty((0, spec.n_sources * spec.n_components, n_rows), layers[-1].dtype)
        else:
            update_components = xp.empty(
                (0, spec.n_sources * spec.n_components, n_rows), dtype=layers[-1].dtype, device=aa.device(layers[-1])
            )
        return {
            "update_components_": update_components,
            "reconstruction_components_": aa.ascontiguous(layers[-1].T, xp),
            "reconstruction_fixed_": options["reconstruction"] is not None,
            "context_layers_": spec.context_layers,
        }

    def _inference_layers(self):
        xp = aa.get_namespace(self.reconstruction_components_)
        stacked = self.update_components_
        layers = [aa.ascontiguous(stacked[i, ...].T, xp) for i in range(stacked.shape[0])]
        return layers + [aa.ascontiguous(self.reconstruction_components_.T, xp)]

    def _supports_partial_fit(self):
        # 'dnmf' is two passes over all the data; mini-batches cannot take turns that way.
        option = self.reconstruction_bases
        return not (isinstance(option, str) and option == "dnmf")

    # ------------------------------------------------------------ inference
    def reconstruct(self, X):
        """Direct reconstructions ``W_l^K H_l^K`` of each source's target frame.

        The quantity the reconstruction penalty trains (not constrained to sum
        to the mixture, unlike :meth:`predict`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_context * n_frequencies)

        Returns
        -------
        y_rec : ndarray of shape (n_samples, n_sources * n_frequencies)
        """
        return self._forward(X, "reconstruction")

    @property
    def n_params_(self):
        """Free parameters of the network and of its trained part (see Attributes)."""
        check_is_fitted(self)
        spec, options = self._spec_, self._options_
        hankel = options["hankel"]

        def free(W):
            if hankel is None or W.shape[-1] != hankel.n_context * hankel.n_freqs:
                return aa.size(W)
            return hankel.n_groups(W.shape[0]) * hankel.n_lags * hankel.n_freqs

        option = options["reconstruction"]
        updates = sum(free(self.update_components_[i, ...]) for i in range(self.update_components_.shape[0]))
        # W^K is the bases' last frame (no parameters of its own) for C = 0 and for 'snmf'.
        own_out = not ((option is None and spec.n_trained == 0) or option == "snmf")
        trained_out = (option is None and spec.n_trained > 0) or option == "dnmf"
        out = aa.size(self.reconstruction_components_)
        return {
            "total": int(free(self.bases_) + updates + (out if own_out else 0)),
            "trained": int(updates + (out if trained_out else 0)),
        }
