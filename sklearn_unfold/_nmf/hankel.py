"""Block-Hankel weights of PAD-NMF, and the block-Hankel sparse NMF of its fixed bases.

Array math only, in the orientation of :mod:`.network`: spectra ``M``
(n_features, n_frames), bases ``W`` (n_features, n_components), activations
``H`` (n_components, n_frames). Nothing here sees an estimator; the layer
steps themselves and the reconstruction penalty of the loss are in
:mod:`.network`, :mod:`.backward` and :mod:`.trainer`, shared with DeepNMF.

Block-Hankel weights (how the slides and the authors' code are read here)
-------------------------------------------------------------------------
A context-stacked column holds ``T`` consecutive frames of ``F`` values, the
oldest first (block ``b = 0 .. T-1``, the target frame last), so consecutive
columns of a context-stacked spectrogram are shifted copies of each other:
the context matrix of a signal is block-Hankel. The authors' MATLAB code
(ErikChinellato/PhD, ``DNMF/InitializeWeights.m``, ``UpdateWeights.m``,
options ``'Context'`` / ``'CausalityPreserving'``) builds each dictionary
group from ``r`` *consecutive* context columns of one clean event, so atom
``j`` of a group is the event seen ``j`` frames later; its ``T x r`` grid of
``F``-blocks satisfies ``W[b, j] = g[b + j]`` for a generator sequence ``g``
of ``T + r - 1`` frames (constant along anti-diagonal blocks: block-Hankel,
blocks of size ``F x 1``). The n_components atoms of every source are split
into groups of ``group_size`` consecutive atoms, each group block-Hankel with
its own generator. That code keeps the structure during back-propagation
only through a zero mask (the blocks before an event's onset); here it is
kept exactly: the weights are parametrized by their generators, the
gradient with respect to a generator is the adjoint of the expansion (the sum
of the gradient over each anti-diagonal block), and the multiplicative update
is applied to the generator. Because the expansion has non-negative (0/1)
coefficients, the adjoint maps the positive and negative gradient parts to
the positive and negative parts of the generator gradient, so

    W <- W * P([grad W]_-) / P([grad W]_+)

(``P`` the orthogonal projection onto the block-Hankel matrices, i.e. the
average over each anti-diagonal block) keeps ``W`` non-negative *and* exactly
block-Hankel: the ratio is itself block-Hankel and the element-wise product
of two block-Hankel matrices is block-Hankel. The forward pass uses
``P(W)``, which is ``W`` once projected. A zero generator frame (e.g. the
pre-onset blocks of the MATLAB code's causal mask) stays zero. Not taken
over: that code's optional projection of the *activations* in the forward
pass (``ForwardPropagationProjection = 'EnergyPreserving'``, which gives every
atom of a group the group's total activation; its activation mask is
commented out there), and its rescaling of each atom to unit maximum after
every update, which would break the block-Hankel structure (here a whole
group is scaled, and only while learning the fixed bases).

Loss with a reconstruction penalty (slides, "suitable loss function")
---------------------------------------------------------------------
``E = sum_l w_l D_beta2(S_l | M * Lam_l / Lam) + gamma sum_l w_l D_2(S_l | Lam_l)``
with ``Lam_l = W_l^K H_l^K``: the Wiener-filter term of :func:`.backward.wiener_backward`
plus a direct reconstruction error of each weighted source's part of the
last layer (``D_2`` is half the squared Euclidean distance). With the
default weights ``(1, 0, ...)`` and ``beta2 = 2`` this is half of the slides'
``||S - F o X||^2 + gamma ||S - W_S^K H_S^K||^2``. The penalty's derivative in
``Lam_l`` is ``gamma w_l (Lam_l - S_l)``: positive part ``gamma w_l Lam_l``,
negative part ``gamma w_l S_l``, propagated to ``H_l`` and ``W_l`` by
``W_l^T`` and ``H_l^T`` (non-negative, so the signs are kept).

References
----------
.. [1] E. Chinellato, F. Marcuzzi, "Physics-aware deep non-negative matrix
   factorization (PAD-NMF)", slides, University of Padova, 2024.
.. [2] J. R. Hershey, J. Le Roux, F. Weninger, "Deep unfolding: model-based
   inspiration of novel deep architectures", 2014, eq. 33-42, 83-87, 98-105.
.. [3] J. Le Roux, F. Weninger, J. R. Hershey, "Sparse NMF - half-baked or well
   done?", MERL TR2015-023, 2015 (normalization-aware basis updates).
"""


