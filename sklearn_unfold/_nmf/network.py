"""The unfolded NMF network: one forward pass for training, predict and transform.

Arrays are in the paper's orientation: spectra ``M`` (n_features, n_frames),
bases ``W`` (n_features, n_components), activations ``H`` (n_components,
n_frames). Nothing here sees an estimator.

Network (paper eq. 62-63, sec. 5.4). ``H^0`` is the deterministic start of
:func:`~.updates.initial_activations`. Iteration ``k = 1..K`` computes
``H^k = f(W^(k-1), M, H^(k-1))`` with the multiplicative update of eq. 33 and
the reconstruction is the Wiener-like filter of eq. 34 with ``W^K``. The
``C`` trained matrices are ``W^(K-C+1) .. W^K`` (the reconstruction layer
counts, so ``C = 1`` is DNMF); the iterations that use ``W^0 .. W^(K-C)`` run
with the fixed, context-stacked sparse-NMF bases on the context-stacked
mixture and do not depend on anything trained, so their output is computed
once per fit (:func:`fixed_part`). The trained update layers see the target
frame (DeepNMF) or the context-stacked mixture (``context_layers``, PAD-NMF).

:func:`forward_chunk` is the whole network on one chunk of frames; the
trainer (:mod:`.trainer`) runs the same :func:`trained_forward` and
:func:`wiener_forward` with caches for the backward pass.
"""

from dataclasses import dataclass

import numpy as np

from .. import _array_api as aa
from .._array_api import get_namespace, is_numpy, scalar
from .chunks import fill_by_chunks, frame_buffer, frame_chunks, imap_chunks
from .divergences import eps_for, mm_exponent
from .scaling import safe_scale, scaled_sparsity
from .updates import activation_ratio, initial_activations, model


@dataclass(frozen=True)
class NetworkSpec:
    """Everything that defines the unfolded network, fixed at fit.

    Estimators keep it as fitted state, so that inference never reads a
    constructor parameter that ``set_params`` may have changed since.

    Parameters
    ----------
    n_layers : int
        Unfolded iterations K.
    n_trained : int
        Untied layers C at the top, counting the reconstruction layer.
    n_context : int
        Frames T stacked in each input row.
    n_frequencies : int
        Values F per frame.
    n_components : int
        Bases R per source.
    n_sources : int
    beta : float
        Divergence beta1 of the layer updates (eq. 33).
    sparsity : float
        L1 weight mu of eq. 32, for data at its own scale.
    context_layers : bool, default=False
        Whether trained update layers see the context-stacked mixture.
    """

    n_layers: int
    n_trained: int
    n_context: int
    n_frequencies: int
    n_components: int
    n_sources: int
    beta: float
    sparsity: float
    context_layers: bool = False

    @property
    def n_fixed(self):
        """Iterations that use the fixed bases: ``K - C + 1`` when C >= 1, all K when C = 0.

        Iterations k = 1..K use W^(k-1); W^(K-C+1)..W^K are trained (W^K being
        the reconstruction).
        """
        return self.n_layers - self.n_trained + 1 if self.n_trained else self.n_layers

    @property
    def exponent(self):
        return mm_exponent(self.beta)

    @property
    def source_slices(self):
        R = self.n_components
        return [slice(l * R, (l + 1) * R) for l in range(self.n_sources)]

    def mu(self, scale, dtype):
        """Sparsity of the problem on data divided by ``scale``."""
        return scaled_sparsity(float(self.sparsity), self.beta, scale, dtype)


# --------------------------------------------------------------------------
# One update layer (eq. 33 / 69)
# --------------------------------------------------------------------------
def layer_forward(M, W, H, beta, mu, exponent=1.0, *, keep=False, W_colsum=None):
    """One unfolded iteration ``H_new = H * (P / Q) ** exponent`` (eq. 33).

    Parameters
    ----------
    M : ndarray of shape (n_features, n_frames)
    W : ndarray of shape (n_features, n_components)
    H : ndarray of shape (n_components, n_frames)
    beta, mu : float
        Divergence of the inference objective and L1 weight (eq. 32).
    exponent : float, default=1.0
        1 in the paper; :func:`mm_exponent` for beta outside [1, 2].
    keep : bool, default=False
        Also return what the backward step needs.

    Returns
    -------
    H_new : ndarray of shape (n_components, n_frames)
    cache : tuple (H, Lam, P, Q), only when ``keep``
    """
    eps = eps_for(M.dtype)
    Lam = model(W, H, eps)
    P, Q = activation_ratio(M, W, Lam, beta, mu, eps, W_colsum=W_colsum)
    ratio = P / Q
    if exponent != 1.0:
        ratio **= exponent
    ratio *= H
    if keep:
        return ratio, (H, Lam, P, Q)
    return ratio