import numpy as np
from sklearn.utils import check_random_state

from .. import _array_api as aa
from .._array_api import get_namespace, is_numpy, scalar

from .divergences import eps_for, mm_exponent
from .scaling import safe_scale, scale_power, scaled_sparsity
from .steps import halving_step
from .updates import init_training_activations, make_objective, model, update_activations


# --------------------------------------------------------------------------
# Block-Hankel structure
# --------------------------------------------------------------------------
class BlockHankel:
    """Block-Hankel weights ``W[b, j] = g[b + j]`` for groups of consecutive atoms.

    ``W`` has shape (n_context * n_freqs, n_groups * group_size); row block
    ``b`` (rows ``b F .. (b+1) F - 1``) is context frame ``b``. The atoms
    (columns) form ``n_groups`` groups of ``group_size`` consecutive columns;
    group ``k`` is generated by ``gen[k]`` of shape
    (n_context + group_size - 1, n_freqs).

    Parameters
    ----------
    n_context : int
        Context frames T per column.
    n_freqs : int
        Values F per frame.
    group_size : int
        Atoms r per block-Hankel group (1 leaves the atoms unconstrained).
    """

    def __init__(self, n_context, n_freqs, group_size):
        self.n_context, self.n_freqs, self.group_size = int(n_context), int(n_freqs), int(group_size)
        T, r = self.n_context, self.group_size
        self.n_lags = T + r - 1
        # diag[b, j] = b + j: the generator frame of block b of atom j.
        self._diag = (np.arange(T)[:, np.newaxis] + np.arange(r)[np.newaxis, :]).ravel()
        self._onehot = np.zeros((T * r, self.n_lags))
        self._onehot[np.arange(T * r), self._diag] = 1.0
        # Number of blocks on each anti-diagonal.
        self.counts = self._onehot.sum(axis=0)

    def n_groups(self, n_components):
        return n_components // self.group_size

    def expand(self, gen):
        """Weights from generators: (n_groups, n_lags, F) -> (T F, n_groups r). Exact copies."""
        T, F, r = self.n_context, self.n_freqs, self.group_size
        G = gen.shape[0]
        xp = get_namespace(gen)
        if is_numpy(xp):
            blocks = gen[:, self._diag, :].reshape(G, T, r, F)
            return np.ascontiguousarray(blocks.transpose(1, 3, 0, 2).reshape(T * F, G * r))
        blocks = xp.reshape(xp.take(gen, aa.asarray(self._diag, xp, like=gen), axis=1), (G, T, r, F))
        return xp.reshape(xp.permute_dims(blocks, (1, 3, 0, 2)), (T * F, G * r))

    def adjoint(self, A):
        """Sum of ``A`` over each anti-diagonal block: (T F, n_groups r) -> (n_groups, n_lags, F).

        The adjoint of :meth:`expand`, i.e. the gradient with respect to the
        generators of a function whose gradient in ``W`` is ``A``.
        """
        T, F, r = self.n_context, self.n_freqs, self.group_size
        G = A.shape[1] // r
        xp = get_namespace(A)
        if is_numpy(xp):
            blocks = A.reshape(T, F, G, r).transpose(2, 0, 3, 1).reshape(G, T * r, F)
            return np.matmul(self._onehot.T.astype(A.dtype, copy=False), blocks)
        blocks = xp.reshape(xp.permute_dims(xp.reshape(A, (T, F, G, r)), (2, 0, 3, 1)), (G, T * r, F))
        return xp.matmul(self._constant(self._onehot.T, A), blocks)

    def _constant(self, values, like):
        """A numpy constant of the structure in the namespace, dtype and device of ``like``."""
        xp = get_namespace(like)
        if is_numpy(xp):
            return values.astype(like.dtype, copy=False)
        return aa.asarray(np.ascontiguousarray(values), xp, like=like, dtype=like.dtype)

    def generator(self, W):
        """Generators of the nearest block-Hankel matrix (anti-diagonal averages)."""
        return self.adjoint(W) / self._constant(self.counts, W)[:, None]

    def project(self, W):
        """Orthogonal (Frobenius) projection onto the block-Hankel matrices."""
        return self.expand(self.generator(W))

    def group_norms(self, gen):
        """``sqrt(||W_k||_F^2 / r)`` per group: the root-mean-square atom norm."""
        xp = get_namespace(gen)
        squares = np.einsum("kdf,kdf->kd", gen, gen) if is_numpy(xp) else xp.sum(gen * gen, axis=2)
        sq = squares @ self._constant(self.counts, gen)
        return xp.sqrt(sq / self.group_size)