# --------------------------------------------------------------------------
# Wiener-like output layer (eq. 34)
# --------------------------------------------------------------------------
def wiener_masks(W, H, source_slices):
    """Per-source models ``Lam_l = W_l H_l``, their sum and the masks ``Lam_l / Lam``.

    No absolute floor: a frame whose model is 0 (every activation
    underflowed, e.g. under a huge sparsity) has no information on how to
    split the mixture and gets equal masks, so the masks always sum to 1
    and the estimates to the mixture, at any scale and in any dtype.

    Returns
    -------
    Lams : list of ndarray
    Lam : ndarray
    masks : list of ndarray
    """
    xp = get_namespace(W, H)
    Lams = [W[:, sl] @ H[sl, :] for sl in source_slices]
    positive = None
    equal = 1.0 / len(Lams)
    if is_numpy(xp):
        # Summed pairwise in place (add.reduce of a list would stack a copy first).
        Lam = Lams[0] + Lams[1] if len(Lams) > 1 else Lams[0].copy()
        for Lam_l in Lams[2:]:
            Lam += Lam_l
        if Lam.size == 0 or Lam.min() > 0:
            return Lams, Lam, [Lam_l / Lam for Lam_l in Lams]
        positive = Lam > 0
        masks = [np.divide(Lam_l, Lam, out=np.full_like(Lam, equal), where=positive) for Lam_l in Lams]
        return Lams, Lam, masks
    # Elsewhere the test above would wait for the device: always take the guarded form.
    Lam = Lams[0]
    for Lam_l in Lams[1:]:
        Lam = Lam + Lam_l
    positive = Lam > 0
    safe = xp.where(positive, Lam, scalar(1.0, Lam, xp))
    return Lams, Lam, [xp.where(positive, Lam_l / safe, scalar(equal, Lam, xp)) for Lam_l in Lams]


def wiener_forward(M, W, H, source_slices):
    """Source estimates ``S_l = M * Lam_l / Lam`` (eq. 34); they sum to ``M``.

    Parameters
    ----------
    M : ndarray of shape (n_features, n_frames)
        Mixture (target frames).
    W : ndarray of shape (n_features, n_components)
    H : ndarray of shape (n_components, n_frames)
    source_slices : list of slice
        Components of each source in ``W``'s columns / ``H``'s rows.

    Returns
    -------
    estimates : list of ndarray, one (n_features, n_frames) per source
    masks : list of ndarray, ``Lam_l / Lam``
    Lam : ndarray, the model ``W H``
    """
    _, Lam, masks = wiener_masks(W, H, source_slices)
    return [M * mask for mask in masks], masks, Lam


# --------------------------------------------------------------------------
# The network on one chunk, and on all frames
# --------------------------------------------------------------------------
def fixed_activations(M_ctx, W_fixed, n_iter, beta, mu, exponent):
    """Run the first ``n_iter`` iterations with the fixed context bases.

    For KL (the paper's beta = 1) the iterations reuse one buffer for
    ``W H`` and ``M / (W H)`` in place: the same operations as
    :func:`layer_forward`, without a fresh (T F, n) temporary per step.

    Returns
    -------
    H : ndarray of shape (n_components, n_frames)
    """
    xp = get_namespace(M_ctx, W_fixed)
    H = initial_activations(M_ctx, W_fixed)
    W_colsum = xp.sum(W_fixed, axis=0)
    # The in-place loop below is numpy's; other namespaces run the same updates as expressions.
    if beta != 1 or exponent != 1.0 or not n_iter or not is_numpy(xp):
        for _ in range(n_iter):
            H = layer_forward(M_ctx, W_fixed, H, beta, mu, exponent, W_colsum=W_colsum)
        return H
    eps = eps_for(M_ctx.dtype)
    Q = (W_colsum + mu)[:, np.newaxis]
    np.maximum(Q, eps, out=Q)
    buffer = np.empty((W_fixed.shape[0], M_ctx.shape[1]), dtype=np.result_type(W_fixed, H))
    for _ in range(n_iter):
        np.matmul(W_fixed, H, out=buffer)
        np.maximum(buffer, eps, out=buffer)
        np.divide(M_ctx, buffer, out=buffer)
        P = W_fixed.T @ buffer
        P /= Q
        P *= H
        H = P
    return H


def trained_forward(M, H, W_layers, beta, mu, exponent, *, keep=False):
    """Run the trained update layers ``W_layers[:-1]`` from ``H``.

    The last entry of ``W_layers`` is the reconstruction layer and is not
    applied here. Returns the final activations (and the caches if ``keep``).
    """
    caches = []
    for W in W_layers[:-1]:
        if keep:
            H, cache = layer_forward(M, W, H, beta, mu, exponent, keep=True)
            caches.append(cache)
        else:
            H = layer_forward(M, W, H, beta, mu, exponent)
    return (H, caches) if keep else H



def forward_chunk(spec, W_fixed, layers, M_ctx, mu, output="sources"):
    """The whole network on one chunk of context-stacked frames.

    Parameters
    ----------
    spec : NetworkSpec
    W_fixed : ndarray of shape (n_context * n_frequencies, n_sources * n_components)
    layers : list of ndarray
        Trained update layers bottom to top, then the reconstruction layer
        ``W^K`` of shape (n_frequencies, n_sources * n_components).
    M_ctx : ndarray of shape (n_context * n_frequencies, n_frames)
        Context-stacked mixture, already divided by the data's scale.
    mu : float
        Sparsity at that scale.
    output : {'sources', 'activations', 'reconstruction'}
        Wiener-filter estimates (eq. 34), ``H^K``, or ``W_l^K H_l^K``.

    Returns
    -------
    out : ndarray of shape (width, n_frames)
        Sources / reconstructions stacked source 0 first.
    """
    M = M_ctx[-spec.n_frequencies :, :]
    H = fixed_activations(M_ctx, W_fixed, spec.n_fixed, spec.beta, mu, spec.exponent)
    H = trained_forward(M_ctx if spec.context_layers else M, H, layers, spec.beta, mu, spec.exponent)
    xp = get_namespace(M_ctx)
    if output == "activations":
        return H
    if output == "sources":
        return aa.vstack(wiener_forward(M, layers[-1], H, spec.source_slices)[0], xp)
    return aa.vstack([layers[-1][:, sl] @ H[sl, :] for sl in spec.source_slices], xp)


def _frames_as_columns(X_rows, scale):
    """A chunk of frames (rows of X) as C-ordered columns, divided by ``scale``.

    One copy per chunk: every layer's element-wise work then runs on
    contiguous arrays of one layout (a transposed view of row-major X made
    ``M / (W H)`` several times slower). Other namespaces get the same
    row-major copy through a flat reshape (the standard has no layout).
    """
    xp = get_namespace(X_rows)
    if not is_numpy(xp):
        M = xp.reshape(xp.reshape(X_rows.T, (-1,)), (X_rows.shape[1], X_rows.shape[0]))
        return M if scale == 1.0 else M / scale
    M = np.ascontiguousarray(X_rows.T)
    if scale != 1.0:
        if np.shares_memory(M, X_rows):
            M = M.copy()
        M /= scale
    return M


def output_width(spec, output):
    if output == "activations":
        return spec.n_sources * spec.n_components
    return spec.n_sources * spec.n_frequencies


def run_network(spec, W_fixed, layers, X, *, output="sources", batch_size=None, n_jobs=None):
    """:func:`forward_chunk` on every frame of ``X``, ``batch_size`` frames at a time.

    Data far from unit scale runs as the same network on ``X / s``
    (:func:`~.scaling.safe_scale`) and the result is mapped back exactly.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_context * n_frequencies)
        One context-stacked frame per row.

    Returns
    -------
    out : ndarray of shape (n_samples, width), X's dtype
    """
    xp = get_namespace(X)
    scale = safe_scale(X)
    mu = spec.mu(scale, X.dtype)
    # No copy of the bases (BLAS takes either order; a copy per call would
    # dominate small calls such as a stream's).
    W_fixed = aa.astype(W_fixed, X.dtype, xp)
    layers = [aa.ascontiguous(W, xp, dtype=X.dtype) for W in layers]

    def one(chunk):
        M_ctx = _frames_as_columns(X[chunk, :], scale)
        out = forward_chunk(spec, W_fixed, layers, M_ctx, mu, output).T
        return out if scale == 1.0 else out * scale

    chunks = frame_chunks(X.shape[0], batch_size)
    width = output_width(spec, output)
    out = np.empty((X.shape[0], width), dtype=X.dtype) if is_numpy(xp) else (
        xp.empty((X.shape[0], width), dtype=X.dtype, device=aa.device(X))
    )
    return fill_by_chunks(one, chunks, n_jobs, out)


def fixed_part(spec, W_fixed, X, *, scale=1.0, batch_size=None, n_jobs=None):
    """Output of the fixed iterations for every frame, (n_sources * n_components, n_samples).

    Computed ``batch_size`` frames at a time into a
    :func:`~.chunks.frame_buffer` (a temporary file when X is memory mapped),
    on ``X / scale``.
    """
    W_fixed = aa.astype(W_fixed, X.dtype, get_namespace(X))
    mu = spec.mu(scale, X.dtype)
    chunks = frame_chunks(X.shape[0], batch_size)
    H_start = frame_buffer(X.shape[0], W_fixed.shape[1], X.dtype, like=X)

    def one(chunk):
        M_ctx = _frames_as_columns(X[chunk, :], scale)
        return fixed_activations(M_ctx, W_fixed, spec.n_fixed, spec.beta, mu, spec.exponent)

    for chunk, part in zip(chunks, imap_chunks(one, chunks, n_jobs)):
        H_start[:, chunk] = part
    return H_start