def hankel_ratio(structure, plus, minus, eps):
    """Multiplicative factor ``P([grad]_-) / P([grad]_+)`` expanded to the weights' shape.

    ``P`` averages over anti-diagonal blocks; the anti-diagonal counts cancel
    in the ratio, so it is the ratio of the generator gradient's parts.
    """
    num = structure.adjoint(minus)
    den = structure.adjoint(plus)
    xp = get_namespace(num)
    no_gradient = (den == 0) & (num == 0)
    den = aa.floor_(den, eps, xp)
    num /= den
    # No gradient at all: keep the generator (0 / eps would zero it for good).
    if is_numpy(xp):
        num[no_gradient] = 1.0
    else:
        num = xp.where(no_gradient, scalar(1.0, num, xp), num)
    return structure.expand(num)


# --------------------------------------------------------------------------
# Block-Hankel sparse NMF (the fixed bases of the first layers)
# --------------------------------------------------------------------------
def _update_hankel_bases(structure, M, gen, H, beta, Lam, eps, step):
    """Normalization-aware multiplicative update of unit-RMS-norm Hankel generators.

    The analogue of :func:`~._nmf_updates.update_bases_normalized` [3] for
    the generator parametrization: with ``A_+ = P*(Lam^(beta-1) H^T)`` and
    ``A_- = P*((M Lam^(beta-2)) H^T)`` (``P*`` = :meth:`BlockHankel.adjoint`)
    and the group norm ``N_k^2 = sum_d c_d ||g_kd||^2 / r`` held at 1, the
    gradient through the normalization is ``A - <A, g_k> c g_k / r``, so

        g <- g * [A_- + c g <A_+, g>/r] / [A_+ + c g <A_-, g>/r]

    followed by renormalization.
    """
    xp = get_namespace(M, gen)
    if beta == 1:
        neg = (M / Lam) @ H.T
        pos = xp.broadcast_to(xp.sum(H, axis=1), (M.shape[0], H.shape[0]))
    else:
        Lb2 = Lam ** (beta - 2.0)
        neg = (M * Lb2) @ H.T
        pos = (Lb2 * Lam) @ H.T
    A_plus, A_minus = structure.adjoint(aa.ascontiguous(pos, xp)), structure.adjoint(neg)
    cg = gen * structure._constant(structure.counts, gen)[:, None] / structure.group_size

    def dots(A):
        """``sum(gen * A)`` per group, shape (n_groups, 1, 1)."""
        per_group = np.einsum("kdf,kdf->k", gen, A) if is_numpy(xp) else xp.sum(gen * A, axis=(1, 2))
        return per_group[:, None, None]

    numer = A_minus + cg * dots(A_plus)
    denom = aa.floor_(A_plus + cg * dots(A_minus), eps, xp)
    numer /= denom
    if step != 1.0:
        numer **= step
    numer *= gen
    return _normalize_generators(structure, numer, eps)


def _normalize_generators(structure, gen, eps):
    xp = get_namespace(gen)
    norms = structure.group_norms(gen)
    norms = xp.maximum(norms, scalar(eps, norms, xp))
    return gen / norms[:, None, None]


def init_hankel_generators(structure, M, n_components, rng):
    """Exemplar start: group k's generator is a random context column of ``M``.

    Atom 0 of the group is that column; the generator frames after its last
    block repeat the last frame. A small random floor (1e-3 of the data's
    mean) keeps exact zeros from locking under multiplicative updates; each
    group is scaled to unit RMS atom norm.
    """
    T, F = structure.n_context, structure.n_freqs
    G = structure.n_groups(n_components)
    n_frames = M.shape[1]
    xp = get_namespace(M)
    scale = float(xp.mean(M)) if aa.size(M) else 1.0
    scale = scale if scale > 0 else 1.0
    idx = rng.choice(n_frames, size=G, replace=G > n_frames)
    lag_frame = np.minimum(np.arange(structure.n_lags), T - 1)
    noise = rng.uniform(size=(G, structure.n_lags, F))
    if is_numpy(xp):
        exemplars = M[:, idx].reshape(T, F, G).transpose(2, 0, 1)  # (G, T, F)
        gen = exemplars[:, lag_frame, :] + 1e-3 * scale * noise
    else:
        picked = xp.take(M, aa.asarray(idx, xp, like=M), axis=1)
        exemplars = xp.permute_dims(xp.reshape(picked, (T, F, G)), (2, 0, 1))
        gen = xp.take(exemplars, aa.asarray(lag_frame, xp, like=M), axis=1) + 1e-3 * scale * aa.asarray(noise, xp, like=M)
    return _normalize_generators(structure, aa.astype(gen, M.dtype, xp), eps_for(M.dtype))


def fit_hankel_sparse_nmf(structure, M, gen, H, *, beta, mu, max_iter, tol, max_halvings=8):
    """Sparse NMF ``M ~ W H`` with block-Hankel bases ``W = expand(gen)``.

    Alternates the activation update of eq. 33 (a majorization-minimization
    step) with the normalization-aware generator update of
    :func:`_update_hankel_bases`; a basis step that would increase the
    objective ``D_beta(M | W H) + mu ||H||_1`` is retried with its exponent
    halved, so the recorded objective never increases (the scheme of
    :func:`~._nmf_updates.fit_sparse_nmf`).

    Parameters
    ----------
    structure : BlockHankel
    M : ndarray of shape (n_context * n_freqs, n_frames)
    gen : ndarray of shape (n_groups, n_lags, n_freqs)
        Starting generators (unit RMS atom norm per group).
    H : ndarray of shape (n_groups * group_size, n_frames)
    beta, mu : float
    max_iter : int
    tol : float

    Returns
    -------
    gen, H : ndarray
    n_iter : int
    loss_curve : list of float
    """
    eps = eps_for(M.dtype)
    exponent = mm_exponent(beta)
    objective = make_objective(M, beta, mu)
    W = structure.expand(gen)
    Lam = model(W, H, eps)
    loss = objective(Lam, H)
    loss_curve = [loss]
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        H = update_activations(M, W, H, beta, mu, exponent=exponent, Lam=Lam)
        Lam = model(W, H, eps)
        previous = loss

        def propose(step):
            gen_new = _update_hankel_bases(structure, M, gen, H, beta, Lam, eps, step)
            W_new = structure.expand(gen_new)
            Lam_new = model(W_new, H, eps)
            return (gen_new, W_new, Lam_new), objective(Lam_new, H)

        accepted, loss, _ = halving_step(propose, previous, max_halvings=max_halvings)
        if accepted is None:
            loss = objective(Lam, H)
        else:
            gen, W, Lam = accepted
        loss_curve.append(loss)
        if tol > 0 and previous - loss <= tol * abs(loss):
            break
    return gen, H, n_iter, loss_curve


def learn_hankel_bases(structure, V, n_components, *, beta, sparsity, random_state, max_iter, tol):
    """Block-Hankel sparse NMF of ``V`` from an exemplar start, at any scale of the data.

    Parameters
    ----------
    structure : BlockHankel
    V : ndarray of shape (n_samples, n_context * n_freqs)
        Context-stacked spectra of one source, one frame per row.

    Returns
    -------
    W : ndarray of shape (n_context * n_freqs, n_components)
        Block-Hankel bases, unit root-mean-square atom norm per group.
    n_iter : int
    loss_curve : list of float
        Objective in the units of ``V``.
    """
    rng = check_random_state(random_state)
    scale = safe_scale(V)
    M = aa.ascontiguous(V.T if scale == 1.0 else V.T / scale, get_namespace(V))
    gen = init_hankel_generators(structure, M, n_components, rng)
    H = init_training_activations(M, structure.expand(gen), rng)
    mu = scaled_sparsity(float(sparsity), beta, scale, M.dtype)
    gen, _, n_iter, loss_curve = fit_hankel_sparse_nmf(structure, M, gen, H, beta=beta, mu=mu, max_iter=max_iter, tol=tol)
    return structure.expand(gen), n_iter, [loss * scale_power(scale, beta) for loss in loss_curve]
